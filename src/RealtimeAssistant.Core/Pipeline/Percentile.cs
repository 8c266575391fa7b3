namespace RealtimeAssistant.Pipeline;

/// <summary>
/// The one percentile every report uses: the nearest rank, a value that was measured. The HUD,
/// `ra profile`'s table and report.json and the benches then agree on the same samples.
/// </summary>
public static class Percentile
{
    /// <summary>The nearest-rank <paramref name="p"/> (in [0, 1]) of ascending <paramref name="sorted"/>; 0 when empty.</summary>
    public static double OfSorted(IReadOnlyList<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];
}
