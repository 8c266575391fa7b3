using System.Diagnostics;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// Counts events and their rate over the last few seconds ("caption updates per second"),
/// from a ring of recent event times.
/// </summary>
internal sealed class RateCounter(string name, int capacity = 4096)
{
    readonly long[] times = new long[capacity];
    long total;

    public string Name => name;

    public void Add(long n, long timestamp)
    {
        lock (times)
        {
            for (long k = 0; k < n; k++) times[(int)((total + k) % times.Length)] = timestamp;
            total += n;
        }
    }

    /// <summary>Events per second over the last <paramref name="window"/> (or since the first event, if sooner).</summary>
    public CounterStats Stats(long now, TimeSpan window, long origin)
    {
        lock (times)
        {
            var since = now - (long)(window.TotalSeconds * Stopwatch.Frequency);
            var held = (int)Math.Min(total, times.Length);
            int recent = 0;
            for (int k = 0; k < held; k++)
                if (times[k] >= since) recent++;
            // Over a window longer than the run so far, divide by the time the run has had.
            var span = Math.Min(window.TotalSeconds, (double)(now - origin) / Stopwatch.Frequency);
            return new CounterStats(name, total, span > 0 ? recent / span : 0);
        }
    }
}
