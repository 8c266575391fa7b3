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
        var timeoutUs = ((long)(ioTimeout ?? TimeSpan.FromSeconds(5)).TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        _relay = new FfmpegRelay(ffmpeg,
            // A stream that stalls ends the relay (then the source reconnects) instead of hanging it.
            ["-rw_timeout", timeoutUs, "-i", url],
            ["-vf", $"scale='min({MaxWidth},iw)':-2"],
            line => Uri.TryCreate(url, UriKind.Absolute, out var u) && u.UserInfo.Length > 0 ? line.Replace(u.UserInfo + "@", "***@") : line);
        Description = $"stream {Redact(url)}";
        _live = new LiveFrameSource(Description, Open, options, unblock: _relay.Stop);
    }

    public string Description { get; }
    public double Fps => _live.Fps;
    public bool IsLive => true;
    public long? FrameCount => null;
    public string Status => _live.Status;
    public long Retries => _live.Retries;
    public long Recoveries => _live.Recoveries;
    public int Attempt => _live.Attempt;
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
