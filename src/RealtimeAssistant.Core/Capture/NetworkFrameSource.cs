using System.Diagnostics;
using System.Runtime.InteropServices;
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

    readonly string _url, _ffmpeg, _dir, _fifo;
    readonly LiveFrameSource _live;
    readonly object _gate = new();
    readonly TimeSpan _ioTimeout;
    Process? _relay;
    string? _relayError;
    volatile bool _disposed;

    public static bool IsUrl(string spec) =>
        Uri.TryCreate(spec, UriKind.Absolute, out var u) && Schemes.Contains(u.Scheme, StringComparer.OrdinalIgnoreCase);

    /// <summary>The URL without its user and password, for logs and the HUD.</summary>
    public static string Redact(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && u.UserInfo.Length > 0 ? url.Replace(u.UserInfo + "@", "***@") : url;

    public NetworkFrameSource(string url, FrameSourceOptions? options = null, TimeSpan? ioTimeout = null)
    {
        if (!IsUrl(url)) throw new UserError($"not a stream URL ({string.Join(", ", Schemes)}): {Redact(url)}");
        _ffmpeg = Executables.Find("ffmpeg")
            ?? throw new UserError($"network sources need ffmpeg on PATH (Debian: apt-get install ffmpeg): {Redact(url)}");
        _url = url;
        _ioTimeout = ioTimeout ?? TimeSpan.FromSeconds(5);
        _dir = Path.Combine(Path.GetTempPath(), $"ra-stream-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
        _fifo = Path.Combine(_dir, "relay.nut");
        if (mkfifo(_fifo, 0x180 /* 0600 */) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Directory.Delete(_dir, true);
            throw new IOException($"mkfifo {_fifo} failed (errno {errno})");
        }
        Description = $"stream {Redact(url)}";
        _live = new LiveFrameSource(Description, Open, options, unblock: Unblock);
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
    VideoCapture Open()
    {
        var relay = StartRelay();
        // Opening a FIFO blocks until ffmpeg opens it for writing, which it does once it has
        // connected and probed the stream. A relay that gives up first never writes: then the
        // blocked open is released (again and again, so a release that came before the open is no loss).
        var opening = Task.Factory.StartNew(() => new VideoCapture(_fifo, VideoCaptureAPIs.FFMPEG), CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);
        while (!opening.Wait(100))
            if (_disposed || Exited(relay)) ReleaseBlockedOpen();
        var capture = opening.Result;
        if (capture.IsOpened()) return capture;
        capture.Dispose();
        for (int i = 0; i < 10 && !Exited(relay); i++) Thread.Sleep(100); // its last words, for the status line
        throw new IOException(_relayError ?? "no video came from the stream");
    }

    /// <summary>True once the relay has ended (or was stopped and disposed by <see cref="Unblock"/>).</summary>
    static bool Exited(Process p)
    {
        try { return p.HasExited; }
        catch (InvalidOperationException) { return true; }
    }

    Process StartRelay()
    {
        lock (_gate)
        {
            if (_disposed) throw new ObjectDisposedException(Description);
            StopRelay();
            _relayError = null;
            var psi = new ProcessStartInfo(_ffmpeg) { RedirectStandardError = true, UseShellExecute = false };
            var timeoutUs = ((long)_ioTimeout.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
            foreach (var a in new[]
            {
                "-nostdin", "-hide_banner", "-loglevel", "error",
                // A stream that stalls ends the relay (then the source reconnects) instead of hanging it.
                "-rw_timeout", timeoutUs,
                "-i", _url,
                "-map", "0:v:0", "-an", "-sn", "-dn",
                "-vf", $"scale='min({MaxWidth},iw)':-2",
                "-c:v", "rawvideo", "-pix_fmt", "bgr24", "-f", "nut", "-y", _fifo,
            }) psi.ArgumentList.Add(a);
            var p = new Process { StartInfo = psi };
            p.ErrorDataReceived += (_, e) => { if (!string.IsNullOrWhiteSpace(e.Data)) _relayError = $"ffmpeg: {Redact(e.Data.Trim())}"; };
            p.Start();
            p.BeginErrorReadLine();
            _relay = p;
            return p;
        }
    }

    void StopRelay()
    {
        var p = _relay;
        _relay = null;
        if (p is null) return;
        try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { }
        p.WaitForExit(2000);
        p.Dispose();
    }

    void Unblock()
    {
        lock (_gate) StopRelay();
        ReleaseBlockedOpen();
    }

    /// <summary>Opening the FIFO read-write (never blocks on Linux) counts as the writer a blocked open waits for; it then sees EOF.</summary>
    void ReleaseBlockedOpen()
    {
        try { using var _ = new FileStream(_fifo, FileMode.Open, FileAccess.ReadWrite); }
        catch (Exception) { /* gone: nothing is blocked on it then */ }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int mkfifo(string path, uint mode);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _live.Dispose();
        lock (_gate) StopRelay();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
