using OpenCvSharp;
using Size = OpenCvSharp.Size;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// CLIP/SigLIP image preprocessing: resize (shortest edge, or fixed size), centre crop, RGB,
/// rescale and normalise. The resize runs on the CPU with PIL's arithmetic (the processors'
/// spec); the byte image then goes to the model's device once, and the float maths happens there.
/// </summary>
public sealed class ImagePreprocessor : IDisposable
{
    readonly PreprocessorConfig _cfg;
    readonly Device _device;
    readonly ScalarType _dtype;
    readonly Tensor _mean, _std;
    public int Height { get; }
    public int Width { get; }

    public ImagePreprocessor(PreprocessorConfig cfg, Device device, ScalarType dtype)
    {
        _cfg = cfg; _device = device; _dtype = dtype;
        _mean = torch.tensor(cfg.Mean, device: device).view(3, 1, 1).DetachFromDisposeScope();
        _std = torch.tensor(cfg.Std, device: device).view(3, 1, 1).DetachFromDisposeScope();
        Height = cfg.DoCenterCrop ? cfg.CropHeight : (cfg.ResizeShortestEdge > 0 ? cfg.ResizeShortestEdge : cfg.ResizeHeight);
        Width = cfg.DoCenterCrop ? cfg.CropWidth : (cfg.ResizeShortestEdge > 0 ? cfg.ResizeShortestEdge : cfg.ResizeWidth);
    }

    /// <summary>
    /// Resize and crop as Hugging Face's CLIP/SigLIP processors do (PIL's resampling, the shortest
    /// edge's long side truncated, a centre crop that pads with black when the image is smaller);
    /// returns RGB 8UC3 of the model's input size.
    /// </summary>
    public Mat ResizeAndCrop(Mat bgr)
    {
        if (bgr.Empty()) throw new UserError("empty image");
        if (bgr.Type() != MatType.CV_8UC3) throw new UserError($"expected an 8-bit BGR image, got {bgr.Type()}");
        int w, h;
        if (_cfg.ResizeShortestEdge > 0)
        {
            // get_resize_output_image_size: the long side is int(size · long / short).
            int s = _cfg.ResizeShortestEdge;
            bool wide = bgr.Cols >= bgr.Rows;
            int shortSide = wide ? bgr.Rows : bgr.Cols, longSide = wide ? bgr.Cols : bgr.Rows;
            int newLong = (int)((double)s * longSide / shortSide);
            (w, h) = wide ? (newLong, s) : (s, newLong);
        }
        else (w, h) = (_cfg.ResizeWidth, _cfg.ResizeHeight);
        var resized = PilResample.Resize(bgr, w, h, _cfg.Resample);
        if (_cfg.DoCenterCrop && (resized.Rows != _cfg.CropHeight || resized.Cols != _cfg.CropWidth))
        {
            using var old = resized;
            resized = CenterCrop(old, _cfg.CropHeight, _cfg.CropWidth);
        }
        var rgb = new Mat();
        Cv2.CvtColor(resized, rgb, ColorConversionCodes.BGR2RGB);
        resized.Dispose();
        return rgb;
    }

    /// <summary>HF's center_crop: offsets (size − crop) // 2; an image smaller than the crop is first centred on black.</summary>
    public static Mat CenterCrop(Mat img, int cropH, int cropW)
    {
        int top = (img.Rows - cropH) / 2, left = (img.Cols - cropW) / 2;
        if (top >= 0 && left >= 0) return new Mat(img, new Rect(left, top, cropW, cropH)).Clone();
        int newH = Math.Max(cropH, img.Rows), newW = Math.Max(cropW, img.Cols);
        int padTop = (newH - img.Rows + 1) / 2, padLeft = (newW - img.Cols + 1) / 2; // ceil
        using var canvas = new Mat(newH, newW, img.Type(), OpenCvSharp.Scalar.All(0));
        img.CopyTo(new Mat(canvas, new Rect(padLeft, padTop, img.Cols, img.Rows)));
        // Python floor division for the (possibly negative) offsets, shifted by the padding.
        top = FloorDiv(img.Rows - cropH, 2) + padTop;
        left = FloorDiv(img.Cols - cropW, 2) + padLeft;
        int y0 = Math.Max(0, top), x0 = Math.Max(0, left);
        int y1 = Math.Min(newH, top + cropH), x1 = Math.Min(newW, left + cropW);
        return new Mat(canvas, new Rect(x0, y0, x1 - x0, y1 - y0)).Clone();
    }

    static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);

    /// <summary>BGR image → normalised pixels [1, 3, H, W] on the model's device and dtype.</summary>
    public Tensor Process(Mat bgr)
    {
        using var rgb = ResizeAndCrop(bgr);
        return ToTensor(rgb);
    }

    /// <summary>RGB 8UC3 at the model's size → [1, 3, H, W] normalised.</summary>
    public Tensor ToTensor(Mat rgb)
    {
        using var scope = torch.NewDisposeScope();
        var hwc = PixelTensor.FromMats(new[] { rgb })[0].to(_device);
        var chw = hwc.permute(2, 0, 1).to_type(ScalarType.Float32).TimesNumber(_cfg.RescaleFactor);
        var x = ((chw - _mean) / _std).unsqueeze(0).to_type(_dtype);
        return x.MoveToOuterDisposeScope();
    }

    public void Dispose() { _mean.Dispose(); _std.Dispose(); }
}
