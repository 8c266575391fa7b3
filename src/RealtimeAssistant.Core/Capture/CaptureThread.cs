using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Runs a frame source on its own thread and publishes every frame into a sink: a
/// <see cref="LatestFrameSlot"/> for live pacing (capture never waits for inference, inference
/// always gets the newest frame), or a bounded <see cref="FrameQueue"/> when every frame counts.
/// The sink is completed when the source ends or fails.
/// </summary>
public sealed class CaptureThread : IDisposable
{
    readonly IFrameSource source;
    readonly Profiler? profiler;
    readonly ILogger? logger;
    readonly CancellationTokenSource stop = new();
    Thread? thread;
    long captured;
    volatile bool ended;
    volatile Exception? error;

    /// <summary>Where frames go: the latest-frame slot (live), or a bounded queue (every frame, in order).</summary>
    public IFrameSink Sink { get; }
    public IFrameSource Source => source;
    public long FramesCaptured => Interlocked.Read(ref captured);
    public bool IsRunning => thread is { IsAlive: true };
    /// <summary>The source said it has no more frames (or failed).</summary>
    public bool EndOfStream => ended;
    /// <summary>What stopped the source, if it threw (a <see cref="UserError"/> for bad input).</summary>
    public Exception? Error => error;

    public string Status => error is { } e ? $"error: {e.Message}" : ended ? "ended" : source.Status;

    public CaptureThread(IFrameSource source, IFrameSink? sink = null, Profiler? profiler = null, ILogger? logger = null)
    {
        this.source = source;
        this.profiler = profiler;
        this.logger = logger;
        Sink = sink ?? new LatestFrameSlot();
    }

    public void Start()
    {
        if (thread is not null) throw new InvalidOperationException("capture already started");
        thread = new Thread(Run) { IsBackground = true, Name = "capture" };
        thread.Start();
    }

    void Run()
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var t0 = Stopwatch.GetTimestamp();
                var frame = source.Read(stop.Token);
                if (frame is null) break;
                profiler?.Record(Profiler.Capture, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                profiler?.Count(Profiler.FramesCaptured);
                Interlocked.Increment(ref captured);
                Sink.Publish(frame);
            }
        }
        catch (OperationCanceledException) { } // stopped, or the consumer stopped taking frames
        catch (Exception e)
        {
            error = e;
            // A user's bad input is one line, here too; anything else keeps its trace.
            if (e is UserError) logger?.LogError("capture from {Source} failed: {Message}", source.Description, e.Message);
            else logger?.LogError(e, "capture from {Source} failed", source.Description);
        }
        finally
        {
            ended = true;
            Sink.Complete();
        }
    }

    /// <summary>Asks the thread to stop and waits for it; false if it did not stop in time. A
    /// thread that did not stop once is stuck in a read: it is not waited for again.</summary>
    public bool Stop(TimeSpan? timeout = null)
    {
        stop.Cancel();
        if (thread is null) return true;
        if (stuck) return !thread.IsAlive;
        stuck = !thread.Join(timeout ?? TimeSpan.FromSeconds(3));
        return !stuck;
    }
    bool stuck;

    /// <summary>Stops the thread. The source and slot stay the caller's to dispose.</summary>
    public void Dispose()
    {
        // A thread still stuck in a native read keeps using the token: only free it once the thread is gone.
        if (Stop()) stop.Dispose();
    }
}
