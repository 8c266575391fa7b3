namespace RealtimeAssistant.Demo;

/// <summary>A question about a scene and its one correct answer.</summary>
public sealed record QaPair(string Question, string Answer);

/// <summary>How often each question type is drawn.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<QuestionMix>))]
public enum QuestionMix
{
    /// <summary>Every type equally often: what <c>ra eval</c> asks.</summary>
    Uniform,
    /// <summary>
    /// For training: more of the types that find an object by one attribute and read another off it
    /// (the colour of the shape, counts, existence), whose "no" cases half share a colour or a shape
    /// with an object present. Those are the binding mistakes a model that captions well still makes.
    /// </summary>
    Focused,
}

/// <summary>
/// Questions answerable from the scene graph alone. An object is only referred to by words that
/// pick it out uniquely ("the circle" only when there is one circle).
/// </summary>
public static class QuestionGenerator
{
    // Focused weights, in the order All lists the types: colour of a shape, shape of a colour, counts
    // by shape, count of all, where, existence, what is at, motion.
    private static readonly double[] FocusedWeights = [3, 0.5, 2, 0.5, 1.5, 2, 1, 0.5];

    /// <summary>Picks a question type (uniformly, or weighted by <paramref name="mix"/>), then one question of that type.</summary>
    /// <param name="withMotion">False for single still images, where motion cannot be seen.</param>
    public static QaPair Sample(Scene scene, Random rng, bool withMotion = true, QuestionMix mix = QuestionMix.Uniform)
    {
        if (mix == QuestionMix.Uniform)
        {
            var byType = All(scene, rng, withMotion).Where(g => g.Count > 0).ToList();
            var any = byType[rng.Next(byType.Count)];
            return any[rng.Next(any.Count)];
        }
        var groups = All(scene, rng, withMotion, hardNegatives: true);
        var weights = groups.Select((g, i) => g.Count == 0 ? 0 : FocusedWeights[i]).ToArray();
        double pick = rng.NextDouble() * weights.Sum();
        int type = Array.FindLastIndex(weights, w => w > 0);
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] > 0 && pick < weights[i]) { type = i; break; }
            pick -= weights[i];
        }
        var group = groups[type];
        return group[rng.Next(group.Count)];
    }

    /// <summary>Every question the scene supports, grouped by type (a type the scene cannot ask about is an empty list).</summary>
    /// <param name="hardNegatives">Half the existence questions answered "no" share a colour or a shape with an object present.</param>
    public static List<List<QaPair>> All(Scene scene, Random rng, bool withMotion = true, bool hardNegatives = false)
    {
        var objs = scene.Objects;
        var groups = new List<List<QaPair>>
        {
            // Colour of a shape that occurs once.
            objs.Where(o => objs.Count(p => p.Shape == o.Shape) == 1)
                .Select(o => new QaPair($"what colour is the {o.Shape.Word()} ?", o.Color.Word())).ToList(),
            // Shape of a colour that occurs once.
            objs.Where(o => objs.Count(p => p.Color == o.Color) == 1)
                .Select(o => new QaPair($"what shape is the {o.Color.Word()} object ?", o.Shape.Word())).ToList(),
            // Counts, absent shapes included ("zero").
            Shapes.All.Select(s => new QaPair($"how many {s.Plural()} are there ?", Count(objs.Count(o => o.Shape == s)))).ToList(),
            new() { new QaPair("how many objects are there ?", Count(objs.Count)) },
            objs.Select(o => new QaPair($"where is the {o.Name} ?", o.Position)).ToList(),
            Existence(scene, rng, hardNegatives),
            Enumerable.Range(0, 9).Select(cell => new QaPair($"what is at {Grid.Name(cell)} ?", WhatIsAt(scene, cell))).ToList(),
        };
        if (withMotion)
            groups.Add(objs.Select(o => new QaPair($"which way does the {o.Name} move ?", o.Motion.Word())).ToList());
        return groups;
    }

    /// <summary>The question's type, named by its opening words ("what colour", "how many", …), for per-type scores.</summary>
    public static string Kind(string question)
    {
        var words = question.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return words.Length < 3 ? question : words[0] is "what" && words[1] is "is" ? "what is at" : $"{words[0]} {words[1]}";
    }

    public static string Count(int n) => n < DemoVocabulary.Counts.Length ? DemoVocabulary.Counts[n] : "four";

    /// <summary>"a red circle", or "nothing"; several objects in one cell (mid-clip) are joined by "and".</summary>
    public static string WhatIsAt(Scene scene, int cell)
    {
        var here = scene.InReadingOrder().Where(o => o.Cell == cell).Select(o => $"{o.Color.Article()} {o.Name}").ToList();
        return here.Count == 0 ? "nothing" : string.Join(" and ", here);
    }

    // Half "yes" (a present object), half "no" (an absent colour and shape: random, or with hard
    // negatives on every other try, one present object's colour with another shape or its shape in another colour).
    private static List<QaPair> Existence(Scene scene, Random rng, bool hardNegatives = false)
    {
        var objs = scene.Objects;
        var list = objs.Select(o => new QaPair($"is there {o.Color.Article()} {o.Name} ?", "yes")).ToList();
        for (int tries = 0; tries < 20 && list.Count < 2 * objs.Count + 1; tries++)
        {
            var c = DemoColors.All[rng.Next(DemoColors.All.Length)];
            var s = Shapes.All[rng.Next(Shapes.All.Length)];
            if (hardNegatives && tries % 2 == 0 && objs.Count > 0)
            {
                var o = objs[rng.Next(objs.Count)];
                if (rng.Next(2) == 0) c = o.Color; else s = o.Shape;
            }
            var q = new QaPair($"is there {c.Article()} {c.Word()} {s.Word()} ?", "no");
            if (scene.Find(c, s) == null && (!hardNegatives || !list.Contains(q))) list.Add(q);
        }
        return list;
    }
}
