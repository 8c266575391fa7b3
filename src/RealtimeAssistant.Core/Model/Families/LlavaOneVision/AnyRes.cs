namespace RealtimeAssistant.Model.LlavaOneVision;

/// <summary>
/// LLaVA-OneVision's anyres arithmetic, as transformers writes it (sizes are (height, width)):
/// which pinpoint an image is tiled at, how it is resized and padded into it, how many grid
/// features survive the unpadding, and the anyres_max_N downscale. Pure integer/double maths, so
/// the processor (tiles, token count) and the model (feature packing) share it.
/// </summary>
public static class AnyRes
{
    /// <summary>
    /// select_best_resolution: the pinpoint keeping the most of the image's pixels when the image
    /// is scaled to fit it (capped at the original pixel count), ties broken by the least waste.
    /// </summary>
    public static (int H, int W) SelectBestResolution(int height, int width, IReadOnlyList<(int H, int W)> pinpoints)
    {
        (int, int) best = default;
        long maxEffective = 0;
        double minWasted = double.PositiveInfinity;
        foreach (var (h, w) in pinpoints)
        {
            double scale = Math.Min((double)w / width, (double)h / height);
            long dw = (long)(width * scale), dh = (long)(height * scale); // Python's int(): truncation
            long effective = Math.Min(dw * dh, (long)width * height);
            long wasted = (long)w * h - effective;
            if (effective > maxEffective || (effective == maxEffective && wasted < minWasted))
            {
                maxEffective = effective;
                minWasted = wasted;
                best = (h, w);
            }
        }
        return best;
    }

    /// <summary>get_patch_output_size: the image scaled to fit the pinpoint, its long side filling it (the other rounded up).</summary>
    public static (int H, int W) FitInto(int height, int width, (int H, int W) target)
    {
        double scaleW = (double)target.W / width, scaleH = (double)target.H / height;
        return scaleW < scaleH
            ? (Math.Min((int)Math.Ceiling(height * scaleW), target.H), target.W)
            : (target.H, Math.Min((int)Math.Ceiling(width * scaleH), target.W));
    }

    /// <summary>Where the fitted image is pasted in the pinpoint (the padding before it; the rest goes after).</summary>
    public static (int Top, int Left) PadOffsets((int H, int W) fitted, (int H, int W) target) =>
        ((target.H - fitted.H) / 2, (target.W - fitted.W) / 2);

    /// <summary>
    /// unpad_image on a grid of <paramref name="gridH"/>×<paramref name="gridW"/> features: the rows
    /// (or columns) that cover only the padding are cut, the same count from each side.
    /// <paramref name="roundTo7"/>: the model's int(round(x, 7)); false: the 4.50 processor's int(x)
    /// (they differ only when x falls within 1e-7 below a whole number).
    /// Returns the kept rows [Top, Top+H) and columns [Left, Left+W).
    /// </summary>
    public static (int Top, int H, int Left, int W) Unpad(int height, int width, int gridH, int gridW, bool roundTo7 = true)
    {
        double originalAspect = (double)width / height, currentAspect = (double)gridW / gridH;
        if (originalAspect > currentAspect)
        {
            double scale = (double)gridW / width;
            int newH = Trunc(height * scale, roundTo7);
            int pad = FloorDiv(gridH - newH, 2);
            return (pad, gridH - 2 * pad, 0, gridW);
        }
        else
        {
            double scale = (double)gridH / height;
            int newW = Trunc(width * scale, roundTo7);
            int pad = FloorDiv(gridW - newW, 2);
            return (0, gridH, pad, gridW - 2 * pad);
        }
    }

    /// <summary>
    /// anyres_max_N: a grid with more than 1.1× the area of N tiles is bilinearly shrunk by the ratio
    /// of the square roots, each side floored (int(h // ratio)). Returns the size the grid ends at.
    /// </summary>
    public static (int H, int W) Downscale(int gridH, int gridW, int tileSide, int maxTiles)
    {
        double ratio = Math.Sqrt((double)gridH * gridW / (maxTiles * (double)tileSide * tileSide));
        if (ratio <= 1.1) return (gridH, gridW);
        return ((int)PyFloorDiv(gridH, ratio), (int)PyFloorDiv(gridW, ratio));
    }

    /// <summary>
    /// Tokens one image takes in anyres mode: the base tile's, then the unpadded (maybe shrunk) grid
    /// with an image_newline after each row.
    /// </summary>
    public static int TokenCount(int height, int width, IReadOnlyList<(int H, int W)> pinpoints, int tileSize, int tileSide, int maxTiles, bool roundTo7 = true)
    {
        var best = SelectBestResolution(height, width, pinpoints);
        int gridH = best.H / tileSize * tileSide, gridW = best.W / tileSize * tileSide;
        var (_, h, _, w) = Unpad(height, width, gridH, gridW, roundTo7);
        (h, w) = Downscale(h, w, tileSide, maxTiles);
        return tileSide * tileSide + h * (w + 1);
    }

    /// <summary>vision_aspect_ratio "anyres_max_N" → N (transformers strips those characters and reads an int).</summary>
    public static int MaxTiles(string visionAspectRatio, string source)
    {
        var digits = visionAspectRatio.Trim("anyres_max_".ToCharArray());
        if (visionAspectRatio.StartsWith("anyres_max_", StringComparison.Ordinal) && int.TryParse(digits, out var n) && n > 0) return n;
        throw new UserError($"{source}: vision_aspect_ratio '{visionAspectRatio}' is not supported (anyres_max_N)");
    }

    static int Trunc(double x, bool roundTo7) => (int)(roundTo7 ? Math.Round(x, 7, MidpointRounding.ToEven) : x);

    static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);

    /// <summary>Python's float a // b for positive operands (CPython's float_divmod: from fmod, not floor(a / b)).</summary>
    internal static double PyFloorDiv(double a, double b)
    {
        double mod = a % b, div = (a - mod) / b;
        if (div == 0) return 0;
        double floor = Math.Floor(div);
        return div - floor > 0.5 ? floor + 1 : floor;
    }
}
