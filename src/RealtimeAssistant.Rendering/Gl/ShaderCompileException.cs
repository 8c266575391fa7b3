using System.Text.RegularExpressions;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// A GLSL compile or link failure, naming the file and (when the driver says) the line, so a broken
/// shader edit points straight at its cause.
/// </summary>
public sealed partial class ShaderCompileException : Exception
{
    public string FileName { get; }

    /// <summary>The 1-based line the driver blamed, or null (link errors have none).</summary>
    public int? Line { get; }
    public string DriverLog { get; }

    public ShaderCompileException(string fileName, string stage, string driverLog)
        : base(Describe(fileName, stage, driverLog, out int? line))
    {
        FileName = fileName;
        Line = line;
        DriverLog = driverLog;
    }

    private static string Describe(string fileName, string stage, string log, out int? line)
    {
        line = null;
        string first = log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .FirstOrDefault(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)) ?? log.Trim();
        var m = MesaLine().Match(first);
        if (!m.Success) m = NvidiaLine().Match(first);
        if (m.Success)
        {
            line = int.Parse(m.Groups["line"].Value);
            string text = first[(m.Index + m.Length)..].TrimStart(':', ' ');
            return $"{stage} failed: {fileName}:{line}: {text}";
        }
        return $"{stage} failed: {fileName}: {first}";
    }

    // Mesa: "0:12(5): error: ..." (source:line(column)).
    [GeneratedRegex(@"^\d+:(?<line>\d+)\(\d+\)")]
    private static partial Regex MesaLine();

    // NVIDIA: "0(12) : error C0000: ...".
    [GeneratedRegex(@"^\d+\((?<line>\d+)\)")]
    private static partial Regex NvidiaLine();
}
