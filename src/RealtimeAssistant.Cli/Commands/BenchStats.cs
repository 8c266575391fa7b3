namespace RealtimeAssistant.Cli.Commands;

/// <summary>Statistics the benchmarks share.</summary>
public static class BenchStats
{
    /// <summary>The nearest-rank percentile (<paramref name="p"/> in [0, 1]) of <paramref name="values"/>, in any order; NaN when there are none.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        var s = values.Order().ToArray();
        return s.Length == 0 ? double.NaN : s[Math.Clamp((int)Math.Ceiling(p * s.Length) - 1, 0, s.Length - 1)];
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
}
