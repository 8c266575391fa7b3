using System.Collections.Concurrent;
using System.Diagnostics;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// One profiler for every stage of the pipeline (after osu-framework's PerformanceMonitor):
/// each stage keeps a rolling window of its last samples (last, mean, p50, p95, p99), counters
/// keep totals and recent rates, and any stage can be read back as a time series (the
/// glass-to-caption latency plot). Thread-safe; recording is one dictionary lookup and a short lock.
/// </summary>
public sealed class Profiler(int window = 512, TimeSpan? rateWindow = null)
{
    public const string Capture = "capture";
    public const string Preprocess = "preprocess";
    public const string Vision = "vision";
    public const string Prefill = "prefill";
    public const string Decode = "decode";
    public const string Render = "render";
    /// <summary>From the frame leaving the source to its caption being shown.</summary>
    public const string GlassToCaption = "glass_to_caption";
    /// <summary>
    /// From the frame leaving the source to its caption finished in the model, where a renderer
    /// then shows it (and times <see cref="GlassToCaption"/> itself when the caption is on screen).
    /// </summary>
    public const string CaptionReady = "caption_ready";
    /// <summary>From a frame's capture to the first word of its caption on screen (captions stream in word by word).</summary>
    public const string GlassToFirstWord = "glass_to_first_word";
    public const string FramesCaptured = "frames_captured";
    public const string CaptionUpdates = "caption_updates";

    readonly ConcurrentDictionary<string, StageWindow> stages = new();
    readonly ConcurrentDictionary<string, RateCounter> counters = new();
    readonly ConcurrentQueue<string> stageOrder = new();   // first-seen order, so reports read like the pipeline
    readonly ConcurrentQueue<string> counterOrder = new();
    readonly long origin = Stopwatch.GetTimestamp();
    readonly TimeSpan rates = rateWindow ?? TimeSpan.FromSeconds(5);

    /// <summary>Times a block: <c>using (profiler.Time("vision")) { ... }</c>.</summary>
    public ProfilerScope Time(string stage) => new(this, stage);

    public void Record(string stage, double ms) => Stage(stage).Add(ms, Stopwatch.GetTimestamp());

    public void Record(string stage, TimeSpan elapsed) => Record(stage, elapsed.TotalMilliseconds);

    /// <summary>Records glass-to-caption latency for a frame captured at <paramref name="capturedAt"/> (Stopwatch ticks).</summary>
    public double RecordLatency(long capturedAt, string stage = GlassToCaption)
    {
        var ms = Stopwatch.GetElapsedTime(capturedAt).TotalMilliseconds;
        Record(stage, ms);
        return ms;
    }

    /// <summary>Counts events, e.g. <c>Count(Profiler.CaptionUpdates)</c>.</summary>
    public void Count(string counter, long n = 1)
    {
        var c = counters.GetOrAdd(counter, static (name, q) => { q.Enqueue(name); return new RateCounter(name); }, counterOrder);
        c.Add(n, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// Forgets every sample and count so far (a warm-up's): what is recorded from now on is the
    /// whole record. Series keep their clock (seconds since the profiler was made).
    /// </summary>
    public void Restart()
    {
        // The orders first: a stage a recorder adds meanwhile keeps its name in the order (twice at
        // worst; the snapshot takes each name once), never a stage with no name to report it by.
        stageOrder.Clear();
        counterOrder.Clear();
        stages.Clear();
        counters.Clear();
    }

    /// <summary>A stage's window as (seconds since the profiler started, ms), oldest first.</summary>
    public IReadOnlyList<(double Seconds, double Ms)> Series(string stage) =>
        stages.TryGetValue(stage, out var w) ? w.Series(origin) : [];

    public ProfilerSnapshot Snapshot()
    {
        var now = Stopwatch.GetTimestamp();
        // A name is queued just before its entry is added: one being added right now is skipped this time.
        var stageStats = stageOrder.Distinct().Select(n => stages.GetValueOrDefault(n)).OfType<StageWindow>()
            .Select(w => w.Stats()).ToArray();
        var counterStats = counterOrder.Distinct().Select(n => counters.GetValueOrDefault(n)).OfType<RateCounter>()
            .Select(c => c.Stats(now, rates, origin)).ToArray();
        return new ProfilerSnapshot(Stopwatch.GetElapsedTime(origin, now), stageStats, counterStats);
    }

    StageWindow Stage(string name) =>
        stages.GetOrAdd(name, static (n, self) => { self.stageOrder.Enqueue(n); return new StageWindow(n, self.windowSize); }, this);

    readonly int windowSize = window > 0 ? window : throw new ArgumentOutOfRangeException(nameof(window));
}
