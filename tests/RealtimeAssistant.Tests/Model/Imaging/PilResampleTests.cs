using System.Security.Cryptography;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model.Imaging;
using RealtimeAssistant.Tests.Model.Families;

namespace RealtimeAssistant.Tests.Model.Imaging;

public class PilResampleTests
{
    /// <summary>Fixtures/pil/pil_resize.json: Pillow 9.4's resize (make_pil_resize.py) over every filter, down, up and one axis at a time.</summary>
    [Fact]
    public void EveryFilterAndSize_IsPillowsResizeByteForByte()
    {
        var path = Path.Combine(HfFixture.Root, "..", "pil", "pil_resize.json");
        var doc = JsonNode.Parse(File.ReadAllText(path))!;
        var images = new Dictionary<string, Mat>();
        int checkedCases = 0;
        var wrong = new List<string>();
        foreach (var c in doc["cases"]!.AsArray())
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
        Assert.True(checkedCases >= 100);
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(10)) + $"\n({wrong.Count} of {checkedCases} differ)");
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
