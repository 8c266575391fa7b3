using System.Diagnostics;
using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// A camera or a FIFO: frames arrive at their own pace. A grabber thread owns the VideoCapture
/// and keeps only the newest frame; when the device vanishes or the writer stops it reconnects
/// with exponential backoff and says so in <see cref="Status"/>. It never throws for a lost
/// device; it ends only when <see cref="FrameSourceOptions.GiveUpAfter"/> passes without a frame.
/// </summary>
public sealed class LiveFrameSource : IFrameSource, IReconnectingSource
{
    readonly Func<VideoCapture> open;
    readonly Action? unblock;
    readonly FrameSourceOptions options;
    readonly LatestFrameSlot slot = new();
    readonly Thread grabber;
    readonly long started = Stopwatch.GetTimestamp();
    volatile bool stopping;
    volatile string state = "connecting";
    long lastFrameAt;   // Stopwatch timestamp of the newest frame, 0 before the first
    long frames, retries, recoveries;
    volatile int attempt;
    double fps = 30;
    volatile bool gaveUp;
    int reconnects;     // attempts to reopen after the source had given frames

    public string Description { get; }
    public double Fps => Volatile.Read(ref fps);
    public bool IsLive => true;
    public long? FrameCount => null;
    public long FramesReceived => Interlocked.Read(ref frames);
    /// <summary>Frames the device delivered that no reader took in time.</summary>
    public long FramesDropped => slot.Dropped;
    /// <summary>Failed attempts to open or keep the source, over its whole life.</summary>
    public long Retries => Interlocked.Read(ref retries);
    /// <summary>Times frames came again after the source was lost.</summary>
    public long Recoveries => Interlocked.Read(ref recoveries);
    /// <summary>Attempts since the last frame (0 while frames come).</summary>
    public int Attempt => attempt;

    /// <param name="open">Makes a fresh capture; called on the grabber thread and may block (a FIFO with no writer).</param>
    /// <param name="unblock">Releases a blocked <paramref name="open"/> when disposing, if the kind of source allows it.</param>
    public LiveFrameSource(string description, Func<VideoCapture> open, FrameSourceOptions? options = null, Action? unblock = null)
    {
        Description = description;
        this.open = open;
        this.unblock = unblock;
        this.options = options ?? new FrameSourceOptions();
        grabber = new Thread(Grab) { IsBackground = true, Name = $"grab {description}" };
        grabber.Start();
    }

    /// <summary>What was lost, for how long it was retried and how often.</summary>
    public string? LostReason => gaveUp && Interlocked.Read(ref frames) > 0
        ? $"{Description} lost: no frame for {options.GiveUpAfter!.Value.TotalSeconds:0.#} s, {Volatile.Read(ref reconnects)} reconnect attempts; gave up"
        : null;

    public string Status
    {
        get
        {
            if (gaveUp) return $"gave up: no frame for {options.GiveUpAfter!.Value.TotalSeconds:0.#} s";
            var s = state;
            if (s != "live") return s;
            var quiet = Seconds(Stopwatch.GetTimestamp() - Interlocked.Read(ref lastFrameAt));
            return quiet > 1 ? $"stalled: no frame for {quiet:0.0} s" : "live";
        }
    }

    public Frame? Read(CancellationToken ct = default)
    {
        while (true)
        {
            // Short waits so the give-up deadline is checked even while the grabber is stuck in open().
            var frame = slot.Take(TimeSpan.FromMilliseconds(100), ct);
            if (frame is not null) return frame;
            if (slot.IsCompleted) return null;
            if (options.GiveUpAfter is { } limit && Seconds(Stopwatch.GetTimestamp() - Math.Max(started, Interlocked.Read(ref lastFrameAt))) > limit.TotalSeconds)
            {
                gaveUp = true;
                stopping = true;   // no more reconnects
                unblock?.Invoke();
                if (Interlocked.Read(ref frames) == 0)
                    throw new UserError($"{Description} gave no frame in {limit.TotalSeconds:0.#} s ({state})");
                return null;
            }
        }
    }

    void Grab()
    {
        var backoff = new Backoff(options.RetryInitial, options.RetryMax);
        long index = -1; // numbered from the first capture's frame rate (a resumed stream goes on from where it was)
        while (!stopping)
        {
            VideoCapture? capture = null;
            string? why = null;
            // Opening may block for good (a FIFO with no writer), so say what we wait for first.
            state = Interlocked.Read(ref frames) > 0 ? $"{Description} lost – reconnecting (attempt {backoff.Attempt + 1})"
                  : backoff.Attempt == 0 ? $"connecting to {Description}" : $"{Description} not available – trying again (attempt {backoff.Attempt + 1})";
            if (Interlocked.Read(ref frames) > 0 && backoff.Attempt > 0) Interlocked.Increment(ref reconnects);
            try { capture = open(); }
            catch (Exception e) { why = e.Message; }   // a device error is one more reason to retry, never a crash
            if (stopping) { capture?.Dispose(); break; }
            if (capture is not null && capture.IsOpened())
            {
                if (capture.Fps is > 0 and < 1000) Volatile.Write(ref fps, capture.Fps);
                if (index < 0) index = options.FirstFrame(Fps);
                index = Pump(capture, index, backoff);
            }
            capture?.Dispose();
            if (stopping) break;
            var wait = backoff.Next();
            attempt = backoff.Attempt;
            Interlocked.Increment(ref retries);
            var what = Interlocked.Read(ref frames) > 0 ? "lost" : "not available";
            state = $"{Description} {what} – retrying in {wait.TotalSeconds:0.0} s (attempt {backoff.Attempt})" + (why is null ? "" : $": {why}");
            options.Logger?.LogLost(Description, state);
            Sleep(wait);
        }
        slot.Complete();
    }

    /// <summary>Reads until the capture fails; returns the next frame index.</summary>
    long Pump(VideoCapture capture, long index, Backoff backoff)
    {
        while (!stopping)
        {
            // A fresh Mat per frame: the slot takes ownership, so no copy is needed.
            var image = new Mat();
            if (!capture.Read(image) || image.Empty())
            {
                image.Dispose();
                break;
            }
            var now = Stopwatch.GetTimestamp();
            if (backoff.Attempt > 0 && Interlocked.Read(ref frames) > 0)
            {
                options.Logger?.LogRecovered(Description);
                Interlocked.Increment(ref recoveries);
            }
            backoff.Reset();
            attempt = 0;
            state = "live";
            Interlocked.Exchange(ref lastFrameAt, now);
            Interlocked.Increment(ref frames);
            slot.Publish(new Frame(image, index, options.StartAt + TimeSpan.FromSeconds(Seconds(now - started)), now));
            index++;
        }
        return index;
    }

    void Sleep(TimeSpan wait)
    {
        var until = Environment.TickCount64 + (long)wait.TotalMilliseconds;
        while (!stopping && Environment.TickCount64 < until) Thread.Sleep(20);
    }

    static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;

    public void Dispose()
    {
        stopping = true;
        // Release a blocked open again until the grabber is gone: it may reach open() only after
        // the first release (disposed right after creation), and a grabber left waiting there would
        // take frames from the next reader of the same FIFO.
        for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(2);)
        {
            unblock?.Invoke();
            if (grabber.Join(TimeSpan.FromMilliseconds(100))) break;
        }
        // A grabber stuck in a native read is left behind (it is a background thread and owns its capture).
        slot.Dispose();
    }
}
