namespace RealtimeAssistant.Demo;

/// <summary>The shapes of the scene world. Names and plurals are the caption words.</summary>
public enum Shape { Circle, Square, Triangle, Star, Cross, Ring }

public static class Shapes
{
    public static readonly Shape[] All = Enum.GetValues<Shape>();

    public static string Word(this Shape s) => s switch
    {
        Shape.Circle => "circle", Shape.Square => "square", Shape.Triangle => "triangle",
        Shape.Star => "star", Shape.Cross => "cross", _ => "ring",
    };

    public static string Plural(this Shape s) => s == Shape.Cross ? "crosses" : s.Word() + "s";

    public static bool TryParse(string word, out Shape shape)
    {
        foreach (var s in All)
            if (s.Word() == word) { shape = s; return true; }
        shape = default;
        return false;
    }
}
