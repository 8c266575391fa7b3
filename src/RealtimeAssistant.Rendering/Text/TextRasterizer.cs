using SkiaSharp;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// Word-wraps and draws text with SkiaSharp into a premultiplied RGBA bitmap, sized to the text.
/// The font is loaded from a .ttf path (Skia's system font lookup needs fontconfig, which the
/// NoDependencies build lacks), with Skia's default typeface as a fallback.
/// </summary>
internal sealed class TextRasterizer : IDisposable
{
    public const string DejaVuSans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    public const string DejaVuSansMono = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

    private readonly SKTypeface _typeface;
    private readonly SKFont _font;
    private readonly SKPaint _fill = new() { Color = SKColors.White, IsAntialias = true };
    private readonly SKPaint _shadow = new() { Color = new SKColor(0, 0, 0, 200), IsAntialias = true };

    public float LineHeight { get; }
    public int Padding { get; }

    public TextRasterizer(string fontPath, float size)
    {
        _typeface = (File.Exists(fontPath) ? SKTypeface.FromFile(fontPath) : null) ?? SKTypeface.Default;
        _font = new SKFont(_typeface, size) { Edging = SKFontEdging.Antialias, Subpixel = true };
        LineHeight = MathF.Ceiling(_font.Spacing);
        Padding = Math.Max(2, (int)(size / 6));
    }

    public float Measure(string text) => _font.MeasureText(text);

    /// <summary>
    /// Greedy word wrap to <paramref name="maxWidth"/> pixels, honouring '\n'. A word wider than the
    /// line is broken by characters so nothing is ever clipped sideways.
    /// </summary>
    public List<string> Wrap(string text, float maxWidth)
    {
        var lines = new List<string>();
        foreach (string paragraph in text.Replace("\r", "").Split('\n'))
        {
            // A line that fits is kept verbatim: runs of spaces (HUD columns) survive.
            if (Measure(paragraph) <= maxWidth) { lines.Add(paragraph); continue; }
            string line = "";
            foreach (string word in paragraph.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = line.Length == 0 ? word : line + " " + word;
                if (Measure(candidate) <= maxWidth) { line = candidate; continue; }
                if (line.Length > 0) lines.Add(line);
                line = word;
                while (line.Length > 1 && Measure(line) > maxWidth)
                {
                    int fit = FitChars(line, maxWidth);
                    lines.Add(line[..fit]);
                    line = line[fit..];
                }
            }
            lines.Add(line);
        }
        return lines;
    }

    private int FitChars(string s, float maxWidth)
    {
        int n = 1;
        while (n < s.Length && Measure(s[..(n + 1)]) <= maxWidth) n++;
        return n;
    }

    /// <summary>Draws the lines white with a 1-pixel dark shadow, so they read on any background.</summary>
    public SKBitmap Draw(IReadOnlyList<string> lines, SKColor colour)
    {
        float widest = 0;
        foreach (string l in lines) widest = Math.Max(widest, Measure(l));
        int w = Math.Max(1, (int)MathF.Ceiling(widest) + 2 * Padding + 1);
        int h = Math.Max(1, (int)(LineHeight * lines.Count) + 2 * Padding + 1);
        var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.Transparent);
        _fill.Color = colour;
        float baseline = Padding - _font.Metrics.Ascent;
        for (int i = 0; i < lines.Count; i++)
        {
            float y = baseline + i * LineHeight;
            canvas.DrawText(lines[i], Padding + 1, y + 1, SKTextAlign.Left, _font, _shadow);
            canvas.DrawText(lines[i], Padding, y, SKTextAlign.Left, _font, _fill);
        }
        canvas.Flush();
        return bitmap;
    }

    public void Dispose()
    {
        _fill.Dispose();
        _shadow.Dispose();
        _font.Dispose();
        if (_typeface != SKTypeface.Default) _typeface.Dispose();
    }
}
