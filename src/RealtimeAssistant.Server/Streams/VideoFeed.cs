using System.Diagnostics;
using Microsoft.Extensions.Logging;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// A stream's video as JPEG frames with the overlay burned in, for GET /v1/streams/{id}/video.
/// One thread per stream, and only while someone watches: it takes the frame loop's newest
/// display frame at the video rate, draws the overlay, encodes once, and every viewer gets the
/// same JPEG. When the last viewer leaves the thread ends and frees its overlay (its GL context).
/// </summary>
public sealed class VideoFeed : IDisposable
{
    const int MaxWidth = 960;
    static readonly TimeSpan Linger = TimeSpan.FromSeconds(3);

    readonly FrameLoop _loop;
    readonly double _fps;
    readonly ILogger _log;
    readonly object _gate = new();
    StreamOverlayFactory? _overlay;
    Thread? _thread;
    int _viewers;
    bool _stopped;
    byte[]? _jpeg;
    long _version;
    TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public VideoFeed(FrameLoop loop, StreamOverlayFactory? overlay, double fps, ILogger log)
    {
        _loop = loop;
        _overlay = overlay;
        _fps = fps;
        _log = log;
    }

    public int Viewers { get { lock (_gate) return _viewers; } }
    public bool Running { get { lock (_gate) return _thread is { IsAlive: true }; } }

    /// <summary>A viewer arrives; disposing the result is its leaving.</summary>
    public IDisposable Attach()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopped, this);
            _viewers++;
            if (_thread is not { IsAlive: true })
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "video" };
                _thread.Start();
            }
        }
        return new Leave(this);
    }

    sealed class Leave(VideoFeed feed) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) lock (feed._gate) feed._viewers--;
        }
    }

    /// <summary>The next JPEG after <paramref name="after"/> (a version), or null once the feed has stopped.</summary>
    public async Task<(byte[] Jpeg, long Version)?> NextAsync(long after, CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_stopped) return null;
                if (_jpeg is not null && _version > after) return (_jpeg, _version);
                changed = _changed.Task;
            }
            await changed.WaitAsync(ct);
        }
    }

    void Publish(byte[] jpeg)
    {
        TaskCompletionSource wake;
        lock (_gate)
        {
            // Stopped: Dispose has completed _changed (it woke every viewer); a frame drawn meanwhile goes nowhere.
            if (_stopped) return;
            _jpeg = jpeg;
            _version++;
            wake = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.SetResult();
    }

    void Run()
    {
        IStreamOverlay? overlay = null;
        Frame? current = null;
        var period = TimeSpan.FromSeconds(1 / _fps);
        long idleSince = 0;
        var encode = new ImageEncodingParam(ImwriteFlags.JpegQuality, 80);
        try
        {
            var next = Stopwatch.GetTimestamp();
            while (true)
            {
                lock (_gate)
                {
                    if (_stopped) break;
                    if (_viewers > 0) idleSince = 0;
                    else if (idleSince == 0) idleSince = Stopwatch.GetTimestamp();
                    else if (Stopwatch.GetElapsedTime(idleSince) > Linger) { _thread = null; break; }
                }
                if (_loop.TryTakeDisplayFrame(out var fresh)) { current?.Dispose(); current = fresh; }
                if (current is not null)
                {
                    overlay ??= MakeOverlay(current.Image.Size());
                    using var shown = overlay is null ? Fit(current.Image) : overlay.Draw(current.Image, _loop.Board.View);
                    Cv2.ImEncode(".jpg", shown, out var jpeg, encode);
                    Publish(jpeg);
                }
                next += (long)(period.TotalSeconds * Stopwatch.Frequency);
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
                if (wait > TimeSpan.Zero) Thread.Sleep(wait);
                else next = Stopwatch.GetTimestamp();
            }
        }
        catch (Exception e)
        {
            _log.LogError(e, "the video of a stream failed");
        }
        finally
        {
            overlay?.Dispose();
            current?.Dispose();
        }
    }

    /// <summary>The overlay at the frame's size (at most <see cref="MaxWidth"/> wide), or none when it cannot be made (no EGL): plain video then.</summary>
    IStreamOverlay? MakeOverlay(Size frame)
    {
        if (_overlay is not { } make) return null;
        var (w, h) = Scaled(frame);
        try { return make(_loop, w, h); }
        catch (Exception e)
        {
            _log.LogWarning("the video goes out without its overlay: {Message}", e.Message);
            _overlay = null;
            return null;
        }
    }

    static (int W, int H) Scaled(Size s) => s.Width <= MaxWidth ? (s.Width, s.Height) : (MaxWidth, Math.Max(2, (int)Math.Round(s.Height * (double)MaxWidth / s.Width)));

    static Mat Fit(Mat image)
    {
        var (w, h) = Scaled(image.Size());
        return w == image.Width ? image.Clone() : image.Resize(new Size(w, h), 0, 0, InterpolationFlags.Area);
    }

    public void Dispose()
    {
        Thread? thread;
        TaskCompletionSource wake;
        lock (_gate)
        {
            if (_stopped) return;
            _stopped = true;
            thread = _thread;
            wake = _changed;
        }
        wake.TrySetResult();
        thread?.Join(TimeSpan.FromSeconds(5));
    }
}
