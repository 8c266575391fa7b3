using System.Diagnostics;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// <c>using (profiler.Time("vision")) { ... }</c>: records the elapsed time when disposed.
/// A struct, so timing a stage allocates nothing.
/// </summary>
public readonly struct ProfilerScope(Profiler? profiler, string stage) : IDisposable
{
    readonly long start = Stopwatch.GetTimestamp();

    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(start);

    public void Dispose() => profiler?.Record(stage, Stopwatch.GetElapsedTime(start).TotalMilliseconds);
}
