namespace RealtimeAssistant.Demo;

/// <summary>How an object changes over time. Translation is in image space (up = towards row 0).</summary>
public enum Motion { Still, Left, Right, Up, Down, Growing, Shrinking }

public static class Motions
{
    public static readonly Motion[] All = Enum.GetValues<Motion>();

    /// <summary>The one-word answer ("left", "still", "growing").</summary>
    public static string Word(this Motion m) => m.ToString().ToLowerInvariant();

    /// <summary>Unit direction in image space; zero for still, growing and shrinking.</summary>
    public static (int Dx, int Dy) Direction(this Motion m) => m switch
    {
        Motion.Left => (-1, 0), Motion.Right => (1, 0), Motion.Up => (0, -1), Motion.Down => (0, 1),
        _ => (0, 0),
    };

    /// <summary>+1 growing, −1 shrinking, 0 otherwise.</summary>
    public static int Growth(this Motion m) => m == Motion.Growing ? 1 : m == Motion.Shrinking ? -1 : 0;

    public static bool IsTranslation(this Motion m) => m is Motion.Left or Motion.Right or Motion.Up or Motion.Down;

    public static bool TryParse(string word, out Motion motion)
    {
        foreach (var m in All)
            if (m.Word() == word) { motion = m; return true; }
        motion = default;
        return false;
    }
}
