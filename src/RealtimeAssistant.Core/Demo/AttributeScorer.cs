namespace RealtimeAssistant.Demo;

/// <summary>
/// Scores a predicted caption by the facts it states (objects, positions, motions, events)
/// against a scene graph or a reference caption. Facts match as multisets.
/// </summary>
public static class AttributeScorer
{
    /// <param name="withMotion">False for single still images: motion facts are dropped on both sides.</param>
    public static FactScore Score(string? predicted, Scene scene, bool withMotion = true) =>
        Match(Filter(CaptionParser.Facts(predicted), withMotion), Facts(scene, withMotion));

    public static FactScore Score(string? predicted, string reference) =>
        Match(CaptionParser.Facts(predicted), CaptionParser.Facts(reference));

    /// <summary>
    /// Per-attribute scoring: objects are matched by the grid cell they are said to be in (a cell
    /// holds at most one object), and each attribute is its own fact: something at the cell, its
    /// colour, its shape, its motion. A caption with the right colour and place but the wrong
    /// shape earns partial credit, where <see cref="Score(string?, string)"/> counts the object wrong.
    /// </summary>
    public static FactScore ScoreByAttribute(string? predicted, string reference) =>
        Match(ByAttribute(CaptionParser.Facts(predicted)), ByAttribute(CaptionParser.Facts(reference)));

    /// <summary><see cref="ScoreByAttribute"/> split by attribute: "at", "colour", "shape" and "motion".</summary>
    public static Dictionary<string, FactScore> ScoreEachAttribute(string? predicted, string reference)
    {
        var p = ByAttribute(CaptionParser.Facts(predicted));
        var r = ByAttribute(CaptionParser.Facts(reference));
        return Kinds.ToDictionary(k => k, k => Match(p.Where(f => f.StartsWith(k + ":")).ToList(), r.Where(f => f.StartsWith(k + ":")).ToList()));
    }

    public static readonly string[] Kinds = ["at", "colour", "shape", "motion"];

    static List<string> ByAttribute(List<string> facts)
    {
        var cellOf = new Dictionary<string, string>();
        var result = new List<string>();
        foreach (var f in facts.Where(f => f.StartsWith("pos:")))
        {
            var (name, cell) = Split(f[4..]);
            if (!cellOf.TryAdd(name, cell)) continue;
            var words = name.Split(' ');
            result.Add($"at:{cell}");
            result.Add($"colour:{cell}={words[0]}");
            if (words.Length > 1) result.Add($"shape:{cell}={words[^1]}");
        }
        foreach (var f in facts.Where(f => f.StartsWith("motion:")))
        {
            var (name, motion) = Split(f[7..]);
            if (cellOf.TryGetValue(name, out var cell)) result.Add($"motion:{cell}={motion}");
        }
        return result;
    }

    static (string, string) Split(string f)
    {
        int eq = f.IndexOf('=');
        return eq < 0 ? (f, "") : (f[..eq], f[(eq + 1)..]);
    }

    /// <summary>Scores against a clip segment: the scene at its end plus its events.</summary>
    public static FactScore Score(string? predicted, Scene scene, IEnumerable<ClipEvent> events) =>
        Match(CaptionParser.Facts(predicted), Facts(scene, true).Concat(events.Select(EventFact)).ToList());

    public static List<string> Facts(Scene scene, bool withMotion = true)
    {
        var facts = new List<string>();
        foreach (var o in scene.Objects)
        {
            facts.Add("obj:" + o.Name);
            facts.Add($"pos:{o.Name}={o.Position}");
            if (withMotion) facts.Add($"motion:{o.Name}={o.Motion.Word()}");
        }
        return facts;
    }

    public static string EventFact(ClipEvent e) => e.Kind switch
    {
        ClipEventKind.Enters => $"event:{e.Object.Name}=enters",
        ClipEventKind.Leaves => $"event:{e.Object.Name}=leaves",
        _ => $"event:{e.Object.Name}={e.Object.Motion.Word()}",
    };

    private static List<string> Filter(List<string> facts, bool withMotion) =>
        withMotion ? facts : facts.Where(f => !f.StartsWith("motion:")).ToList();

    private static FactScore Match(IReadOnlyList<string> predicted, IReadOnlyList<string> expected)
    {
        var left = expected.GroupBy(f => f).ToDictionary(g => g.Key, g => g.Count());
        int tp = 0, fp = 0;
        foreach (var f in predicted)
        {
            if (left.TryGetValue(f, out int n) && n > 0) { left[f] = n - 1; tp++; }
            else fp++;
        }
        return new FactScore(tp, fp, expected.Count - tp);
    }
}
