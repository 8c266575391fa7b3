using System.Diagnostics;

namespace RealtimeAssistant.Output;

/// <summary>Finds a program on PATH, the way a shell would.</summary>
public static class Executables
{
    public static string? Find(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        var suffixes = OperatingSystem.IsWindows() ? new[] { ".exe", "" } : [""];
        foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var suffix in suffixes)
            {
                var candidate = Path.Combine(dir, name + suffix);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    static readonly Lazy<string?> Setsid = new(() => OperatingSystem.IsLinux() ? Find("setsid") : null);

    /// <summary>
    /// How to start <paramref name="exe"/> in a session of its own (through util-linux's
    /// <c>setsid</c>, which execs it under the same process id: ra's children lead no group). A
    /// terminal's Ctrl+C signals the whole foreground process group: an ffmpeg in it would quit
    /// mid-file while ra was still finishing its outputs. ra stops its children itself. Add the
    /// program's arguments to <see cref="ProcessStartInfo.ArgumentList"/>.
    /// </summary>
    public static ProcessStartInfo InOwnSession(string exe)
    {
        if (Setsid.Value is not { } setsid) return new ProcessStartInfo(exe) { UseShellExecute = false };
        var info = new ProcessStartInfo(setsid) { UseShellExecute = false };
        info.ArgumentList.Add(exe);
        return info;
    }
}
