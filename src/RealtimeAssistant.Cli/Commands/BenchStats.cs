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
    public static (double Low, double High)? RatioInterval(IReadOnlyList<double> a, IReadOnlyList<double> b, double p, int resamples = 2000, int seed = 23) =>
        RatioInterval([a], [b], p, resamples, seed);

    /// <summary>
    /// The same for samples taken in turns (<paramref name="a"/>[t] is turn t's): each resample
    /// draws as many turns as were run, with replacement, then each drawn turn's samples with
    /// replacement (a two-stage bootstrap). Samples of one turn share what that turn had (in the app,
    /// the phase between the source's clock and the renderer's, which decides which render a ready
    /// caption waits for), so resampling them alone takes a turn's luck for the method's and gives
    /// too narrow an interval; with one turn a side it is the one-stage interval.
    /// </summary>
    public static (double Low, double High)? RatioInterval(IReadOnlyList<IReadOnlyList<double>> a, IReadOnlyList<IReadOnlyList<double>> b, double p, int resamples = 2000, int seed = 23)
    {
        var (ta, tb) = (a.Where(t => t.Count > 0).ToArray(), b.Where(t => t.Count > 0).ToArray());
        if (ta.Sum(t => t.Count) < 5 || tb.Sum(t => t.Count) < 5) return null;
        var rng = new Random(seed);
        var ratios = new double[resamples];
        var ra = new List<double>(ta.Sum(t => t.Count));
        var rb = new List<double>(tb.Sum(t => t.Count));
        for (int r = 0; r < resamples; r++)
        {
            Draw(ta, ra, rng);
            Draw(tb, rb, rng);
            ratios[r] = Percentile(ra, p) / Math.Max(1e-12, Percentile(rb, p));
        }
        return (Percentile(ratios, 0.025), Percentile(ratios, 0.975));
    }

    static void Draw(IReadOnlyList<double>[] turns, List<double> into, Random rng)
    {
        into.Clear();
        for (int k = 0; k < turns.Length; k++)
        {
            var turn = turns[rng.Next(turns.Length)];
            for (int i = 0; i < turn.Count; i++) into.Add(turn[rng.Next(turn.Count)]);
        }
    }
}
