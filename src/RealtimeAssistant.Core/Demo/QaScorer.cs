namespace RealtimeAssistant.Demo;

/// <summary>Exact-match scoring of answers, after normalising case, spacing and a trailing " .".</summary>
public static class QaScorer
{
    public static bool Correct(string? predicted, string answer) => Normalise(predicted) == Normalise(answer);

    /// <summary>Fraction answered exactly; 0 for no pairs.</summary>
    public static double Accuracy(IEnumerable<(string? Predicted, string Answer)> pairs)
    {
        int n = 0, ok = 0;
        foreach (var (p, a) in pairs) { n++; if (Correct(p, a)) ok++; }
        return n == 0 ? 0 : (double)ok / n;
    }

    public static string Normalise(string? s)
    {
        var words = (s ?? "").ToLowerInvariant().Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).ToList();
        while (words.Count > 0 && words[^1] is "." or "?") words.RemoveAt(words.Count - 1);
        return string.Join(' ', words);
    }
}
