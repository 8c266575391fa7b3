namespace RealtimeAssistant.Demo;

/// <summary>
/// Captions from a scene graph. <see cref="Canonical"/> has one fixed form (reading order,
/// "at", "moving", "staying still"); <see cref="Caption"/> varies wording and order.
/// Output is lower-case words with " ." and " ," as separate tokens.
/// </summary>
public static class CaptionGrammar
{
    public const string Empty = "there is nothing .";

    /// <example>"a red circle at top left moving right and a blue square at bottom right staying still ."</example>
    public static string Canonical(Scene scene, bool withMotion = true)
    {
        var parts = scene.InReadingOrder().Select(o => Phrase(o, withMotion, null)).ToList();
        return parts.Count == 0 ? Empty : Join(parts, null) + " .";
    }

    public static string Caption(Scene scene, Random rng, bool withMotion = true)
    {
        var objects = rng.Next(2) == 0
            ? scene.InReadingOrder().ToList()
            : scene.Objects.OrderBy(_ => rng.Next()).ToList();
        if (objects.Count == 0) return Empty;
        string[] openings = ["", "there is ", "i see ", "i can see "];
        string opening = openings[rng.Next(openings.Length)];
        return opening + Join(objects.Select(o => Phrase(o, withMotion, rng)).ToList(), rng) + " .";
    }

    /// <summary>"a red circle at top left moving right" (canonical when rng is null).</summary>
    public static string Phrase(SceneObject o, bool withMotion, Random? rng)
    {
        string head = $"{o.Color.Article()} {o.Name}";
        string where = Where(o.Cell, rng);
        if (!withMotion) return $"{head} {where}";
        string how = MotionPhrase(o.Motion, rng);
        return rng != null && rng.Next(10) < 3 ? $"{head} {how} {where}" : $"{head} {where} {how}";
    }

    public static string Where(int cell, Random? rng)
    {
        string name = Grid.Name(cell);
        if (rng == null || rng.Next(2) == 0) return "at " + name;
        return "in the " + (name == "centre" && rng.Next(2) == 0 ? "middle" : name);
    }

    public static string MotionPhrase(Motion m, Random? rng)
    {
        string[] options = m switch
        {
            Motion.Still => ["staying still", "still", "not moving"],
            Motion.Growing => ["growing", "getting bigger"],
            Motion.Shrinking => ["shrinking", "getting smaller"],
            _ => ["moving " + m.Word(), "going " + m.Word(), "heading " + m.Word()],
        };
        return rng == null ? options[0] : options[rng.Next(options.Length)];
    }

    // "x and y", "x , y and z" (with a random "and" instead of "," sometimes).
    private static string Join(IReadOnlyList<string> parts, Random? rng)
    {
        if (parts.Count == 1) return parts[0];
        var sb = new System.Text.StringBuilder(parts[0]);
        for (int i = 1; i < parts.Count; i++)
        {
            bool last = i == parts.Count - 1;
            sb.Append(last || (rng != null && rng.Next(2) == 0) ? " and " : " , ").Append(parts[i]);
        }
        return sb.ToString();
    }
}
