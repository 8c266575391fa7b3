namespace RealtimeAssistant.Cli.Commands;

/// <summary>Statistics the benchmarks share.</summary>
public static class BenchStats
{
    /// <summary>The nearest-rank percentile (<paramref name="p"/> in [0, 1]) of <paramref name="values"/>, in any order; NaN when there are none.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        var s = values.Order().ToArray();
        return s.Length == 0 ? double.NaN : RealtimeAssistant.Pipeline.Percentile.OfSorted(s, p);
    }

    /// <summary>
    /// The standard error of mean(a − b) over paired samples (the same scenes or clips for both
    /// sides): how far a quality gap could move by chance. NaN with fewer than two pairs.
    /// </summary>
    public static double PairedSe(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} against {b.Count} samples: not paired");
        if (a.Count < 2) return double.NaN;
        var d = a.Zip(b, (x, y) => x - y).ToArray();
        double mean = d.Average();
        return Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / (d.Length - 1) / d.Length);
    }

    /// <summary>
    /// A 95% bootstrap interval of percentile(<paramref name="a"/>, p) / percentile(<paramref name="b"/>, p):
    /// each side resampled with replacement on its own (they are independent samples, not pairs),
    /// <paramref name="resamples"/> times from a fixed seed. How far a ratio of two tails measured on
    /// a few dozen captions could move by chance; null when either side has fewer than 5 samples.
    /// </summary>
    public static (double Low, double High)? RatioInterval(IReadOnlyList<double> a, IReadOnlyList<double> b, double p, int resamples = 2000, int seed = 23)
    {
        if (a.Count < 5 || b.Count < 5) return null;
        var rng = new Random(seed);
        var ratios = new double[resamples];
        var ra = new double[a.Count];
        var rb = new double[b.Count];
        for (int r = 0; r < resamples; r++)
        {
            for (int i = 0; i < ra.Length; i++) ra[i] = a[rng.Next(a.Count)];
            for (int i = 0; i < rb.Length; i++) rb[i] = b[rng.Next(b.Count)];
            ratios[r] = Percentile(ra, p) / Math.Max(1e-12, Percentile(rb, p));
        }
        return (Percentile(ratios, 0.025), Percentile(ratios, 0.975));
    }
}
