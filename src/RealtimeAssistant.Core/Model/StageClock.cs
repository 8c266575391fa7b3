using System.Diagnostics;

namespace RealtimeAssistant.Model;

/// <summary>
/// Time spent per named stage, summed over calls, in the order stages were first seen: where a
/// fused decode step's milliseconds go (`ra bench engine --profile`). A stage's time is the
/// clock since the previous lap, so the stages of one pass add up to the pass.
/// </summary>
public sealed class StageClock
{
    readonly Dictionary<string, long> _ticks = new();
    readonly List<string> _order = new();

    /// <summary>The current timestamp, to start a pass's first stage from.</summary>
    public static long Now => Stopwatch.GetTimestamp();

    /// <summary>Charges the time since <paramref name="since"/> to <paramref name="stage"/>, and moves <paramref name="since"/> to now.</summary>
    public void Lap(string stage, ref long since)
    {
        long now = Stopwatch.GetTimestamp();
        if (!_ticks.TryGetValue(stage, out var t)) _order.Add(stage);
        _ticks[stage] = t + (now - since);
        since = now;
    }

    /// <summary>Passes timed (each <see cref="Pass"/> call).</summary>
    public int Passes { get; private set; }

    public void Pass() => Passes++;

    /// <summary>Each stage's total milliseconds, in first-seen order.</summary>
    public IReadOnlyList<(string Stage, double Ms)> Stages =>
        _order.Select(s => (s, _ticks[s] * 1000.0 / Stopwatch.Frequency)).ToList();
}
