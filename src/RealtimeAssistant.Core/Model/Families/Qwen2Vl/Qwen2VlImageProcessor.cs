using OpenCvSharp;
using RealtimeAssistant.Model.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Families.Qwen2Vl;

/// <summary>A visual input's patch grid: temporal patches × patch rows × patch columns (before the 2×2 merge).</summary>
public readonly record struct GridThw(int T, int H, int W)
{
    public int Patches => T * H * W;
}

/// <summary>
/// Qwen2VLImageProcessor (the slow, PIL one HF 4.50 loads for these checkpoints): each image is
/// resized by <see cref="SmartResize"/> (sides multiples of patch × merge, area within
/// [min_pixels, max_pixels]) with PIL's filter, rescaled and normalised; a still image is repeated
/// to temporal_patch_size frames, a video's frames are paired (the last repeated when odd); the
/// patches are then flattened as rows (channel, frame, y, x) in 2×2-merge-block order: the four
/// patches one merged token takes are consecutive rows.
/// </summary>
public sealed class Qwen2VlImageProcessor : IDisposable
{
    readonly Qwen2VlProcessorConfig _cfg;
    readonly Device _device;
    readonly ScalarType _dtype;
    readonly Tensor _mean, _std;

    public Qwen2VlProcessorConfig Config => _cfg;

    public Qwen2VlImageProcessor(Qwen2VlProcessorConfig cfg, Device device, ScalarType dtype)
    {
        _cfg = cfg; _device = device; _dtype = dtype;
        _mean = torch.tensor(cfg.Mean, device: device).view(1, -1, 1, 1).DetachFromDisposeScope();
        _std = torch.tensor(cfg.Std, device: device).view(1, -1, 1, 1).DetachFromDisposeScope();
    }

    /// <summary>
    /// HF's smart_resize: both sides rounded to multiples of <paramref name="factor"/> (Python's
    /// round: halves to even), then scaled down (floor) or up (ceil) by one factor that brings
    /// the area within [min, max] while keeping the aspect ratio.
    /// </summary>
    public static (int Height, int Width) SmartResize(int height, int width, int factor, long minPixels, long maxPixels)
    {
        if (height < factor || width < factor)
            throw new UserError($"image {width}×{height} is smaller than the {factor}-pixel patch block Qwen2-VL needs on each side");
        if ((double)Math.Max(height, width) / Math.Min(height, width) > 200)
            throw new UserError($"image {width}×{height}: the aspect ratio must be under 200");
        long h = (long)Math.Round((double)height / factor, MidpointRounding.ToEven) * factor;
        long w = (long)Math.Round((double)width / factor, MidpointRounding.ToEven) * factor;
        if (h * w > maxPixels)
        {
            double beta = Math.Sqrt((double)height * width / maxPixels);
            h = (long)Math.Floor(height / beta / factor) * factor;
            w = (long)Math.Floor(width / beta / factor) * factor;
        }
        else if (h * w < minPixels)
        {
            double beta = Math.Sqrt((double)minPixels / ((double)height * width));
            h = (long)Math.Ceiling(height * beta / factor) * factor;
            w = (long)Math.Ceiling(width * beta / factor) * factor;
        }
        if (h < factor || w < factor)
            throw new UserError($"image {width}×{height} leaves no whole {factor}-pixel block within max_pixels {maxPixels}");
        return ((int)h, (int)w);
    }

    /// <summary>The size an image of this size is resized to.</summary>
    public (int Height, int Width) TargetSize(int height, int width) => TargetSize(height, width, _cfg.MaxPixels);

    /// <summary>The size under a lower bound than the processor's (min_pixels lowered to it, as <see cref="Qwen2VlProcessorConfig.WithMaxPixels"/> does).</summary>
    public (int Height, int Width) TargetSize(int height, int width, long maxPixels)
    {
        maxPixels = Math.Min(maxPixels, _cfg.MaxPixels);
        return _cfg.DoResize ? SmartResize(height, width, _cfg.Factor, Math.Min(_cfg.MinPixels, maxPixels), maxPixels) : (height, width);
    }

    /// <summary>A BGR image as an RGB Mat at <paramref name="height"/>×<paramref name="width"/> (PIL's resize); the caller's to dispose.</summary>
    public Mat ResizedRgb(Mat bgr, int height, int width)
    {
        if (bgr.Empty()) throw new UserError("empty image");
        if (bgr.Type() != MatType.CV_8UC3) throw new UserError($"expected an 8-bit BGR image, got {bgr.Type()}");
        using var rgb = new Mat();
        Cv2.CvtColor(bgr, rgb, ColorConversionCodes.BGR2RGB);
        return Imaging.PilResample.Resize(rgb, width, height, _cfg.Resample);
    }

    /// <summary>
    /// Frames (one for a still image) → patch rows [grid_t·grid_h·grid_w, C·T·P·P] on the model's
    /// device and dtype, and the grid. Every frame is resized to the first frame's target size (under
    /// <paramref name="maxPixels"/> where given).
    /// </summary>
    public (Tensor Rows, GridThw Grid) Process(IReadOnlyList<Mat> frames, long? maxPixels = null)
    {
        if (frames.Count == 0) throw new UserError("no image to process");
        var (h, w) = TargetSize(frames[0].Rows, frames[0].Cols, maxPixels ?? _cfg.MaxPixels);
        if (h % _cfg.Factor != 0 || w % _cfg.Factor != 0)
            throw new UserError($"image {frames[0].Cols}×{frames[0].Rows}: with do_resize off, its sides must be multiples of {_cfg.Factor}");
        using var scope = torch.NewDisposeScope();
        int tps = _cfg.TemporalPatchSize, p = _cfg.PatchSize, m = _cfg.MergeSize;
        // HF pads a clip to whole temporal patches with copies of its last frame (a still image: tps copies).
        int count = (frames.Count + tps - 1) / tps * tps;
        Tensor all;
        var resized = new List<Mat>(frames.Count);
        try
        {
            foreach (var frame in frames) resized.Add(ResizedRgb(frame, h, w));
            all = PixelTensor.FromMats(resized, count);
        }
        finally { foreach (var r in resized) r.Dispose(); }
        var x = all.to(_device).permute(0, 3, 1, 2); // [F, C, H, W] bytes
        // HF: rescale in float64 then float32, normalise in float32.
        var f = _cfg.DoRescale ? x.to_type(ScalarType.Float64).TimesNumber(_cfg.RescaleFactor).to_type(ScalarType.Float32) : x.to_type(ScalarType.Float32);
        if (_cfg.DoNormalize) f = (f - _mean) / _std;
        int gt = count / tps, gh = h / p, gw = w / p;
        var rows = f.reshape(gt, tps, 3, gh / m, m, p, gw / m, m, p)
            .permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            .reshape(gt * gh * gw, 3 * tps * p * p)
            .to_type(_dtype).contiguous();
        return (rows.MoveToOuterDisposeScope(), new GridThw(gt, gh, gw));
    }

    public void Dispose() { _mean.Dispose(); _std.Dispose(); }
}
