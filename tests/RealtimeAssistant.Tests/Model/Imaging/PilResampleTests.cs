using System.Security.Cryptography;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model.Imaging;
using RealtimeAssistant.Tests.Model.Families;

namespace RealtimeAssistant.Tests.Model.Imaging;

public class PilResampleTests
{
    /// <summary>
    /// Fixtures/pil/pil_resize.json: Pillow 9.4's resize (make_pil_resize.py) over every filter,
    /// down, up and one axis at a time. Every case runs twice: the second pass resizes with the
    /// coefficients the first computed and cached, and with scratch another case used.
    /// </summary>
    [Fact]
    public void EveryFilterAndSize_IsPillowsResizeByteForByte()
    {
        var path = Path.Combine(HfFixture.Root, "..", "pil", "pil_resize.json");
        var doc = JsonNode.Parse(File.ReadAllText(path))!;
        var images = new Dictionary<string, Mat>();
        int checkedCases = 0;
        var wrong = new List<string>();
        foreach (var c in doc["cases"]!.AsArray().Concat(doc["cases"]!.AsArray()))
        {
            var file = (string)c!["image"]!;
            if (!images.TryGetValue(file, out var rgb))
            {
                using var bgr = HfFixture.Image(file);
                images[file] = rgb = bgr.CvtColor(ColorConversionCodes.BGR2RGB);
            }
            int w = (int)c["width"]!, h = (int)c["height"]!, f = (int)c["resample"]!;
            using var outMat = PilResample.Resize(rgb, w, h, (PilResample.Filter)f);
            Assert.Equal((h, w), (outMat.Rows, outMat.Cols));
            outMat.GetArray(out Vec3b[] px);
            var bytes = px.SelectMany(p => new[] { p.Item0, p.Item1, p.Item2 }).ToArray();
            var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (sha != (string)c["sha256"]!)
                wrong.Add($"{file} {w}x{h} filter {f}: first bytes {string.Join(",", bytes.Take(6))} vs {c["first"]!.ToJsonString()}");
            checkedCases++;
        }
        foreach (var m in images.Values) m.Dispose();
        Assert.True(checkedCases >= 200);
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(10)) + $"\n({wrong.Count} of {checkedCases} differ)");
    }

    /// <summary>
    /// A camera frame's resize splits its rows over threads (the fixtures' images are too small to):
    /// the bytes are the one-thread pass's, which the fixtures check against Pillow. Grey and
    /// four-channel images take the scalar loop, three channels the SIMD one.
    /// </summary>
    [Theory]
    [InlineData(1920, 1080, 3, 64, 64)]
    [InlineData(1280, 720, 3, 336, 336)]
    [InlineData(1920, 1080, 1, 64, 48)]
    [InlineData(997, 601, 4, 50, 333)]
    public void ALargeImagesResize_IsTheSameSplitOverThreadsOrNot(int w, int h, int ch, int outW, int outH)
    {
        using var img = new Mat(h, w, MatType.CV_8UC(ch));
        Cv2.Randu(img, Scalar.All(0), Scalar.All(255));
        long was = PilResample.ParallelWork;
        try
        {
            PilResample.ParallelWork = long.MaxValue;
            using var one = PilResample.Resize(img, outW, outH, PilResample.Filter.Bicubic);
            PilResample.ParallelWork = 1;
            using var split = PilResample.Resize(img, outW, outH, PilResample.Filter.Bicubic);
            Assert.Equal((outH, outW), (split.Rows, split.Cols));
            Assert.Equal(0, Cv2.Norm(one, split, NormTypes.INF));
            Assert.True(Cv2.Norm(one, NormTypes.L1) > 0, "the resized image is all black: nothing was written");
        }
        finally { PilResample.ParallelWork = was; }
    }

    [Fact]
    public void SameSize_IsACopy_AndNearestIsRefusedByName()
    {
        using var m = new Mat(5, 7, MatType.CV_8UC3, new Scalar(1, 2, 3));
        using var same = PilResample.Resize(m, 7, 5, PilResample.Filter.Bicubic);
        Assert.Equal(0, Cv2.Norm(m, same, NormTypes.INF));
        var e = Assert.Throws<UserError>(() => PilResample.Parse(0, "preprocessor_config.json"));
        Assert.Contains("preprocessor_config.json", e.Message);
        Assert.Throws<UserError>(() => PilResample.Parse(9, "x"));
    }
}
