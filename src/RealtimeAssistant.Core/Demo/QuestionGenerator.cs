namespace RealtimeAssistant.Demo;

/// <summary>A question about a scene and its one correct answer.</summary>
public sealed record QaPair(string Question, string Answer);

/// <summary>
/// Questions answerable from the scene graph alone. An object is only referred to by words that
/// pick it out uniquely ("the circle" only when there is one circle).
/// </summary>
public static class QuestionGenerator
{
    /// <summary>Picks a question type uniformly, then one question of that type.</summary>
    /// <param name="withMotion">False for single still images, where motion cannot be seen.</param>
    public static QaPair Sample(Scene scene, Random rng, bool withMotion = true)
    {
        var byType = All(scene, rng, withMotion).Where(g => g.Count > 0).ToList();
        var group = byType[rng.Next(byType.Count)];
        return group[rng.Next(group.Count)];
    }

    /// <summary>Every question the scene supports, grouped by type.</summary>
    public static List<List<QaPair>> All(Scene scene, Random rng, bool withMotion = true)
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
            Existence(scene, rng),
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

    // Half "yes" (a present object), half "no" (a random absent colour and shape).
    private static List<QaPair> Existence(Scene scene, Random rng)
    {
        var list = scene.Objects.Select(o => new QaPair($"is there {o.Color.Article()} {o.Name} ?", "yes")).ToList();
        for (int tries = 0; tries < 20 && list.Count < 2 * scene.Objects.Count + 1; tries++)
        {
            var c = DemoColors.All[rng.Next(DemoColors.All.Length)];
            var s = Shapes.All[rng.Next(Shapes.All.Length)];
            if (scene.Find(c, s) == null) list.Add(new QaPair($"is there {c.Article()} {c.Word()} {s.Word()} ?", "no"));
        }
        return list;
    }
}
