using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Families.Idefics3;
using RealtimeAssistant.Model.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// SmolVLM2 and Idefics3 against Hugging Face's own outputs (Fixtures/hf/smolvlm and idefics3,
/// recorded with transformers 4.50 on tiny random checkpoints in the Hub layout).
/// </summary>
public sealed class Idefics3Tests
{
    readonly ITestOutputHelper _out;
    public Idefics3Tests(ITestOutputHelper output) => _out = output;

    /// <summary>The committed HF fixtures, found from the source tree (they are not copied to the output folder).</summary>
    internal static class Fixture
    {
        static readonly Lazy<string> RootPath = new(() =>
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                var p = Path.Combine(d.FullName, "tests", "RealtimeAssistant.Tests", "Fixtures", "hf");
                if (Directory.Exists(p)) return p;
            }
            throw new InvalidOperationException("Fixtures/hf not found above " + AppContext.BaseDirectory);
        });

        public static string Root => RootPath.Value;
        public static string Dir(string family) => Path.Combine(Root, family);
        public static JsonNode Expected(string family) => JsonNode.Parse(File.ReadAllText(Path.Combine(Dir(family), "expected.json")))!;
        public static JsonNode Case(string family, string name) => Expected(family)["cases"]!.AsArray().First(c => (string)c!["name"]! == name)!;
        public static Tensor Tensor(string family, string name) => SafeTensorsReader.Open(Path.Combine(Dir(family), "expected.safetensors")).Load(name);
        public static Mat Image(string relative) => Cv2.ImRead(Path.Combine(Root, relative), ImreadModes.Color);
        public static long[] Longs(JsonNode n) => n.AsArray().Select(x => (long)x!).ToArray();
        public static double[] Doubles(JsonNode n) => n.AsArray().Select(x => (double)x!).ToArray();
    }

    static Engine Load(string family) => Engine.Load(Fixture.Dir(family));
    static Idefics3Family Family(Engine e) => (Idefics3Family)e.Model;

    [Theory]
    [InlineData("smolvlm")]
    [InlineData("idefics3")]
    public void Checkpoint_LoadsWithEveryTensorUsed(string family)
    {
        using var e = Load(family);
        var m = Family(e);
        Assert.Equal(family, m.ModelType);
        // Every parameter came from the file and every tensor in the file went somewhere (the loader lists any other).
        var weights = SafeTensorsReader.Open(Fixture.Dir(family));
        var names = m.Model.named_parameters().Select(p => Idefics3Model.ToCheckpointName(p.name)).OrderBy(x => x, StringComparer.Ordinal);
        Assert.Equal(weights.Tensors.Keys.OrderBy(x => x, StringComparer.Ordinal), names);
        foreach (var (name, p) in m.Model.named_parameters())
            Assert.True(p.equal(weights.Load(Idefics3Model.ToCheckpointName(name))).all().item<bool>(), name);
    }

    [Fact]
    public void Checkpoint_WithATensorMissing_IsAOneLineUserErrorNamingIt()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(Fixture.Dir("smolvlm"))) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var weights = SafeTensorsReader.Open(Fixture.Dir("smolvlm"));
        var kept = weights.Tensors.Keys.Where(k => k != "model.connector.modality_projection.proj.weight").Select(k => (k, weights.Load(k))).ToList();
        SafeTensorsWriter.Write(dir.File("model.safetensors"), kept);
        var e = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
        Assert.Contains("missing tensors: connector.modality_projection.proj.weight", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void ResizeArithmetic_IsHfs()
    {
        // SmolVLM fixture, longest edge 96, tiles 32. Landscape 53×37: width 96, height int(96 / (53/37)) = int(67.02) = 67,
        // odd → 68; for the encoder 96 stays 96, int(96 / (96/68)) = 68 rounds up to 96: 3×3 tiles.
        Assert.Equal((68, 96), Idefics3ImageProcessor.LongestEdgeSize(37, 53, 96, 4096));
        Assert.Equal((96, 96), Idefics3ImageProcessor.TileMultipleSize(68, 96, 32));
        // Portrait 30×61: height 96, width int(96 · 30/61) = int(47.2) = 47, odd → 48; encoder: int(96 · 0.5) = 48 → 64: 3 rows × 2 columns.
        Assert.Equal((96, 48), Idefics3ImageProcessor.LongestEdgeSize(61, 30, 96, 4096));
        Assert.Equal((96, 64), Idefics3ImageProcessor.TileMultipleSize(96, 48, 32));
        // Idefics3 fixture, longest edge 56, tiles 28: 53×37 → 56×int(39.09)=39 → 40 → 56×56 (2×2); 30×61 → int(27.5)=27 → 28 → 56×28 (2×1).
        Assert.Equal((40, 56), Idefics3ImageProcessor.LongestEdgeSize(37, 53, 56, 1820));
        Assert.Equal((56, 56), Idefics3ImageProcessor.TileMultipleSize(40, 56, 28));
        Assert.Equal((56, 28), Idefics3ImageProcessor.LongestEdgeSize(61, 30, 56, 1820));
        Assert.Equal((56, 28), Idefics3ImageProcessor.TileMultipleSize(56, 28, 28));
        // SmolVLM2's real sizes: a 1920×1080 frame → 2048×1152 (int(1152.0) even) → 2048×1536: 3 rows × 4 columns of 512.
        Assert.Equal((1152, 2048), Idefics3ImageProcessor.LongestEdgeSize(1080, 1920, 2048, 4096));
        Assert.Equal((1536, 2048), Idefics3ImageProcessor.TileMultipleSize(1152, 2048, 512));
        // Upscaling is not capped, downscaling to the upper bound keeps the aspect ratio: 100×10 at longest 8192 → 8192×820 → 4096×410.
        Assert.Equal((410, 4096), Idefics3ImageProcessor.LongestEdgeSize(10, 100, 8192, 4096));
    }

    static float[] Floats(Tensor t) => t.to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();

    [Theory]
    [InlineData("smolvlm", 3, 3)]
    [InlineData("idefics3", 2, 2)]
    public void StillImagePixels_AreHfsExactly(string family, int rows, int cols)
    {
        using var e = Load(family);
        var c = Fixture.Case(family, "image_landscape");
        using var img = Fixture.Image((string)c["images"]![0]!);
        var (ids, _) = Family(e).Layout(rows, cols);
        using var prepared = e.Model.Prepare(img, ImageUse.Still);
        var ours = Pixels(prepared);
        var hf = Fixture.Tensor(family, "image_landscape.pixel_values")[0];
        Assert.Equal(hf.shape, ours.shape);
        double maxDiff = (ours - hf).abs().max().item<float>();
        _out.WriteLine($"{family} landscape: {ours.shape[0]} tiles, max |ours − HF| = {maxDiff}");
        Assert.Equal(0.0, maxDiff);
        // A fake token opens each tile; the global image has one on each side.
        Assert.Equal(rows * cols + 2, ids.Count(i => i == e.Tokenizer.TokenToId("<fake_token_around_image>")));
    }

    [Theory]
    [InlineData("smolvlm")]
    [InlineData("idefics3")]
    public void PortraitTiles_MatchHfsPerTileSums(string family)
    {
        using var e = Load(family);
        var c = Fixture.Case(family, "image_portrait");
        using var img = Fixture.Image((string)c["images"]![0]!);
        using var prepared = e.Model.Prepare(img, ImageUse.Still);
        var ours = Pixels(prepared).to_type(ScalarType.Float64);
        var hf = c["processor_inputs"]!["pixel_values"]!;
        Assert.Equal(Fixture.Longs(hf["shape"]!)[1..], ours.shape);
        var sums = Fixture.Doubles(hf["row_sums"]!);
        var mine = Floats(ours.reshape(ours.shape[0], -1).sum(1));
        for (int i = 0; i < sums.Length; i++) Assert.Equal(sums[i], mine[i], 3);
        Assert.Equal((double)hf["abs_sum"]!, ours.abs().sum().item<double>(), 2);
    }

    static Tensor Pixels(IPreparedImage p) =>
        (Tensor)p.GetType().GetProperty("Pixels")!.GetValue(p)!;
}
