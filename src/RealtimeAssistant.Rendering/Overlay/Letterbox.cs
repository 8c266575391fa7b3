namespace RealtimeAssistant.Rendering;

/// <summary>Fits a source into the output keeping its aspect ratio, centred, with black bars.</summary>
public static class Letterbox
{
    public static RectF Fit(int srcW, int srcH, int dstW, int dstH)
    {
        if (srcW <= 0 || srcH <= 0) return RectF.Empty;
        float scale = Math.Min((float)dstW / srcW, (float)dstH / srcH);
        // Whole pixels: a 1:1 frame then maps texel-to-pixel exactly, with no resampling blur.
        float w = MathF.Round(srcW * scale), h = MathF.Round(srcH * scale);
        return new RectF(MathF.Floor((dstW - w) / 2), MathF.Floor((dstH - h) / 2), w, h);
    }
}
