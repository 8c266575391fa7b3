using System.Diagnostics;
using System.Globalization;

namespace RealtimeAssistant.Output;

/// <summary>
/// What Debian's ffprobe says of a local video file that OpenCV does not: whether it has sound, and
/// its video's base rate (r_frame_rate: the rate its timestamps are on, a variable-rate
/// recording's fastest stretch, where OpenCV gives the mean).
/// </summary>
public sealed record MediaProbe(bool HasSound, double? BaseFps)
{
    /// <summary>Null without ffprobe, or when it cannot read the file.</summary>
    public static MediaProbe? Of(string file)
    {
        if (Executables.Find("ffprobe") is not { } ffprobe) return null;
        var info = Executables.InOwnSession(ffprobe);
        info.RedirectStandardOutput = info.RedirectStandardError = true;
        foreach (var a in new[] { "-v", "error", "-protocol_whitelist", "file", "-show_entries", "stream=codec_type,r_frame_rate", "-of", "csv=p=0", file })
            info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(10_000)) { try { p.Kill(); } catch (InvalidOperationException) { } return null; }
        if (p.ExitCode != 0) return null;
        var streams = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => l.Split(',')).ToList();
        double? fps = streams.FirstOrDefault(s => s is ["video", _]) is [_, var rate] ? Rate(rate) : null;
        return new MediaProbe(streams.Any(s => s is ["audio", ..]), fps);
    }

    static double? Rate(string fraction)
    {
        var parts = fraction.Split('/');
        return parts.Length == 2 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var n)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && n > 0 && d > 0 ? n / d : null;
    }

    /// <summary>
    /// The rate to write a video of this file at: its base rate where that is a sane bound on its
    /// frames (at least their mean <paramref name="meanFps"/>, at most 4× it and 120), so that a
    /// variable-rate recording's fastest stretch keeps every frame; else the mean.
    /// </summary>
    public double VideoFps(double meanFps) =>
        BaseFps is { } r && r >= meanFps - 0.01 && r <= Math.Min(120, 4 * meanFps) ? r : meanFps;
}
