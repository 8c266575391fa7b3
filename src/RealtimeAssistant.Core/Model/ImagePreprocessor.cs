using System.Runtime.InteropServices;
using OpenCvSharp;
using Size = OpenCvSharp.Size;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// CLIP/SigLIP image preprocessing: resize (shortest edge, or fixed size), centre crop, RGB,
/// rescale and normalise. The resize runs in OpenCV on the CPU; the byte image then goes to the
/// model's device once, and the float maths happens there.
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

    /// <summary>Resize and crop in OpenCV; returns RGB 8UC3 of the model's input size.</summary>
    public Mat ResizeAndCrop(Mat bgr)
    {
        if (bgr.Empty()) throw new UserError("empty image");
        if (bgr.Type() != MatType.CV_8UC3) throw new UserError($"expected an 8-bit BGR image, got {bgr.Type()}");
        Mat resized;
        if (_cfg.ResizeShortestEdge > 0)
        {
            double scale = (double)_cfg.ResizeShortestEdge / Math.Min(bgr.Rows, bgr.Cols);
            var size = new Size(Math.Max(1, (int)Math.Round(bgr.Cols * scale)), Math.Max(1, (int)Math.Round(bgr.Rows * scale)));
            resized = bgr.Resize(size, 0, 0, scale < 1 ? InterpolationFlags.Area : InterpolationFlags.Cubic);
        }
        else
        {
            var size = new Size(_cfg.ResizeWidth, _cfg.ResizeHeight);
            resized = bgr.Resize(size, 0, 0, size.Width < bgr.Cols ? InterpolationFlags.Area : InterpolationFlags.Cubic);
        }
        if (_cfg.DoCenterCrop && (resized.Rows != _cfg.CropHeight || resized.Cols != _cfg.CropWidth))
        {
            int top = Math.Max(0, (resized.Rows - _cfg.CropHeight) / 2), left = Math.Max(0, (resized.Cols - _cfg.CropWidth) / 2);
            var roi = new Rect(left, top, Math.Min(_cfg.CropWidth, resized.Cols), Math.Min(_cfg.CropHeight, resized.Rows));
            using var old = resized;
            resized = new Mat(old, roi).Clone();
            if (resized.Rows != _cfg.CropHeight || resized.Cols != _cfg.CropWidth)
            {
                using var small = resized;
                resized = small.Resize(new Size(_cfg.CropWidth, _cfg.CropHeight), 0, 0, InterpolationFlags.Cubic);
            }
        }
        var rgb = new Mat();
        Cv2.CvtColor(resized, rgb, ColorConversionCodes.BGR2RGB);
        resized.Dispose();
        return rgb;
    }

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
        var bytes = new byte[rgb.Rows * rgb.Cols * 3];
        using (var cont = rgb.IsContinuous() ? null : rgb.Clone())
            Marshal.Copy((cont ?? rgb).Data, bytes, 0, bytes.Length);
        var hwc = torch.tensor(bytes, new long[] { rgb.Rows, rgb.Cols, 3 }).to(_device);
        var chw = hwc.permute(2, 0, 1).to_type(ScalarType.Float32) * _cfg.RescaleFactor;
        var x = ((chw - _mean) / _std).unsqueeze(0).to_type(_dtype);
        return x.MoveToOuterDisposeScope();
    }

    public void Dispose() { _mean.Dispose(); _std.Dispose(); }
}
