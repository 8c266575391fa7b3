using OpenCvSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Families.Idefics3;

/// <summary>
/// An image cut as Idefics3/SmolVLM's processor cuts it: row-major tiles of
/// <see cref="Side"/>×<see cref="Side"/> RGB pixels, then the global image (Rows = Cols = 0: the
/// global image alone). Owns its tiles.
/// </summary>
public sealed record ImageTiles(IReadOnlyList<Mat> Tiles, int Rows, int Cols, int Side) : IDisposable
{
    public void Dispose() { foreach (var t in Tiles) t.Dispose(); }
}

/// <summary>
/// Idefics3ImageProcessor / SmolVLMImageProcessor (the slow, PIL-based ones): the longest edge
/// scaled to size.longest_edge (up or down), then either split (both sides rounded up to whole
/// tiles, cut into tiles, plus the whole image squashed to one tile) or squashed to one tile. Every
/// resize is PIL's (<see cref="Imaging.PilResample"/>), so the pixels match HF's byte for byte; rescale and
/// normalise follow numpy's float64-then-float32 order through a lookup table on the device.
/// </summary>
public sealed class Idefics3ImageProcessor : IDisposable
{
    readonly Idefics3ProcessorConfig _c;
    readonly Tensor _lut; // [3·256] float32 on the device: channel c, byte x → normalised value

    public Idefics3ProcessorConfig Config => _c;

    public Idefics3ImageProcessor(Idefics3ProcessorConfig config, Device device)
    {
        _c = config;
        var lut = new float[3 * 256];
        for (int ch = 0; ch < 3; ch++)
            for (int x = 0; x < 256; x++)
            {
                // numpy: uint8 → float64 × scale → float32, then (x − mean) / std in float32.
                float v = _c.DoRescale ? (float)(x * _c.RescaleFactor) : x;
                if (_c.DoNormalize) v = (v - _c.Mean[ch]) / _c.Std[ch];
                lut[ch * 256 + x] = v;
            }
        _lut = torch.tensor(lut, device: device).DetachFromDisposeScope();
    }

    /// <summary>A still image: HF's image path (tiles plus the global image when splitting is on).</summary>
    public ImageTiles Still(Mat bgr)
    {
        var rgb = Rgb(bgr);
        var tiles = new List<Mat>();
        try
        {
            int m = _c.TileSize;
            if (_c.DoResize)
            {
                var (nh, nw) = LongestEdgeSize(rgb.Rows, rgb.Cols, _c.LongestEdge, _c.UpperBound);
                Resize(ref rgb, nw, nh);
            }
            if (!_c.DoImageSplitting)
            {
                Resize(ref rgb, m, m);
                tiles.Add(rgb);
                return new ImageTiles(tiles, 0, 0, m);
            }
            var (h, w) = TileMultipleSize(rgb.Rows, rgb.Cols, m);
            Resize(ref rgb, w, h);
            if (h <= m && w <= m) { tiles.Add(rgb); return new ImageTiles(tiles, 0, 0, m); } // exactly one tile: no splitting
            int rows = (h + m - 1) / m, cols = (w + m - 1) / m;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    using (var view = new Mat(rgb, new Rect(c * m, r * m, m, m))) tiles.Add(view.Clone());
            Resize(ref rgb, m, m);
            tiles.Add(rgb);
            return new ImageTiles(tiles, rows, cols, m);
        }
        catch
        {
            if (!tiles.Contains(rgb)) rgb.Dispose();
            foreach (var t in tiles) t.Dispose();
            throw;
        }
    }

    /// <summary>The rows × columns of tiles <see cref="Still"/> cuts an image of this size into (0 × 0: the global image alone), by the arithmetic alone.</summary>
    public (int Rows, int Cols) StillGrid(int height, int width)
    {
        int m = _c.TileSize;
        if (_c.DoResize) (height, width) = LongestEdgeSize(height, width, _c.LongestEdge, _c.UpperBound);
        if (!_c.DoImageSplitting) return (0, 0);
        var (h, w) = TileMultipleSize(height, width, m);
        return h <= m && w <= m ? (0, 0) : ((h + m - 1) / m, (w + m - 1) / m);
    }

    /// <summary>
    /// A video frame as SmolVLM2's processor takes one: the longest edge scaled to
    /// video_size.longest_edge (the tile size when absent), then squashed to one tile; never split.
    /// </summary>
    public ImageTiles Frame(Mat bgr)
    {
        var rgb = Rgb(bgr);
        try
        {
            int m = _c.TileSize;
            if (_c.DoResize)
            {
                var (nh, nw) = LongestEdgeSize(rgb.Rows, rgb.Cols, _c.VideoLongestEdge ?? m, _c.UpperBound);
                Resize(ref rgb, nw, nh);
            }
            Resize(ref rgb, m, m);
            return new ImageTiles(new[] { rgb }, 0, 0, m);
        }
        catch { rgb.Dispose(); throw; }
    }

    /// <summary>Tiles → normalised pixels [N, 3, side, side] on the device, in <paramref name="dtype"/>: one upload of the bytes, then a table lookup.</summary>
    public Tensor ToTensor(ImageTiles tiles, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var hwc = Imaging.PixelTensor.FromMats(tiles.Tiles).to(_lut.device).to_type(ScalarType.Int64);
        var idx = hwc.Plus(torch.tensor(new long[] { 0, 256, 512 }, device: _lut.device));
        var x = _lut.take(idx).permute(0, 3, 1, 2).contiguous();
        return x.to_type(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// HF's _resize_output_size_rescale_to_max_len then _resize_output_size_scale_below_upper_bound:
    /// the longest edge becomes <paramref name="longest"/>, the other side int(·) of the aspect ratio,
    /// rounded up to even; then nothing over <paramref name="upperBound"/>. Returns (height, width).
    /// </summary>
    public static (int Height, int Width) LongestEdgeSize(int height, int width, int longest, int upperBound)
    {
        double aspect = (double)width / height;
        if (width >= height)
        {
            width = longest;
            height = (int)(width / aspect);
            if (height % 2 != 0) height++;
        }
        else
        {
            height = longest;
            width = (int)(height * aspect);
            if (width % 2 != 0) width++;
        }
        height = Math.Max(height, 1);
        width = Math.Max(width, 1);
        aspect = (double)width / height;
        if (width >= height && width > upperBound)
        {
            width = upperBound;
            height = (int)(width / aspect);
        }
        else if (height > width && height > upperBound)
        {
            height = upperBound;
            width = (int)(height * aspect);
        }
        return (Math.Max(height, 1), Math.Max(width, 1));
    }

    /// <summary>HF's resize_for_vision_encoder: the longer side rounded up to whole tiles, the other side int(·) of the aspect ratio, then rounded up too. Returns (height, width).</summary>
    public static (int Height, int Width) TileMultipleSize(int height, int width, int tile)
    {
        double aspect = (double)width / height;
        if (width >= height)
        {
            width = (int)Math.Ceiling((double)width / tile) * tile;
            height = Math.Max(1, (int)(width / aspect)); // HF would fail on 0; one tile row instead
            height = (int)Math.Ceiling((double)height / tile) * tile;
        }
        else
        {
            height = (int)Math.Ceiling((double)height / tile) * tile;
            width = Math.Max(1, (int)(height * aspect));
            width = (int)Math.Ceiling((double)width / tile) * tile;
        }
        return (height, width);
    }

    /// <summary>PIL's resize of <paramref name="rgb"/>, which it replaces (and disposes).</summary>
    void Resize(ref Mat rgb, int outW, int outH)
    {
        var resized = Imaging.PilResample.Resize(rgb, outW, outH, _c.Resample);
        rgb.Dispose();
        rgb = resized;
    }

    /// <summary>An 8-bit BGR (or gray) image → RGB, the caller's to dispose.</summary>
    static Mat Rgb(Mat image)
    {
        if (image.Empty()) throw new UserError("empty image");
        if (image.Type() != MatType.CV_8UC3 && image.Type() != MatType.CV_8UC1) throw new UserError($"expected an 8-bit BGR image, got {image.Type()}");
        var rgb = new Mat();
        Cv2.CvtColor(image, rgb, image.Type() == MatType.CV_8UC3 ? ColorConversionCodes.BGR2RGB : ColorConversionCodes.GRAY2RGB);
        return rgb;
    }

    public void Dispose() => _lut.Dispose();
}
