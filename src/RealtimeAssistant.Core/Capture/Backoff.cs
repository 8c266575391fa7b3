namespace RealtimeAssistant.Capture;

/// <summary>Exponential backoff for reconnects: initial, 2×, 4×, … capped at max.</summary>
public sealed class Backoff(TimeSpan initial, TimeSpan max)
{
    readonly TimeSpan first = initial;
    TimeSpan next = initial;

    /// <summary>Attempts made since the last success.</summary>
    public int Attempt { get; private set; }

    /// <summary>The wait before the next attempt (and counts the attempt).</summary>
    public TimeSpan Next()
    {
        var wait = next;
        next = TimeSpan.FromTicks(Math.Min(next.Ticks * 2, max.Ticks));
        Attempt++;
        return wait;
    }

    public void Reset()
    {
        next = first;
        Attempt = 0;
    }
}
