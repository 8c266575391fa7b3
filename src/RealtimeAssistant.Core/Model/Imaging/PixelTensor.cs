using OpenCvSharp;
using RealtimeAssistant.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Imaging;

/// <summary>
/// 8-bit images into one CPU byte tensor [N, H, W, C], each copied from its Mat's memory into the
/// tensor's. A frame read once went through a managed byte[] on its way; for a camera frame that
/// is megabytes a read, large objects that set off full collections (a Qwen2-VL frame of 640×480
/// left 1.25 MB and 15 full collections in 50 reads).
/// </summary>
public static class PixelTensor
{
    /// <param name="images">Images of one size and 8-bit type.</param>
    /// <param name="count">The tensor's N, at least <paramref name="images"/>' count: the last image fills the rows after it (HF pads a clip to whole temporal patches so).</param>
    public static unsafe Tensor FromMats(IReadOnlyList<Mat> images, int? count = null)
    {
        if (images.Count == 0) throw new ArgumentException("no image");
        int n = count ?? images.Count, h = images[0].Rows, w = images[0].Cols, ch = images[0].Channels();
        if (n < images.Count) throw new ArgumentException($"{n} rows for {images.Count} images");
        var t = torch.empty(new long[] { n, h, w, ch }, ScalarType.Byte);
        long each = (long)h * w * ch;
        byte* dst = TensorMemory.Ptr<byte>(t);
        for (int i = 0; i < images.Count; i++)
        {
            var m = images[i];
            if (m.Rows != h || m.Cols != w || m.Type() != images[0].Type() || m.Depth() != MatType.CV_8U)
                throw new ArgumentException($"image {i} is {m.Cols}x{m.Rows} {m.Type()}, not {w}x{h} {images[0].Type()} (8-bit)");
            using var cont = m.IsContinuous() ? null : m.Clone();
            var src = (void*)(cont ?? m).Data;
            for (int row = i; row < (i == images.Count - 1 ? n : i + 1); row++)
                Buffer.MemoryCopy(src, dst + row * each, each, each);
        }
        return t;
    }
}
