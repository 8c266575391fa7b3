using OpenCvSharp;
using RealtimeAssistant.Model.Imaging;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Imaging;

/// <summary>Images into one byte tensor [N, H, W, C] straight from their Mats' memory.</summary>
public class PixelTensorTests
{
    static Mat Random(int h, int w, int seed)
    {
        var m = new Mat(h, w, MatType.CV_8UC3);
        Cv2.SetTheRNG((ulong)seed);
        Cv2.Randu(m, Scalar.All(0), Scalar.All(255));
        return m;
    }

    static byte[] Bytes(Mat m)
    {
        m.GetArray(out Vec3b[] px);
        return px.SelectMany(p => new[] { p.Item0, p.Item1, p.Item2 }).ToArray();
    }

    [Fact]
    public void EachImageIsItsRow_AViewIntoALargerMatIncluded_AndTheLastFillsThePadding()
    {
        using var a = Random(5, 7, 1);
        using var big = Random(20, 30, 2);
        using var view = new Mat(big, new Rect(3, 4, 7, 5)); // not continuous: its rows are 30 pixels apart
        Assert.False(view.IsContinuous());
        using var t = PixelTensor.FromMats(new[] { a, view }, count: 4);
        Assert.Equal(new long[] { 4, 5, 7, 3 }, t.shape);
        Assert.Equal(ScalarType.Byte, t.dtype);
        Assert.Equal(Bytes(a), t[0].data<byte>().ToArray());
        using var viewCopy = view.Clone();
        Assert.Equal(Bytes(viewCopy), t[1].data<byte>().ToArray());
        Assert.Equal(Bytes(viewCopy), t[2].data<byte>().ToArray());
        Assert.Equal(Bytes(viewCopy), t[3].data<byte>().ToArray());
    }

    [Fact]
    public void ImagesOfAnotherSizeOrType_OrTooFewRows_AreRefused()
    {
        using var a = Random(5, 7, 1);
        using var b = Random(5, 8, 2);
        using var grey = new Mat(5, 7, MatType.CV_8UC1);
        using var floats = new Mat(5, 7, MatType.CV_32FC3);
        Assert.Throws<ArgumentException>(() => PixelTensor.FromMats(new[] { a, b }));
        Assert.Throws<ArgumentException>(() => PixelTensor.FromMats(new[] { a, grey }));
        Assert.Throws<ArgumentException>(() => PixelTensor.FromMats(new[] { floats }));
        Assert.Throws<ArgumentException>(() => PixelTensor.FromMats(new[] { a, a }, count: 1));
        Assert.Throws<ArgumentException>(() => PixelTensor.FromMats(Array.Empty<Mat>()));
    }
}
