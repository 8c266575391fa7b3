using System.Diagnostics;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// The last N samples of one stage, each with the time it was recorded. Writers take a lock for a
/// few stores only; sorting for percentiles happens on a copy, in <see cref="Stats"/>.
/// </summary>
internal sealed class StageWindow(string name, int capacity)
{
    readonly double[] values = new double[capacity];
    readonly long[] times = new long[capacity];
    long count;      // all samples ever recorded
    double last;

    public string Name => name;

    public void Add(double ms, long timestamp)
    {
        lock (values)
        {
            var i = (int)(count % values.Length);
            values[i] = ms;
            times[i] = timestamp;
            last = ms;
            count++;
        }
    }

    public StageStats Stats()
    {
        double[] copy;
        long total;
        double latest;
        lock (values)
        {
            total = count;
            latest = last;
            copy = values[..(int)Math.Min(count, values.Length)];
        }
        if (copy.Length == 0) return new StageStats(name, 0, 0, 0, 0, 0, 0, 0, 0);
        Array.Sort(copy);
        return new StageStats(name, total, copy.Length, latest, copy.Average(),
            Percentile.OfSorted(copy, 0.50), Percentile.OfSorted(copy, 0.95), Percentile.OfSorted(copy, 0.99), copy[^1]);
    }

    /// <summary>Samples oldest first, as (seconds since <paramref name="origin"/>, ms).</summary>
    public IReadOnlyList<(double Seconds, double Ms)> Series(long origin)
    {
        lock (values)
        {
            var n = (int)Math.Min(count, values.Length);
            var series = new (double, double)[n];
            for (int k = 0; k < n; k++)
            {
                var i = (int)((count - n + k) % values.Length);
                series[k] = ((double)(times[i] - origin) / Stopwatch.Frequency, values[i]);
            }
            return series;
        }
    }

}
