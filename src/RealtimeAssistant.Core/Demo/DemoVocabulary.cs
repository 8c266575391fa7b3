namespace RealtimeAssistant.Demo;

/// <summary>
/// Every word the scene world can produce: captions, event sentences, questions, answers and
/// prompts. A word-level tokenizer built from <see cref="Words"/> never meets an unknown word.
/// Special tokens (padding, image, end) are not listed; the model adds its own.
/// </summary>
public static class DemoVocabulary
{
    public static readonly string[] Counts = ["zero", "one", "two", "three", "four"];

    public const string CaptionPrompt = "describe the scene .";
    public const string StreamingPrompt = "what is happening ?";

    /// <summary>Marker word for streaming inputs (e.g. "frame" between frame embeddings).</summary>
    public const string FrameMarker = "frame";

    public static readonly IReadOnlyList<string> Words = Build();

    public static int Size => Words.Count;

    public static bool Contains(string word) => Set.Contains(word);

    private static readonly HashSet<string> Set = new(Words);

    private static string[] Build()
    {
        var words = new List<string>
        {
            ".", ",", "?",
            "a", "an", "the", "and", "there", "is", "are", "i", "see", "can", "at", "in", "middle",
            "moving", "going", "heading", "staying", "still", "not", "getting", "bigger", "smaller",
            "nothing", "enters", "leaves", "turns", "stops", "starts", "from",
            "what", "colour", "shape", "object", "objects", "how", "many", "where", "which", "way",
            "does", "move", "yes", "no", "describe", "scene", "happening", FrameMarker,
        };
        words.AddRange(Counts);
        words.AddRange(DemoColors.All.Select(c => c.Word()));
        words.AddRange(Shapes.All.Select(s => s.Word()));
        words.AddRange(Shapes.All.Select(s => s.Plural()));
        words.AddRange(Motions.All.Select(m => m.Word()));
        words.AddRange(Grid.Names.SelectMany(n => n.Split(' ')));
        return words.Distinct().ToArray();
    }
}
