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
