namespace RealtimeAssistant.Demo;

/// <summary>
/// Fact counts for micro precision/recall/F1. Sum scores across scenes with + before reading the
/// ratios, so the aggregate is micro-averaged. With nothing predicted and nothing expected, all are 1.
/// </summary>
public readonly record struct FactScore(int TruePositives, int FalsePositives, int FalseNegatives)
{
    public double Precision => Ratio(TruePositives, TruePositives + FalsePositives);
    public double Recall => Ratio(TruePositives, TruePositives + FalseNegatives);

    public double F1 => Precision + Recall == 0 ? 0 : 2 * Precision * Recall / (Precision + Recall);

    /// <summary>The pooled counts of many scores (micro-averaged: F1 of the total, not a mean of F1s).</summary>
    public static FactScore Total(IEnumerable<FactScore> scores) => scores.Aggregate(default(FactScore), (a, b) => a + b);

    public static FactScore operator +(FactScore a, FactScore b) => new(
        a.TruePositives + b.TruePositives, a.FalsePositives + b.FalsePositives, a.FalseNegatives + b.FalseNegatives);

    // An empty denominator is perfect only when the other side is empty too.
    private double Ratio(int tp, int all) =>
        all > 0 ? (double)tp / all : FalsePositives + FalseNegatives == 0 ? 1 : 0;

    public override string ToString() => $"P={Precision:F3} R={Recall:F3} F1={F1:F3} (tp={TruePositives} fp={FalsePositives} fn={FalseNegatives})";
}
