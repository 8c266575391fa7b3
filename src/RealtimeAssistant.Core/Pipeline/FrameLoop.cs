using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Pipeline;

/// <summary>How the frame loop walks its source.</summary>
public enum Pacing
{
    /// <summary>The latest frame wins: the model reads the newest frame when it is free (at most one per stride); older frames are dropped and counted.</summary>
    Live,
    /// <summary>Every frame is rendered and written in order, and every stride-th frame goes to the model; nothing is dropped (annotate, demo without a window).</summary>
    File,
    /// <summary>Every stride-th frame goes to the model in order and nothing is rendered (ra stream).</summary>
    Headless,
}

public sealed record FrameLoopOptions
{
    public Pacing Pacing { get; init; } = Pacing.Live;
    /// <summary>The model reads every this-many source frames (live: at most one frame per this many).</summary>
    public int Stride { get; init; } = 5;
    /// <summary>The write policy, the scene-change gate, the frame budget and the schedule it prunes within.</summary>
    public DriverOptions Driver { get; init; } = new();
    /// <summary>Frames before this index are neither rendered nor captioned (resume); the window's frames just before it are read for context.</summary>
    public long StartFrame { get; init; }
    /// <summary>Questions asked at stream times (annotate and stream --ask): each is answered at the first frame at or after its time.</summary>
    public IReadOnlyList<(TimeSpan At, string Question)> Questions { get; init; } = Array.Empty<(TimeSpan, string)>();
    /// <summary>Stop after this many source frames (0: the whole source).</summary>
    public long MaxFrames { get; init; }
    /// <summary>File pacing: frames decoded ahead of the render thread (0: 2 strides + 4, 8..64).</summary>
    public int ReadAhead { get; init; }
    /// <summary>
    /// A renderer shows the captions and records glass-to-caption when each reaches the screen, so
    /// the loop records a caption's completion as <see cref="Profiler.CaptionReady"/> instead: one
    /// sample of each per caption.
    /// </summary>
    public bool CaptionsOnScreen { get; init; }
    /// <summary>Runs the model once on a throwaway session before the first frame (<see cref="SessionModes.WarmUp"/>); off, the first frame pays the model's one-time costs.</summary>
    public bool WarmUp { get; init; } = true;

    public void Validate()
    {
        if (Stride < 1 || Stride > 10_000) throw new UserError($"--stride must be 1..10000, got {Stride}");
        if (MaxFrames < 0) throw new UserError($"--max-frames must be ≥ 0, got {MaxFrames}");
        if (StartFrame < 0) throw new UserError($"start frame must be ≥ 0, got {StartFrame}");
        Driver.Validate();
    }

    /// <summary>The frame budget a model needs to keep up with a source: one stride of its frames.</summary>
    public static double DefaultBudgetMs(double sourceFps, int stride) => 1000.0 * stride / (sourceFps is > 0 and < 1000 ? sourceFps : 30);
}

/// <summary>One segment of a file: a caption (or an answer) written at <see cref="KeyFrame"/>, shown until <see cref="EndFrame"/> (exclusive).</summary>
public sealed record CaptionSegment(long KeyFrame, long EndFrame, TimeSpan Start, TimeSpan End, StreamSegment Written, double LatencyMs);

/// <summary>What a run of the loop did.</summary>
/// <param name="Unasked">Questions scheduled with --ask for times the stream never reached.</param>
public sealed record FrameLoopResult(long FramesRendered, int Captions, bool Cancelled, TimeSpan Elapsed, StreamStats Stats, IReadOnlyList<(TimeSpan At, string Question)> Unasked);

/// <summary>
/// The frame loop: capture on its own thread, inference on its own, the caller's thread renders
/// (live, file) or just waits (headless). Inference runs every frame it takes through one
/// <see cref="StreamingDriver"/> over one <see cref="ICaptionSession"/> (gate → governor → read →
/// write policy → questions), so every command captions the same way; only the pacing differs.
/// The model knows no frame loop, and capture knows no model.
/// </summary>
public sealed class FrameLoop : IDisposable
{
    readonly IFrameSource _source;
    readonly ICaptionSession _session;
    readonly FrameLoopOptions _o;
    readonly ILogger? _logger;
    readonly StreamingDriver _driver;
    readonly CancellationTokenSource _stop = new();
    readonly LatestFrameSlot _inferenceSlot = new(), _displaySlot = new();
    readonly System.Collections.Concurrent.ConcurrentQueue<string> _typed = new();
    readonly List<(TimeSpan At, string Question)> _scheduled;
    CaptureThread? _capture;
    Thread? _inference;
    FrameQueue? _modelQueue;
    volatile Exception? _inferenceError;
    long _captions, _lastRead = long.MinValue, _lastReadAt;
    int _nextQuestion;
    bool _inferenceDone;
    // File pacing: segments written, in order, for the render thread; the last model frame handled.
    readonly Queue<(StreamSegment Segment, double LatencyMs)> _written = new();
    long _handledUpTo = long.MinValue;

    public Profiler Profiler { get; }
    public CaptionBoard Board { get; } = new();
    /// <summary>What the model's warm-up before the first frame took, in ms (0: none ran; the engine was already warm, or it was off).</summary>
    public double WarmUpMs { get; }
    public StreamingDriver Driver => _driver;
    public ICaptionSession Session => _session;
    public IFrameSource Source => _source;
    public FrameLoopOptions Options => _o;
    /// <summary>The frame budget in force (null: no governor).</summary>
    public double? BudgetMs => _o.Driver.FrameBudgetMs;

    /// <summary>From the inference thread: a write starts at this frame (its question, or null for a caption).</summary>
    public Action<long, TimeSpan, string?>? WriteStarted { get; init; }
    /// <summary>From the inference thread: a text delta of the write in progress.</summary>
    public Action<string>? Delta { get; init; }
    /// <summary>From the inference thread: a write finished (its segment and glass-to-caption ms).</summary>
    public Action<StreamSegment, double>? Written { get; init; }

    /// <summary>Live: frames the model never saw because a newer one replaced them.</summary>
    public long DroppedForInference => _inferenceSlot.Dropped;
    /// <summary>Live: frames the render thread never showed.</summary>
    public long DroppedForDisplay => _displaySlot.Dropped;
    public long FramesCaptured => _capture?.FramesCaptured ?? 0;
    public long Captions => Interlocked.Read(ref _captions);
    public bool Ended => (_capture?.EndOfStream ?? false) && !_displaySlot.HasFrame;
    public bool InferenceStopped => _inference is { IsAlive: false };
    /// <summary>The capture thread is not running (never started, or ended).</summary>
    public bool CaptureStopped => _capture is not { IsRunning: true };
    public Exception? InferenceError => _inferenceError;
    /// <summary>Fires when the loop is told to stop: a session whose calls wait (a model shared by several loops) stops waiting then.</summary>
    public CancellationToken Stopping => _stop.Token;
    public Exception? CaptureError => _capture?.Error;
    public string SourceStatus => _capture?.Status ?? _source.Status;

    public FrameLoop(IFrameSource source, ICaptionSession session, Profiler profiler, FrameLoopOptions options, ILogger? logger = null)
    {
        options.Validate();
        _source = source;
        _session = session;
        _o = options;
        _logger = logger;
        Profiler = profiler;
        _driver = new StreamingDriver(session, options.Driver);
        _driver.Start();
        // After Start: the copy reads at the pruning the first frame will (the governor's schedule).
        if (options.WarmUp)
        {
            WarmUpMs = session.WarmUp();
            if (WarmUpMs > 0) logger?.LogDebug("warm-up: one synthetic frame read and a short caption written in {Ms:F0} ms", WarmUpMs);
        }
        _scheduled = options.Questions.OrderBy(q => q.At).ToList();
    }

    /// <summary>Asks a question (live); the answer streams into the caption area and the stream goes on.</summary>
    public void Ask(string question)
    {
        if (!string.IsNullOrWhiteSpace(question)) _typed.Enqueue(question.Trim());
    }

    List<(TimeSpan At, string Question)> Unasked() => _scheduled.Skip(_nextQuestion).ToList();

    /// <summary>
    /// Whether the model reads <paramref name="f"/>, on the capture thread (headless and file
    /// pacing): a file's every stride-th frame from the start (and, resuming, the window's frames
    /// before it, for context). A live source drops the frames its reader was too slow for, so its
    /// indices skip and a multiple of the stride may never come: from it the model takes the first
    /// frame a stride or more after the last one it took, as live pacing does.
    /// </summary>
    bool ForModel(Frame f)
    {
        if (!_source.IsLive) return IsModelFrame(f.Index) && (f.Index >= _o.StartFrame || IsContext(f.Index));
        if (f.Index < _o.StartFrame || (_lastTaken != long.MinValue && f.Index < _lastTaken + _o.Stride && f.Index >= _lastTaken)) return false;
        _lastTaken = f.Index;
        return true;
    }
    long _lastTaken = long.MinValue;

    bool IsModelFrame(long index) => ((index - _o.StartFrame) % _o.Stride + _o.Stride) % _o.Stride == 0;
    long LastModelFrameAtOrBefore(long index) => index - ((index - _o.StartFrame) % _o.Stride + _o.Stride) % _o.Stride;
    /// <summary>Resume: the window's frames just before the start are read for context, without writes.</summary>
    bool IsContext(long index) => index < _o.StartFrame && index >= _o.StartFrame - (long)_session.Options.WindowFrames * _o.Stride;

    // ---- live ----

    /// <summary>Live pacing: starts capture and inference. The caller renders from <see cref="TryTakeDisplayFrame"/> and <see cref="Board"/>.</summary>
    public void Start()
    {
        if (_o.Pacing != Pacing.Live) throw new InvalidOperationException("Start is for live pacing; file and headless pacing run with RunFile / RunHeadless");
        _capture = new CaptureThread(_source, new TeeSink(_inferenceSlot, _displaySlot), Profiler, _logger);
        _capture.Start();
        _inference = new Thread(RunLive) { IsBackground = true, Name = "inference" };
        _inference.Start();
    }

    /// <summary>The newest frame not shown yet, if any. The caller owns (and disposes) it.</summary>
    public bool TryTakeDisplayFrame(out Frame? frame) => _displaySlot.TryTake(out frame);

    void RunLive()
    {
        var ct = _stop.Token;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                // An answer stays up a few seconds before captions take the area back.
                while (Board.HoldingAnswer && _typed.IsEmpty && !ct.IsCancellationRequested) Thread.Sleep(20);
                using var frame = _inferenceSlot.Take(ct);
                if (frame is null) break;
                // At most one read per stride of source frames: the newest frame once that many have passed.
                if (_lastRead != long.MinValue && frame.Index < _lastRead + _o.Stride && frame.Index >= _lastRead) continue;
                // The governor's periods are budgets of the clock's time since the last frame taken: it
                // pays back the time reads ran over, while the slot dropped what came meanwhile; so
                // live pacing never skips a frame the model is free to read.
                long now = Stopwatch.GetTimestamp();
                double periods = _lastReadAt == 0 || BudgetMs is not double budget ? 1 : Stopwatch.GetElapsedTime(_lastReadAt, now).TotalMilliseconds / budget;
                (_lastRead, _lastReadAt) = (frame.Index, now);
                while (_typed.TryDequeue(out var q)) _driver.Ask(q);
                Step(frame, periods, live: true);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e)
        {
            _inferenceError = e;
            _logger?.LogError(e, "inference failed");
        }
        finally { _inferenceDone = true; }
    }

    /// <summary>One frame through the driver, with the board and the profiler kept up to date.</summary>
    void Step(Frame frame, double periods, bool live)
    {
        while (_nextQuestion < _scheduled.Count && _scheduled[_nextQuestion].At <= frame.Timestamp) _driver.Ask(_scheduled[_nextQuestion++].Question);
        var t0 = Stopwatch.GetTimestamp();
        long readsBefore = _driver.Stats.Read;
        var segments = _driver.Push(frame.Image, frame.Index, frame.Timestamp,
            onStart: q =>
            {
                t0 = Stopwatch.GetTimestamp();
                Board.Begin(frame.Index, frame.Timestamp, frame.CapturedAt, q);
                WriteStarted?.Invoke(frame.Index, frame.Timestamp, q);
            },
            onDelta: d =>
            {
                Board.Append(d);
                Profiler.Count(CaptionStages.CaptionWords);
                Delta?.Invoke(d);
            },
            periods: periods);
        if (segments.Count == 0 && _driver.Stats.Read > readsBefore) CaptionStages.RecordRead(Profiler, _session.Last);
        foreach (var s in segments)
        {
            Board.Complete(s.Text, s.Report);
            CaptionStages.RecordWrite(Profiler, s.Report, s.Ms);
            var latency = Profiler.RecordLatency(frame.CapturedAt, _o.CaptionsOnScreen ? Profiler.CaptionReady : Profiler.GlassToCaption);
            Interlocked.Increment(ref _captions);
            Written?.Invoke(s, latency);
            if (!live) lock (_written) _written.Enqueue((s, latency));
        }
    }

    // ---- file and headless ----

    /// <summary>
    /// Headless pacing: every stride-th frame through the model, in order, until the source ends,
    /// <see cref="FrameLoopOptions.MaxFrames"/> or cancellation. Segments arrive through <see cref="Written"/>.
    /// </summary>
    public FrameLoopResult RunHeadless(CancellationToken ct)
    {
        if (_o.Pacing != Pacing.Headless) throw new InvalidOperationException("RunHeadless is for headless pacing");
        var sw = Stopwatch.StartNew();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        using var queue = new FrameQueue(4, linked.Token);
        _modelQueue = queue;
        _capture = new CaptureThread(Limited(_source), new FilterSink(queue, ForModel), Profiler, _logger);
        _capture.Start();
        try { ConsumeModelFrames(queue, linked.Token); }
        catch (OperationCanceledException) when (linked.IsCancellationRequested) { }
        finally { _capture.Stop(); }
        Rethrow(ct);
        return new FrameLoopResult(0, (int)Captions, ct.IsCancellationRequested, sw.Elapsed, _driver.Stats, Unasked());
    }

    /// <summary>The source, stopped after <see cref="FrameLoopOptions.MaxFrames"/> frames when set.</summary>
    IFrameSource Limited(IFrameSource s) => _o.MaxFrames > 0 ? new CountedSource(s, _o.MaxFrames) : s;

    void ConsumeModelFrames(FrameQueue queue, CancellationToken ct)
    {
        try
        {
            while (queue.Take(ct) is { } frame)
                using (frame)
                {
                    if (frame.Index < _o.StartFrame) ReadForContext(frame);
                    else Step(frame, 1, live: false);
                    lock (_written) { _handledUpTo = frame.Index; Monitor.PulseAll(_written); }
                }
        }
        finally
        {
            lock (_written) { _inferenceDone = true; Monitor.PulseAll(_written); }
        }
    }

    void ReadForContext(Frame frame) => _session.Read(frame.Image);

    /// <summary>
    /// File pacing, on the caller's thread: every frame is rendered in order with the caption of
    /// its segment (waiting for the model when it is behind: that is what "model speed" means),
    /// and each segment is handed to <paramref name="segmentDone"/> once its last frame is out.
    /// </summary>
    /// <param name="stopped">On the render thread once the last frame and segment are out, before the worker threads
    /// are joined (a caption in flight may take a while to notice the cancellation): finish the outputs here.</param>
    public FrameLoopResult RunFile(Action<Frame, CaptionView> present, Action<CaptionSegment> segmentDone, Action<long>? progress, CancellationToken ct,
        Action? stopped = null)
    {
        if (_o.Pacing != Pacing.File) throw new InvalidOperationException("RunFile is for file pacing");
        var sw = Stopwatch.StartNew();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        var token = linked.Token;
        int ahead = _o.ReadAhead > 0 ? _o.ReadAhead : Math.Clamp(2 * _o.Stride + 4, 8, 64);
        using var render = new FrameQueue(ahead, token);
        using var model = new FrameQueue(ahead, token);
        _modelQueue = model;
        _capture = new CaptureThread(Limited(_source), new TeeSink(new FilterSink(render, f => f.Index >= _o.StartFrame), model,
            ForModel), Profiler, _logger);
        _inference = new Thread(() =>
        {
            try { ConsumeModelFrames(model, token); }
            catch (OperationCanceledException) when (token.IsCancellationRequested) { }
            catch (Exception e) { _inferenceError = e; linked.Cancel(); }
        }) { IsBackground = true, Name = "inference" };
        _capture.Start();
        _inference.Start();

        long rendered = 0;
        int captions = 0;
        (StreamSegment Seg, long Key, TimeSpan Start, double Latency)? open = null;
        (long Index, TimeSpan Time)? last = null;
        using var wake = token.Register(() => { lock (_written) Monitor.PulseAll(_written); });
        try
        {
            while (render.Take(token) is { } frame)
                using (frame)
                {
                    // The caption shown at a frame is the last one written at a model frame at or before it.
                    foreach (var (seg, latency) in WaitForSegments(LastModelFrameAtOrBefore(frame.Index), token))
                    {
                        if (open is { } o)
                        {
                            segmentDone(new CaptionSegment(o.Key, seg.FrameIndex, o.Start, seg.At, o.Seg, o.Latency));
                            captions++;
                        }
                        open = (seg, seg.FrameIndex, seg.At, latency);
                    }
                    var view = open is { } s ? ViewOf(s.Seg, s.Key, s.Start, captions) : CaptionView.Empty;
                    using (Profiler.Time(Profiler.Render)) present(frame, view);
                    rendered++;
                    progress?.Invoke(rendered);
                    last = (frame.Index, frame.Timestamp);
                }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested) { }
        finally
        {
            linked.Cancel();
            // The open segment ends after the last frame written: outputs stay consistent when interrupted.
            // Written before the joins: on Ctrl+C the process may have only a couple of seconds left.
            if (open is { } o && last is { } l)
            {
                var end = l.Time + TimeSpan.FromSeconds(1 / Math.Max(1e-3, _source.Fps));
                segmentDone(new CaptionSegment(o.Key, l.Index + 1, o.Start, end, o.Seg, o.Latency));
                captions++;
            }
            stopped?.Invoke();
            // A capture thread stuck in a read (a pipe whose writer went quiet) is not waited for long:
            // the outputs are already finished, and Ctrl+C should end the run in seconds.
            _capture.Stop();
            _inference.Join(TimeSpan.FromSeconds(30));
        }
        Rethrow(ct);
        return new FrameLoopResult(rendered, captions, ct.IsCancellationRequested, sw.Elapsed, _driver.Stats, Unasked());
    }

    /// <summary>Waits until the model has handled every model frame up to <paramref name="upTo"/>, then takes the segments written so far.</summary>
    List<(StreamSegment, double)> WaitForSegments(long upTo, CancellationToken ct)
    {
        lock (_written)
        {
            while (_handledUpTo < upTo && !_inferenceDone)
            {
                ct.ThrowIfCancellationRequested();
                Monitor.Wait(_written, 200);
            }
            var ready = new List<(StreamSegment, double)>();
            while (_written.Count > 0 && _written.Peek().Segment.FrameIndex <= upTo) ready.Add(_written.Dequeue());
            return ready;
        }
    }

    /// <summary>A failure on another thread is the run's failure, unless the user interrupted first.</summary>
    void Rethrow(CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return;
        if (_inferenceError is { } ie) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ie);
        if (_capture?.Error is { } ce) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ce);
    }

    static CaptionView ViewOf(StreamSegment s, long key, TimeSpan start, int completed) =>
        new(s.Question is { } q ? $"Q: {q}  A: {s.Text}" : s.Text, key + 1, completed + 1, false, key, start, 0,
            s.Report.KeptGrid, s.Report.GridW, s.Report.GridH, s.Report.KeptTokens, s.Report.VisualTokens, s.Question);

    /// <summary>Stops both threads and waits for them (a write in flight is cancelled between tokens).</summary>
    public void Stop()
    {
        _stop.Cancel();
        _capture?.Stop();
        _inference?.Join(TimeSpan.FromSeconds(10));
    }

    public void Dispose()
    {
        Stop();
        _capture?.Dispose();
        _source.Dispose();
        _inferenceSlot.Dispose();
        _displaySlot.Dispose();
        _driver.Dispose();
        _stop.Dispose();
    }

    /// <summary>Passes on the frames <paramref name="keep"/> accepts and disposes the rest.</summary>
    sealed class FilterSink(IFrameSink inner, Func<Frame, bool> keep) : IFrameSink
    {
        public void Publish(Frame frame)
        {
            if (keep(frame)) inner.Publish(frame);
            else frame.Dispose();
        }
        public void Complete() => inner.Complete();
    }

    /// <summary>A source that ends after a number of frames.</summary>
    sealed class CountedSource(IFrameSource inner, long max) : IFrameSource
    {
        long _read;
        public string Description => inner.Description;
        public double Fps => inner.Fps;
        public bool IsLive => inner.IsLive;
        public long? FrameCount => inner.FrameCount is { } n ? Math.Min(n, max) : max;
        public string Status => inner.Status;
        public Frame? Read(CancellationToken ct = default) => _read++ >= max ? null : inner.Read(ct);
        public void Dispose() { } // the loop disposes the real source
    }
}
