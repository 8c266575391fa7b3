namespace RealtimeAssistant.Pipeline;

/// <summary>Timing of one stage over its rolling window, in milliseconds.</summary>
/// <param name="Count">Samples ever recorded.</param>
/// <param name="WindowCount">Samples the statistics below are taken over.</param>
public sealed record StageStats(string Name, long Count, int WindowCount, double Last, double Mean,
    double P50, double P95, double P99, double Max);

/// <summary>An event counter: total so far and recent rate per second.</summary>
public sealed record CounterStats(string Name, long Total, double PerSecond);

/// <summary>An immutable view of the profiler for the HUD and reports.</summary>
public sealed record ProfilerSnapshot(TimeSpan Uptime, IReadOnlyList<StageStats> Stages, IReadOnlyList<CounterStats> Counters)
{
    public StageStats? Stage(string name) => Stages.FirstOrDefault(s => s.Name == name);
    public CounterStats? Counter(string name) => Counters.FirstOrDefault(c => c.Name == name);

    /// <summary>One line per stage and counter, for logs and the console report.</summary>
    public override string ToString()
    {
        var lines = Stages.Select(s =>
            $"{s.Name,-18} n={s.Count,-7} last={s.Last,8:0.00} mean={s.Mean,8:0.00} p50={s.P50,8:0.00} p95={s.P95,8:0.00} p99={s.P99,8:0.00} ms")
            .Concat(Counters.Select(c => $"{c.Name,-18} total={c.Total,-7} rate={c.PerSecond,8:0.00}/s"));
        return string.Join(Environment.NewLine, lines);
    }
}
