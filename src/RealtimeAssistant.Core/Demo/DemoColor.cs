namespace RealtimeAssistant.Demo;

/// <summary>Object colours: saturated and far apart in BGR so they survive a 64×64 downscale.</summary>
public enum DemoColor { Red, Green, Blue, Yellow, Orange, Purple, White, Cyan }

public static class DemoColors
{
    public static readonly DemoColor[] All = Enum.GetValues<DemoColor>();

    public static string Word(this DemoColor c) => c.ToString().ToLowerInvariant();

    /// <summary>"an" before vowels, so "an orange ring" reads naturally.</summary>
    public static string Article(this DemoColor c) => c == DemoColor.Orange ? "an" : "a";

    /// <summary>Pure colour as (B, G, R).</summary>
    public static (byte B, byte G, byte R) Bgr(this DemoColor c) => c switch
    {
        DemoColor.Red => (30, 30, 225),
        DemoColor.Green => (40, 195, 40),
        DemoColor.Blue => (225, 90, 20),
        DemoColor.Yellow => (30, 225, 235),
        DemoColor.Orange => (10, 135, 250),
        DemoColor.Purple => (175, 40, 145),
        DemoColor.White => (240, 240, 240),
        _ => (235, 220, 30), // cyan
    };

    public static bool TryParse(string word, out DemoColor color)
    {
        foreach (var c in All)
            if (c.Word() == word) { color = c; return true; }
        color = default;
        return false;
    }
}
