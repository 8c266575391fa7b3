using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace RealtimeAssistant.Output;

/// <summary>
/// What Debian's ffprobe says of a video that OpenCV does not: whether it has sound, its video's
/// base rate (r_frame_rate: the rate its timestamps are on, a variable-rate recording's fastest
/// stretch, where OpenCV gives the mean), and its length, which a live stream has not.
/// </summary>
/// <param name="Seconds">the container's duration; null for a live stream</param>
public sealed record MediaProbe(bool HasSound, double? BaseFps, double? Seconds = null)
{
    /// <summary>
    /// A local file, or an HTTP(S) URL (which reaches only HTTP(S): its playlist cannot name a
    /// local file). Null without ffprobe, when it cannot read the source, or after <paramref name="timeout"/>.
    /// </summary>
    public static MediaProbe? Of(string source, TimeSpan? timeout = null)
    {
        if (Executables.Find("ffprobe") is not { } ffprobe) return null;
        var info = Executables.InOwnSession(ffprobe);
        info.RedirectStandardOutput = info.RedirectStandardError = true;
        foreach (var a in new[] { "-v", "error", "-protocol_whitelist", Protocols(source),
                     "-show_entries", "stream=codec_type,r_frame_rate:format=duration", "-of", "json", source })
            info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(10))) { try { p.Kill(); } catch (InvalidOperationException) { } return null; }
        if (p.ExitCode != 0) return null;
        try
        {
            using var json = JsonDocument.Parse(output.Result);
            var streams = json.RootElement.TryGetProperty("streams", out var s) && s.ValueKind == JsonValueKind.Array ? s.EnumerateArray().ToList() : [];
            string? Text(JsonElement e, string name) => e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            var video = streams.FirstOrDefault(e => Text(e, "codec_type") == "video");
            double? seconds = json.RootElement.TryGetProperty("format", out var f)
                && double.TryParse(Text(f, "duration"), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0 && double.IsFinite(d) ? d : null;
            return new MediaProbe(streams.Any(e => Text(e, "codec_type") == "audio"), Text(video, "r_frame_rate") is { } r ? Rate(r) : null, seconds);
        }
        catch (JsonException) { return null; }
    }

    /// <summary>An http(s) URL, which ffmpeg and ffprobe may fetch (<see cref="Protocols"/>).</summary>
    public static bool IsHttp(string source) => Uri.TryCreate(source, UriKind.Absolute, out var u) && u.Scheme is "http" or "https";

    /// <summary>
    /// ffmpeg's -protocol_whitelist for reading <paramref name="source"/>: a URL reaches only
    /// HTTP(S), so that its playlist cannot name a local file; a file, only files.
    /// </summary>
    public static string Protocols(string source) => IsHttp(source) ? "http,https,tcp,tls,crypto" : "file";

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
