using Silk.NET.OpenGL;
using SkiaSharp;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// One text block on screen (the caption, the HUD numbers, the status line) and its texture.
/// Skia rasterises only when the text, wrap width, line limit or colour change; an unchanged block
/// costs one textured quad per frame.
/// </summary>
internal sealed unsafe class CachedText : IDisposable
{
    private readonly TextRasterizer _raster;
    private readonly Texture2D _texture;
    private (string Text, int MaxWidth, int MaxLines, SKColor Colour)? _key;

    public int Width => _texture.Width;
    public int Height => _texture.Height;
    public int LineCount { get; private set; }
    public bool IsEmpty { get; private set; } = true;

    /// <summary>How many times this block was rasterised: the cache's hit rate, visible to tests.</summary>
    public int RasterCount { get; private set; }

    public CachedText(GL gl, TextRasterizer raster)
    {
        _raster = raster;
        _texture = new Texture2D(gl, smooth: false);   // drawn 1:1 on whole pixels: nearest is exact
    }

    /// <param name="maxLines">Keep only the last lines, so a long streaming caption scrolls up.</param>
    public void Set(string text, int maxWidth, int maxLines, SKColor colour)
    {
        var key = (text, maxWidth, maxLines, colour);
        if (_key == key) return;
        _key = key;
        IsEmpty = string.IsNullOrWhiteSpace(text);
        if (IsEmpty) { LineCount = 0; return; }

        List<string> lines = _raster.Wrap(text, maxWidth - 2 * _raster.Padding - 1);
        if (lines.Count > maxLines) lines.RemoveRange(0, lines.Count - maxLines);
        LineCount = lines.Count;
        using SKBitmap bitmap = _raster.Draw(lines, colour);
        _texture.Upload(bitmap.Width, bitmap.Height, InternalFormat.Rgba8, PixelFormat.Rgba, PixelType.UnsignedByte,
            (void*)bitmap.GetPixels(), bitmap.RowBytes / 4, 4);
        RasterCount++;
    }

    public void Bind() => _texture.Bind();

    public void Dispose() => _texture.Dispose();
}
