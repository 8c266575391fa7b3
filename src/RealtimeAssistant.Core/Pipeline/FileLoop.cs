using System.Collections.Concurrent;
using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Pipeline;

/// <summary>How <see cref="FileLoop"/> walks a file.</summary>
public sealed record FileLoopOptions
{
    /// <summary>A new caption every this many frames (1 = every frame).</summary>
    public int Every { get; init; } = 15;
    /// <summary>Frames before this index are read (for motion context) but not rendered or captioned: resume.</summary>
    public long StartFrame { get; init; }
    /// <summary>Frames the capture thread may read ahead of the render thread (0: Every + 4, at least 8, at most 64).</summary>
    public int ReadAhead { get; init; } = 0;
}

/// <summary>One caption segment of a file: the caption made from <see cref="KeyFrame"/>, shown until <see cref="EndFrame"/> (exclusive).</summary>
public sealed record CaptionSegment(long KeyFrame, long EndFrame, TimeSpan Start, TimeSpan End, CaptionResult Result, double LatencyMs);

/// <summary>What a <see cref="FileLoop.Run"/> did.</summary>
public sealed record FileLoopResult(long FramesRendered, int Captions, bool Cancelled, TimeSpan Elapsed);

/// <summary>
/// File mode of the frame loop, for annotate: at model speed, nothing dropped. A capture thread
/// decodes ahead into a bounded queue and hands every <see cref="FileLoopOptions.Every"/>-th frame
/// (with the frame <see cref="IFrameCaptioner.FrameStride"/> before it) to the inference thread;
/// the caller's thread renders and writes every frame in order, showing the caption of the
/// frame's segment — waiting for it when the model is behind, which is what "model speed" means.
/// </summary>
public sealed class FileLoop(IFrameSource source, IFrameCaptioner captioner, Profiler profiler, FileLoopOptions? options = null)
{
    readonly FileLoopOptions opts = options ?? new FileLoopOptions();

    /// <summary>From the inference thread: a caption starts (key frame index and its time).</summary>
    public Action<long, TimeSpan>? CaptionStarted { get; init; }
    /// <summary>From the inference thread: a text delta of the caption for that key frame.</summary>
    public Action<long, string>? CaptionDelta { get; init; }

    sealed record Job(Frame Key, List<Mat> Mats);

    sealed class Outcome
    {
        public CaptionResult? Result;
        public Exception? Error;   // set on failure: the run stops and rethrows it
        public double LatencyMs;
    }

    /// <param name="present">Renders and writes one frame with the caption to show (render thread).</param>
    /// <param name="segmentDone">A segment closed (its last frame is written): write its caption entry.</param>
    /// <param name="progress">Frames rendered so far.</param>
    /// <param name="stopped">On the render thread once the last frame and segment are out, before the worker threads
    /// are joined (a caption in flight may take a while to notice the cancellation): finish the outputs here.</param>
    public FileLoopResult Run(Action<Frame, CaptionView> present, Action<CaptionSegment> segmentDone, Action<long>? progress, CancellationToken ct,
        Action? stopped = null)
    {
        if (opts.Every < 1) throw new UserError($"--every must be at least 1, got {opts.Every}");
        var sw = Stopwatch.StartNew();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = linked.Token;
        using var frames = new BlockingCollection<Frame>(opts.ReadAhead > 0 ? opts.ReadAhead : Math.Clamp(opts.Every + 4, 8, 64));
        using var jobs = new BlockingCollection<Job>(2);
        var outcomes = new Dictionary<long, Outcome>();
        using var history = new FrameHistory(FrameHistory.CapacityFor(captioner.FramesPerCaption, captioner.FrameStride));
        Exception? captureError = null, inferenceError = null;

        var captureThread = new Thread(() =>
        {
            try
            {
                while (!token.IsCancellationRequested)
                {
                    Frame? frame;
                    var t0 = Stopwatch.GetTimestamp();
                    frame = source.Read(token);
                    if (frame is null) break;
                    profiler.Record(Profiler.Capture, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    profiler.Count(Profiler.FramesCaptured);
                    history.Add(frame);
                    if (frame.Index < opts.StartFrame) { frame.Dispose(); continue; }
                    if (IsKey(frame.Index))
                    {
                        var mats = history.Window(frame, captioner.FramesPerCaption, captioner.FrameStride);
                        mats[^1] = frame.Image.Clone();
                        jobs.Add(new Job(frame with { Image = mats[^1] }, mats), token);
                    }
                    frames.Add(frame, token);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested) { }
            catch (Exception e) { captureError = e; }
            finally
            {
                jobs.CompleteAdding();
                frames.CompleteAdding();
            }
        }) { IsBackground = true, Name = "capture" };

        var inferenceThread = new Thread(() =>
        {
            try
            {
                foreach (var job in jobs.GetConsumingEnumerable(token))
                {
                    var outcome = new Outcome();
                    try
                    {
                        var t0 = Stopwatch.GetTimestamp();
                        CaptionStarted?.Invoke(job.Key.Index, job.Key.Timestamp);
                        var result = captioner.Caption(new CaptionRequest(job.Mats), delta =>
                        {
                            profiler.Count(CaptionStages.CaptionWords);
                            CaptionDelta?.Invoke(job.Key.Index, delta);
                        }, token);
                        CaptionStages.Record(profiler, result, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                        outcome.LatencyMs = profiler.RecordLatency(job.Key.CapturedAt);
                        outcome.Result = result;
                    }
                    catch (OperationCanceledException) when (token.IsCancellationRequested) { throw; }
                    catch (Exception e) { outcome.Error = e; }
                    finally { foreach (var m in job.Mats) m.Dispose(); }
                    if (outcome.Error is not null) { inferenceError = outcome.Error; linked.Cancel(); break; }
                    lock (outcomes) { outcomes[job.Key.Index] = outcome; Monitor.PulseAll(outcomes); }
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested) { }
            finally
            {
                // Drain what capture queued so no Mat is left behind.
                while (jobs.TryTake(out var left)) foreach (var m in left.Mats) m.Dispose();
            }
        }) { IsBackground = true, Name = "inference" };

        captureThread.Start();
        inferenceThread.Start();

        long rendered = 0;
        int captions = 0;
        (long Key, TimeSpan Start, CaptionResult Result, double Latency)? open = null;
        (long Index, TimeSpan Time)? last = null;
        bool cancelled = false;
        using var wake = token.Register(() => { lock (outcomes) Monitor.PulseAll(outcomes); });
        try
        {
            foreach (var frame in frames.GetConsumingEnumerable(token))
            {
                using (frame)
                {
                    if (IsKey(frame.Index))
                    {
                        var outcome = WaitFor(frame.Index, outcomes, token);
                        if (open is { } o)
                        {
                            segmentDone(new CaptionSegment(o.Key, frame.Index, o.Start, frame.Timestamp, o.Result, o.Latency));
                            captions++;
                        }
                        open = (frame.Index, frame.Timestamp, outcome.Result!, outcome.LatencyMs);
                    }
                    var view = open is { } s ? ViewOf(s.Result, s.Key, s.Start, captions) : CaptionView.Empty;
                    using (profiler.Time(Profiler.Render)) present(frame, view);
                    rendered++;
                    progress?.Invoke(rendered);
                    last = (frame.Index, frame.Timestamp);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested) { }
        finally
        {
            cancelled = token.IsCancellationRequested;
            linked.Cancel();
            // The open segment ends after the last frame written: outputs stay consistent when interrupted.
            // Written before the joins: on Ctrl+C the process may have only a couple of seconds left.
            if (open is { } o && last is { } l)
            {
                var end = l.Time + TimeSpan.FromSeconds(1 / Math.Max(1e-3, source.Fps));
                segmentDone(new CaptionSegment(o.Key, l.Index + 1, o.Start, end, o.Result, o.Latency));
                captions++;
            }
            stopped?.Invoke();
            captureThread.Join(TimeSpan.FromSeconds(10));
            inferenceThread.Join(TimeSpan.FromSeconds(30));
            while (frames.TryTake(out var left)) left.Dispose();
        }
        // A failure on another thread is the run's failure, unless the user interrupted first.
        if (inferenceError is not null && !ct.IsCancellationRequested)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(inferenceError);
        if (captureError is not null && !ct.IsCancellationRequested)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(captureError);
        return new FileLoopResult(rendered, captions, cancelled && ct.IsCancellationRequested, sw.Elapsed);
    }

    bool IsKey(long index) => (index - opts.StartFrame) % opts.Every == 0;

    static Outcome WaitFor(long key, Dictionary<long, Outcome> outcomes, CancellationToken ct)
    {
        lock (outcomes)
        {
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (outcomes.Remove(key, out var o)) return o;
                Monitor.Wait(outcomes, 200);
            }
        }
    }

    static CaptionView ViewOf(CaptionResult r, long key, TimeSpan start, int completed) =>
        new(r.Text, key + 1, completed + 1, false, key, start, 0, r.KeptGrid, r.GridW, r.GridH, r.KeptTokens, r.VisualTokens, null);
}
