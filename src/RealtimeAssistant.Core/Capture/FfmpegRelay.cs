using System.Diagnostics;
using System.Runtime.InteropServices;
using OpenCvSharp;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Debian's ffmpeg decoding a source into raw BGR frames in NUT on a FIFO, and OpenCV's capture
/// reading that FIFO. For what the FFmpeg bundled with OpenCV cannot do: network protocols (it has
/// only file and pipe) and codecs it lacks (AV1). ffmpeg blocks on the FIFO until the capture
/// reads, so nothing is dropped or buffered beyond the pipe. Each <see cref="Open"/> starts a
/// fresh ffmpeg; a relay that ends (its input ended, dropped or failed) ends the capture's frames.
/// </summary>
internal sealed class FfmpegRelay : IDisposable
{
    readonly string _ffmpeg, _dir, _fifo;
    readonly IReadOnlyList<string> _input, _output;
    readonly Func<string, string> _redact;
    readonly object _gate = new();
    Process? _process;
    string? _error;
    bool _disposed;

    /// <param name="input">ffmpeg's options up to and including <c>-i SOURCE</c>.</param>
    /// <param name="filters">options between the input and the raw output (<c>-vf</c>, say).</param>
    /// <param name="redact">applied to ffmpeg's error lines (a URL's password).</param>
    public FfmpegRelay(string ffmpeg, IReadOnlyList<string> input, IReadOnlyList<string>? filters = null, Func<string, string>? redact = null)
    {
        _ffmpeg = ffmpeg;
        _input = input;
        _output = ["-map", "0:v:0", "-an", "-sn", "-dn", .. filters ?? [], "-c:v", "rawvideo", "-pix_fmt", "bgr24", "-f", "nut", "-y"];
        _redact = redact ?? (s => s);
        _dir = Path.Combine(Path.GetTempPath(), $"ra-relay-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
        _fifo = Path.Combine(_dir, "relay.nut");
        if (mkfifo(_fifo, 0x180 /* 0600 */) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Directory.Delete(_dir, true);
            throw new IOException($"mkfifo {_fifo} failed (errno {errno})");
        }
    }

    /// <summary>ffmpeg's last error line, if it printed one.</summary>
    public string? Error => _error;

    /// <summary>
    /// Starts a fresh ffmpeg (stopping the last) and opens the capture on its FIFO. Opening blocks
    /// until ffmpeg opens the FIFO for writing, which it does once it has probed its input; an
    /// ffmpeg that gives up first never writes, and <paramref name="abandon"/> returning true gives
    /// up too. Either way the blocked open is released and this throws <see cref="IOException"/>
    /// with ffmpeg's last words.
    /// </summary>
    public VideoCapture Open(Func<bool> abandon)
    {
        var process = Start();
        // OpenCV's FFmpeg backend opens every capture under one lock for the whole process, and
        // opening a FIFO blocks until its writer comes: a capture opened on the FIFO of a stream
        // still connecting would hold up every other open (a server's other streams, a chat's
        // video). So wait for ffmpeg's first bytes outside OpenCV, on a read end of our own.
        using var early = new FifoWatch(_fifo);
        if (!early.WaitForData(() => abandon() || Exited(process)))
        {
            for (int i = 0; i < 10 && !Exited(process); i++) Thread.Sleep(100); // its last words
            throw new IOException(_error ?? "ffmpeg gave no video");
        }
        var opening = Task.Factory.StartNew(() => new VideoCapture(_fifo, VideoCaptureAPIs.FFMPEG), CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);
        // Released again and again, so a release that came before the open is no loss.
        while (!opening.Wait(100))
            if (abandon() || Exited(process)) ReleaseBlockedOpen();
        var capture = opening.Result;
        if (capture.IsOpened()) return capture;
        capture.Dispose();
        for (int i = 0; i < 10 && !Exited(process); i++) Thread.Sleep(100); // its last words
        throw new IOException(_error ?? "ffmpeg gave no video");
    }

    /// <summary>Stops ffmpeg and releases an open blocked on its FIFO; a capture reading it then sees the end.</summary>
    public void Stop()
    {
        lock (_gate) StopProcess();
        ReleaseBlockedOpen();
    }

    Process Start()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            StopProcess();
            _error = null;
            // Killed with ra: an ffmpeg still probing its input when ra dies would otherwise block
            // for good opening a FIFO that no one will read. Its stdout is not ra's: a stray child
            // must not hold open the pipe a caller reads ra's output from.
            var psi = Executables.InOwnSession(_ffmpeg, diesWithUs: true);
            psi.RedirectStandardError = psi.RedirectStandardOutput = true;
            foreach (var a in (string[])["-nostdin", "-hide_banner", "-loglevel", "error", .. _input, .. _output, _fifo]) psi.ArgumentList.Add(a);
            var p = new Process { StartInfo = psi };
            // ffmpeg's line on its input ("URL: Server returned 404 Not Found") says why, where the lines
            // after it are its epilogue ("Error marking filters as finished"): that one is kept once seen.
            var input = _input[^1] + ": ";
            bool named = false;
            p.ErrorDataReceived += (_, e) =>
            {
                if (string.IsNullOrWhiteSpace(e.Data) || named) return;
                var line = e.Data.Trim();
                named = line.StartsWith(input, StringComparison.Ordinal);
                _error = $"ffmpeg: {_redact(line)}";
            };
            Executables.StartTied(p);
            p.BeginErrorReadLine();
            p.BeginOutputReadLine();
            _process = p;
            return p;
        }
    }

    void StopProcess()
    {
        var p = _process;
        _process = null;
        if (p is null) return;
        try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { }
        p.WaitForExit(2000);
        p.Dispose();
    }

    /// <summary>True once ffmpeg has ended (or was stopped and disposed).</summary>
    static bool Exited(Process p)
    {
        try { return p.HasExited; }
        catch (InvalidOperationException) { return true; }
    }

    void ReleaseBlockedOpen() => FrameSources.ReleaseBlockedOpen(_fifo);

    [DllImport("libc", SetLastError = true)]
    static extern int mkfifo(string path, uint mode);

    /// <summary>A non-blocking read end of a FIFO, held while OpenCV opens it, to see data come without reading it.</summary>
    sealed class FifoWatch : IDisposable
    {
        const int ReadOnlyNonBlocking = 0x800; // O_RDONLY | O_NONBLOCK (Linux)
        const short PollIn = 0x1, PollHup = 0x10;
        readonly int _fd;

        public FifoWatch(string path)
        {
            _fd = open(path, ReadOnlyNonBlocking);
            if (_fd < 0) throw new IOException($"cannot open {path} (errno {Marshal.GetLastPInvokeError()})");
        }

        /// <summary>True once the FIFO holds data; false when its writer came and went without any, or <paramref name="abandon"/> says so.</summary>
        public bool WaitForData(Func<bool> abandon)
        {
            var fd = new PollFd { Fd = _fd, Events = PollIn };
            while (true)
            {
                fd.Revents = 0;
                if (poll(ref fd, 1, 100) > 0)
                {
                    if ((fd.Revents & PollIn) != 0) return true;
                    if ((fd.Revents & PollHup) != 0) return false;
                }
                if (abandon()) return false;
            }
        }

        public void Dispose() => close(_fd);

        struct PollFd { public int Fd; public short Events; public short Revents; }
        [DllImport("libc", SetLastError = true)] static extern int open(string path, int flags);
        [DllImport("libc", SetLastError = true)] static extern int poll(ref PollFd fds, nuint count, int timeoutMs);
        [DllImport("libc")] static extern int close(int fd);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            StopProcess();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
