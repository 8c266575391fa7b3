using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Cli.App;

/// <summary>
/// Turns the profiler into the HUD's numbers. Rebuilt a few times a second, not every frame
/// (a snapshot sorts every stage's window), plus a ring of recent whole-frame times for the graph.
/// </summary>
public sealed class HudFeed(Profiler profiler, double budgetMs)
{
    readonly double[] frameTimes = new double[120];
    int frameCount;
    HudStats? cached;
    long cachedAt;

    public void AddFrameTime(double ms)
    {
        frameTimes[frameCount % frameTimes.Length] = ms;
        frameCount++;
    }

    /// <summary>The HUD's numbers, with the frame loop's: dropped and skipped frames, the frame budget, the governor's level.</summary>
    public HudStats Stats(double fps, FrameLoop loop, TimeSpan refresh) => Stats(fps, loop.DroppedForInference, refresh, loop);

    public HudStats Stats(double fps, long dropped, TimeSpan refresh, FrameLoop? loop = null)
    {
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        if (cached is not null && System.Diagnostics.Stopwatch.GetElapsedTime(cachedAt, now) < refresh) return cached;
        cachedAt = now;
        var snap = profiler.Snapshot();
        var stages = new Dictionary<string, (double, double)>();
        foreach (var name in HudStats.StageOrder)
            if (snap.Stage(name) is { } s) stages[name] = (s.Last, s.P50);
        var latency = snap.Stage(Profiler.GlassToCaption);
        var firstWord = snap.Stage(Profiler.GlassToFirstWord);
        int n = Math.Min(frameCount, frameTimes.Length);
        var recent = new double[n];
        var stream = loop?.Driver.Stats;
        for (int k = 0; k < n; k++) recent[k] = frameTimes[(frameCount - n + k) % frameTimes.Length];
        cached = new HudStats
        {
            Stages = stages,
            Fps = fps,
            CaptionHz = snap.Counter(Profiler.CaptionUpdates)?.PerSecond ?? 0,
            LatencyP50Ms = latency?.P50 ?? 0,
            LatencyP95Ms = latency?.P95 ?? 0,
            FirstWordP50Ms = firstWord?.P50 ?? 0,
            FirstWordP95Ms = firstWord?.P95 ?? 0,
            DroppedFrames = dropped,
            BudgetMs = budgetMs,
            FrameTimesMs = recent,
            Mode = loop?.Session.Mode,
            ReadBudgetMs = loop?.BudgetMs,
            ReadMs = snap.Stage(CaptionStages.Read)?.Last,
            Level = loop?.Session.Pruning is { } p ? Streaming.SessionBase.LevelName(p) : null,
            Budget = loop?.Session.Pruning?.Budget,
            SkippedFrames = stream?.BudgetSkipped ?? 0,
            SkipsFrames = loop is not null && loop.Options.Pacing != Pacing.Live,
            Reads = stream?.Read ?? 0,
            ReadsOverBudget = stream?.OverBudget ?? 0,
        };
        return cached;
    }
}
