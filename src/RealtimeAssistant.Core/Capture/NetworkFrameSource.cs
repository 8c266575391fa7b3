using OpenCvSharp;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Capture;

/// <summary>
/// An RTSP, RTMP or HTTP(S) stream. The FFmpeg bundled with OpenCV has only the file and pipe
/// protocols (no tcp), so Debian's ffmpeg connects, decodes and writes raw BGR frames in NUT
/// into a FIFO, and the FIFO is read as any other live source (<see cref="LiveFrameSource"/>):
/// when the stream drops, the relay ends, the read fails, and the source reconnects with backoff
/// (a fresh relay per attempt), saying so in <see cref="Status"/>.
/// </summary>
public sealed class NetworkFrameSource : IFrameSource, IReconnectingSource
{
    static readonly string[] Schemes = ["rtsp", "rtsps", "rtmp", "rtmps", "http", "https"];

    /// <summary>Frames wider than this are scaled down by the relay (the model reads far fewer pixels; the FIFO carries raw frames).</summary>
    public const int MaxWidth = 1280;

    readonly FfmpegRelay _relay;
    readonly LiveFrameSource _live;
    volatile bool _disposed;

    public static bool IsUrl(string spec) =>
        Uri.TryCreate(spec, UriKind.Absolute, out var u) && Schemes.Contains(u.Scheme, StringComparer.OrdinalIgnoreCase);

    /// <summary>The URL without its user and password, for logs and the HUD.</summary>
    public static string Redact(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && u.UserInfo.Length > 0 ? url.Replace(u.UserInfo + "@", "***@") : url;

    public NetworkFrameSource(string url, FrameSourceOptions? options = null, TimeSpan? ioTimeout = null)
    {
        if (!IsUrl(url)) throw new UserError($"not a stream URL ({string.Join(", ", Schemes)}): {Redact(url)}");
        var ffmpeg = Executables.Find("ffmpeg")
            ?? throw new UserError($"network sources need ffmpeg on PATH (Debian: apt-get install ffmpeg): {Redact(url)}");
        // A stream that stalls ends the relay (then the source reconnects) instead of hanging it.
        _relay = Relay(ffmpeg, url, ioTimeout ?? TimeSpan.FromSeconds(5));
        Description = $"stream {Redact(url)}";
        _live = new LiveFrameSource(Description, Open, options, unblock: _relay.Stop);
    }

    /// <summary>
    /// Debian's ffmpeg reading <paramref name="url"/> into raw frames: an I/O that stalls for
    /// <paramref name="ioTimeout"/> ends it; frames wider than <see cref="MaxWidth"/> are scaled down;
    /// the URL's password stays out of its error lines. An HTTP(S) URL reaches only HTTP(S) (its
    /// playlist cannot name a local file).
    /// </summary>
    /// <param name="resume">a file read to its end: ffmpeg itself resumes a dropped HTTP connection where it broke
    /// (a live source instead ends its relay, and reconnects with its own backoff)</param>
    internal static FfmpegRelay Relay(string ffmpeg, string url, TimeSpan ioTimeout, bool resume = false)
    {
        var timeoutUs = ((long)ioTimeout.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Uri.TryCreate(url, UriKind.Absolute, out var u);
        string[] http = !MediaProbe.IsHttp(url) ? []
            : resume ? ["-protocol_whitelist", MediaProbe.Protocols(url), "-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_delay_max", "4"]
            : ["-protocol_whitelist", MediaProbe.Protocols(url)];
        return new FfmpegRelay(ffmpeg, [.. http, "-rw_timeout", timeoutUs, "-i", url], ["-vf", $"scale='min({MaxWidth},iw)':-2"],
            line => u is { UserInfo.Length: > 0 } ? line.Replace(u.UserInfo + "@", "***@") : line);
    }

    public string Description { get; }
    public double Fps => _live.Fps;
    public bool IsLive => true;
    public long? FrameCount => null;
    public string Status => _live.Status;
    public long Retries => _live.Retries;
    public long Recoveries => _live.Recoveries;
    public int Attempt => _live.Attempt;
    public string? LostReason => _live.LostReason;
    public long FramesReceived => _live.FramesReceived;

    public Frame? Read(CancellationToken ct = default) => _live.Read(ct);

    /// <summary>On the grabber thread: a fresh relay, then the capture on its FIFO.</summary>
    VideoCapture Open() => _relay.Open(() => _disposed);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _live.Dispose();
        _relay.Dispose();
    }
}
