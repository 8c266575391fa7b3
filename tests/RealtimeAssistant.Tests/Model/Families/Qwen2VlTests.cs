using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Families.Qwen2Vl;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// One case of a Qwen fixture (Fixtures/hf/qwen*): what transformers 4.50 produced for a prompt with
/// images or a video on the tiny random checkpoint, and the images themselves.
/// </summary>
internal sealed class QwenCase
{
    public required string Folder { get; init; }
    public required JsonNode Json { get; init; }
    public string Name => Json["name"]!.GetValue<string>();
    public string PromptText => Json["prompt_text"]!.GetValue<string>();
    public long[] InputIds => Json["input_ids"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
    public bool IsVideo => Json["video_frames"]!.AsArray().Count > 0;
    public string[] ImageFiles => (IsVideo ? Json["video_frames"]! : Json["images"]!).AsArray().Select(x => x!.GetValue<string>()).ToArray();
    public int[][] Grids => (Json[IsVideo ? "video_grid_thw" : "image_grid_thw"]!).AsArray().Select(g => g!.AsArray().Select(x => x!.GetValue<int>()).ToArray()).ToArray();
    public long[][] Mrope => Json["mrope_position_ids"]!.AsArray().Select(r => r!.AsArray().Select(x => x!.GetValue<long>()).ToArray()).ToArray();
    public long RopeDeltas => Json["rope_deltas"]!.GetValue<long>();
    public int[] GreedyTokens => Json["greedy_tokens"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
    public double[] Margins => Json["greedy_top2_margins"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
    public JsonNode Pixels => Json["processor_inputs"]![IsVideo ? "pixel_values_videos" : "pixel_values"]!;

    public Mat[] Images() => ImageFiles.Select(f => Cv2.ImRead(Path.Combine(QwenFixtures.Root, f), ImreadModes.Color)).ToArray();
    public Tensor Tensor(string name) => SafeTensorsReader.Open(Path.Combine(Folder, "expected.safetensors")).Load($"{Name}.{name}");
    public bool Has(string name) => SafeTensorsReader.Open(Path.Combine(Folder, "expected.safetensors")).Tensors.ContainsKey($"{Name}.{name}");
}

internal static class QwenFixtures
{
    public static string Root => RealtimeAssistant.Cli.Cli.FindRepoPath("tests/RealtimeAssistant.Tests/Fixtures/hf")
        ?? throw new InvalidOperationException("Fixtures/hf not found above the test binaries");

    public static string Folder(string family) => Path.Combine(Root, family);

    public static QwenCase Case(string family, string name)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Folder(family), "expected.json")))!;
        var c = json["cases"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == name)!;
        return new QwenCase { Folder = Folder(family), Json = c };
    }

    public static Engine Load(string family) => Engine.Load(Folder(family), new EngineOptions { Device = "cpu" });

    /// <summary>The case's images encoded (a video: its frames as one clip, HF's default 2 fps), and the marker its prompt uses.</summary>
    public static (List<EncodedImage> Images, int MarkerId) Encode(Engine e, QwenCase c)
    {
        var q = (Qwen2VlFamily)e.Model;
        var mats = c.Images();
        try
        {
            if (c.IsVideo)
            {
                using var clip = q.PrepareVideo(mats);
                return (q.Encode(new[] { clip }).ToList(), e.Tokenizer.TokenToId(q.VideoMarker)!.Value);
            }
            var prepared = mats.Select(m => e.Model.Prepare(m, ImageUse.Still)).ToList();
            try { return (e.Model.Encode(prepared).ToList(), e.ImageMarkerId); }
            finally { foreach (var p in prepared) p.Dispose(); }
        }
        finally { foreach (var m in mats) m.Dispose(); }
    }

    /// <summary>The case's prompt (the chat template's rendering) with its images spliced in.</summary>
    public static MultimodalPrompt Prompt(Engine e, QwenCase c, IReadOnlyList<EncodedImage> images, int markerId) =>
        MultimodalPrompt.Build(e.Tokenizer.Encode(c.PromptText), markerId, images);

    /// <summary>
    /// HF's get_rope_index, written out independently of the family: text counts up; a vision block
    /// (the pad run after a vision_start) at p takes (p + τ(t), p + row, p + col) on the merged grid;
    /// text after it resumes at its max + 1. Returns [3][T] and rope_deltas.
    /// </summary>
    public static (long[][] Positions, long Deltas) RopeIndex(IReadOnlyList<long> ids, Qwen2VlConfig cfg, IReadOnlyList<int[]> grids, double secondsPerGrid = 0)
    {
        var pos = new[] { new long[ids.Count], new long[ids.Count], new long[ids.Count] };
        long next = 0;
        int g = 0, m = cfg.Vision.SpatialMergeSize;
        for (int i = 0; i < ids.Count;)
        {
            if (ids[i] != cfg.ImageTokenId && ids[i] != cfg.VideoTokenId) { for (int k = 0; k < 3; k++) pos[k][i] = next; next++; i++; continue; }
            var (t, h, w) = (grids[g][0], grids[g][1] / m, grids[g][2] / m);
            bool video = ids[i] == cfg.VideoTokenId;
            g++;
            long max = next;
            for (int a = 0; a < t; a++)
                for (int r = 0; r < h; r++)
                    for (int col = 0; col < w; col++, i++)
                    {
                        long tt = cfg.IsQwen25 ? (long)((float)a * (float)(video ? secondsPerGrid : 0) * (float)cfg.Vision.TokensPerSecond) : a;
                        (pos[0][i], pos[1][i], pos[2][i]) = (next + tt, next + r, next + col);
                        max = Math.Max(max, Math.Max(pos[0][i], Math.Max(pos[1][i], pos[2][i])));
                    }
            next = max + 1;
        }
        return (pos, next - ids.Count);
    }

    public static double RelDiff(Tensor a, Tensor b) =>
        (a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max().item<double>() / b.to_type(ScalarType.Float64).abs().max().item<double>();
}

public sealed class Qwen2VlTests(ITestOutputHelper output)
{
    [Fact]
    public void MaxPixels_SetsAFramesVisualTokens_AsHfsProcessorArgumentDoes()
    {
        // The fixture's processor bounds an image to 12,544 pixels (16 merged 28×28 blocks). The
        // user's bound replaces it either way, as max_pixels passed to HF's processor does.
        using var frame = new Mat(240, 320, MatType.CV_8UC3);
        Cv2.Randu(frame, OpenCvSharp.Scalar.All(0), OpenCvSharp.Scalar.All(255));
        int Tokens(long? max)
        {
            using var e = Engine.Load(QwenFixtures.Folder("qwen2_vl"), new EngineOptions { MaxPixels = max });
            using var _ = torch.inference_mode();
            var (emb, _, spans, _) = new Captioner(e).EmbedPrompt(new[] { frame }, null);
            emb.Dispose();
            return spans.Sum(v => v.Length);
        }
        int own = Tokens(null), fewer = Tokens(56 * 56), more = Tokens(28 * 28 * 64);
        output.WriteLine($"visual tokens: {own} (the processor's bound), {fewer} (56×56), {more} (64 blocks)");
        Assert.InRange(own, 9, 16);
        Assert.InRange(fewer, 1, 4);
        Assert.InRange(more, own + 1, 64);
        Assert.Contains("at least 3136", Assert.Throws<UserError>(() => Engine.Load(QwenFixtures.Folder("qwen2_vl"), new EngineOptions { MaxPixels = 3135 })).Message);
        // A family that resizes every image to one size has no such bound: said, not ignored.
        var llava = Assert.Throws<UserError>(() => Engine.Load(RealtimeAssistant.Tests.App.AppTestSupport.TinyModel, new EngineOptions { MaxPixels = 50_000 }));
        Assert.Contains("--max-pixels", llava.Message);
        Assert.Contains("qwen2_vl", llava.Message);
    }

    public static readonly TheoryData<string, string> Cases = new()
    {
        { "qwen2_vl", "image_landscape" }, { "qwen2_vl", "image_wide" }, { "qwen2_vl", "two_images" }, { "qwen2_vl", "video" },
        { "qwen2_vl_tied", "image_landscape" },
        { "qwen2_5_vl", "image_landscape" }, { "qwen2_5_vl", "image_wide" }, { "qwen2_5_vl", "two_images" }, { "qwen2_5_vl", "video" },
    };

    [Theory]
    [InlineData("qwen2_vl", false, 2)]
    [InlineData("qwen2_vl_tied", true, 2)]
    [InlineData("qwen2_5_vl", false, 3)]
    public void FixtureCheckpointsLoadWithEveryTensorMatched(string family, bool tied, int depth)
    {
        using var e = QwenFixtures.Load(family);
        var q = Assert.IsType<Qwen2VlFamily>(e.Model);
        Assert.Equal(family.StartsWith("qwen2_5") ? "qwen2_5_vl" : "qwen2_vl", e.Model.ModelType);
        Assert.Equal(tied, q.Language.lm_head is null);
        Assert.Equal(depth, q.Model.visual.blocks.Count);
        Assert.Equal(new[] { 2, 3, 3 }, e.Text.MropeSection);
        Assert.Equal("<|image_pad|>", e.Model.ImageMarker);
        Assert.Equal("<|vision_start|><|image_pad|><|vision_end|>", e.Model.ImageSnippet);
        // Every module parameter was read, and every checkpoint tensor used: the counts agree.
        var file = SafeTensorsReader.Open(QwenFixtures.Folder(family));
        Assert.Equal(file.Tensors.Values.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)), q.Model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void AMissingOrExtraTensorIsOneLineNamingIt()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(QwenFixtures.Folder("qwen2_vl"))) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var weights = SafeTensorsReader.Open(dir.Path);
        var tensors = weights.Tensors.Keys.Where(k => k != "visual.merger.ln_q.bias").Select(k => (k == "model.norm.weight" ? "model.norm.gain" : k, weights.Load(k))).ToList();
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"), tensors);
        var err = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
        Assert.Contains("missing tensors: ", err.Message);
        Assert.Contains("visual.merger.ln_q.bias", err.Message);
        Assert.Contains("unexpected tensors: model.norm.gain", err.Message);
        Assert.DoesNotContain('\n', err.Message);
    }

    [Fact]
    public void TheNewerNamingGenerationAndANestedTextConfigLoadTheSameModel()
    {
        // transformers ≥ 4.52 saves model.language_model.* / model.visual.* and nests text_config with rope_parameters.
        using var dir = new TempDir();
        var src = QwenFixtures.Folder("qwen2_5_vl");
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var weights = SafeTensorsReader.Open(src);
        string Newer(string n) => n.StartsWith("visual.") ? "model." + n : n.StartsWith("model.") ? "model.language_model." + n["model.".Length..] : n;
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"), weights.Tensors.Keys.Select(k => (Newer(k), weights.Load(k))).ToList());
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        var text = new JsonObject { ["model_type"] = "qwen2_5_vl_text" };
        foreach (var key in new[] { "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "vocab_size", "max_position_embeddings", "hidden_act" })
        {
            text[key] = root[key]!.DeepClone();
            root.Remove(key);
        }
        text["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = root["rope_theta"]!.DeepClone(), ["mrope_section"] = new JsonArray(2, 3, 3) };
        root.Remove("rope_theta"); root.Remove("rope_scaling");
        root["text_config"] = text;
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), root.ToJsonString());

        using var a = QwenFixtures.Load("qwen2_5_vl");
        using var b = Engine.Load(dir.Path, new EngineOptions { Device = "cpu" });
        Assert.Equal((a.Text.HiddenSize, a.Text.NumHiddenLayers, a.Text.NumKeyValueHeads, a.Text.RopeTheta, a.Text.QkvBias, a.Text.TieWordEmbeddings),
            (b.Text.HiddenSize, b.Text.NumHiddenLayers, b.Text.NumKeyValueHeads, b.Text.RopeTheta, b.Text.QkvBias, b.Text.TieWordEmbeddings));
        Assert.Equal(a.Text.MropeSection, b.Text.MropeSection);
        var ids = torch.tensor(new long[] { 297, 115, 121, 299, 300, 10 }).view(1, -1);
        Tensor Logits(Engine e) => e.Language.Logits(e.Decoder.Forward(e.Decoder.embed_tokens.forward(ids), new DecoderStep { Positions = PositionIds.Range(0, 6) }));
        using var _ = torch.inference_mode();
        Assert.True(Logits(a).allclose(Logits(b), 0, 0));
        Assert.True(((Qwen2VlFamily)a.Model).Model.visual.merger.ln_q.parameters().First().allclose(((Qwen2VlFamily)b.Model).Model.visual.merger.ln_q.parameters().First(), 0, 0));
    }

    [Theory]
    [InlineData("{\"model_type\": \"qwen2_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"vision_config\": {\"hidden_size\": 32}}", "mrope_section")]
    [InlineData("{\"model_type\": \"qwen2_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"rope_scaling\": {\"mrope_section\": [2, 3, 3]}, \"vision_config\": {\"hidden_size\": 48}}", "merger outputs 48")]
    [InlineData("{\"model_type\": \"qwen2_5_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"rope_scaling\": {\"mrope_section\": [2, 3, 3]}, \"vision_config\": {\"out_hidden_size\": 32, \"depth\": 2, \"fullatt_block_indexes\": [2]}}", "fullatt_block_indexes")]
    [InlineData("{\"model_type\": \"qwen2_5_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"rope_scaling\": {\"mrope_section\": [2, 3, 3]}, \"vision_config\": {\"out_hidden_size\": 32, \"window_size\": 50}}", "window_size 50")]
    [InlineData("{\"model_type\": \"qwen2_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"rope_scaling\": {\"mrope_section\": \"2,3,3\"}, \"vision_config\": {\"hidden_size\": 32}}", "mrope_section")]
    [InlineData("{\"model_type\": \"qwen2_vl\", \"hidden_size\": 32, \"num_attention_heads\": 2, \"rope_scaling\": {\"mrope_section\": [2, 3, 3]}, \"vision_config\": {\"hidden_size\": 32, \"depth\": \"two\"}}", "depth")]
    public void ConfigMistakesAreOneLineErrors(string json, string names)
    {
        var e = Assert.Throws<UserError>(() => Qwen2VlConfig.Parse(JsonNode.Parse(json)!, "config.json"));
        Assert.Contains(names, e.Message);
    }

    [Theory]
    // landscape 53×37: round → 56×28 = 1568 < min 3136, so up: β = √(3136/1961), ceil(37β/28)·28 = 56, ceil(53β/28)·28 = 84.
    [InlineData(37, 53, 56, 84)]
    // wide 150×100: round → 112×140 = 15680 > max 12544, so down: β = √(15000/12544), floor(100/β/28)·28 = 84, floor(150/β/28)·28 = 112.
    [InlineData(100, 150, 84, 112)]
    [InlineData(61, 30, 84, 56)] // portrait: up
    [InlineData(30, 40, 56, 84)] // the video frames: up
    [InlineData(70, 98, 56, 112)] // 2.5 and 3.5 factors: Python's round takes halves to even (56 = 2·28, 112 = 4·28); 6272 is within bounds
    public void SmartResizeFollowsHfArithmetic(int h, int w, int eh, int ew) =>
        Assert.Equal((eh, ew), Qwen2VlImageProcessor.SmartResize(h, w, 28, 3136, 12544));

    [Fact]
    public void SmartResizeRefusesImagesSmallerThanAPatchBlock() =>
        Assert.Throws<UserError>(() => Qwen2VlImageProcessor.SmartResize(20, 400, 28, 3136, 12544));

    [Fact]
    public void PatchRowsAreChannelFrameYXInTwoByTwoMergeBlockOrder()
    {
        // 56×56 (4×4 patches of 14, 2×2 merged tokens), raw bytes: R = x, G = y, B = 7.
        var cfg = new Qwen2VlProcessorConfig { DoRescale = false, DoNormalize = false, MinPixels = 56 * 56, MaxPixels = 56 * 56 };
        using var pre = new Qwen2VlImageProcessor(cfg, torch.CPU, ScalarType.Float32);
        using var img = new Mat(56, 56, MatType.CV_8UC3);
        for (int y = 0; y < 56; y++) for (int x = 0; x < 56; x++) img.Set(y, x, new Vec3b(7, (byte)y, (byte)x)); // BGR
        var (rows, grid) = pre.Process(new[] { img });
        Assert.Equal(new GridThw(1, 4, 4), grid);
        Assert.Equal(new long[] { 16, 3 * 2 * 14 * 14 }, rows.shape);
        float At(int row, int c, int t, int y, int x) => rows[row, c * 392 + t * 196 + y * 14 + x].item<float>();
        // Rows 0..3 are the first merged token's patches (0,0), (0,1), (1,0), (1,1); row 4 starts the next block, patch (0,2).
        Assert.Equal(0, At(0, 0, 0, 0, 0));
        Assert.Equal(14, At(1, 0, 0, 0, 0));
        Assert.Equal(14 + 3, At(2, 1, 1, 3, 5)); // G = y of patch row 1, frame 1 (the still image repeated)
        Assert.Equal(14 + 5, At(3, 0, 0, 3, 5));
        Assert.Equal(28, At(4, 0, 0, 0, 0));
        Assert.Equal(42 + 13, At(5, 0, 0, 0, 13)); // block (0,1): patches (0,2), (0,3), (1,2), (1,3)
        Assert.Equal(28 + 13, At(8, 1, 0, 13, 0)); // block (1,0) starts with patch (2,0)
        Assert.Equal(14 + 13, At(9, 0, 1, 13, 13)); // …then (2,1)
        Assert.Equal(7, At(15, 2, 0, 13, 13));
    }

    [Theory]
    [InlineData(new[] { 7 })]
    [InlineData(new[] { 4, 4, 4 })]
    [InlineData(new[] { 16, 4, 16, 4, 1, 16 })] // lengths interleaved: the batches gather rows from all over
    public void AttentionSegments_AttendWithinEachSegment_AsABlockDiagonalMaskDoes(int[] lengths)
    {
        torch.manual_seed(lengths.Length);
        int s = lengths.Sum();
        var (q, k, v) = (torch.randn(3, s, 8), torch.randn(3, s, 8), torch.randn(3, s, 8));
        var ids = torch.repeat_interleave(torch.arange(lengths.Length), torch.tensor(lengths.Select(l => (long)l).ToArray()));
        var mask = ids.unsqueeze(1) == ids.unsqueeze(0);
        var expected = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), mask)[0];
        using var segments = AttentionSegments.Of(lengths, CPU);
        var got = segments.Attend(q, k, v);
        Assert.Equal(expected.shape, got.shape);
        Assert.True((got - expected).abs().max().item<float>() < 1e-5, $"max diff {(got - expected).abs().max().item<float>()}");
        // A row's output moves with its own segment's values only.
        var vMoved = v.clone();
        vMoved.narrow(1, 0, lengths[0]).add_(100);
        var moved = segments.Attend(q, k, vMoved);
        Assert.True((moved.narrow(1, 0, lengths[0]) - got.narrow(1, 0, lengths[0])).abs().min().item<float>() > 1);
        if (lengths.Length > 1)
        {
            Tensor Rest(Tensor t) => t.narrow(1, lengths[0], s - lengths[0]);
            Assert.True((Rest(moved) - Rest(got)).abs().max().item<float>() < 1e-5);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PixelValuesMatchHfsProcessor(string family, string name)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, name);
        var q = (Qwen2VlFamily)e.Model;
        var mats = c.Images();
        var prepared = c.IsVideo ? new List<Qwen2VlFamily.Prepared> { q.PrepareVideo(mats) }
            : mats.Select(m => (Qwen2VlFamily.Prepared)q.Prepare(m, ImageUse.Still)).ToList();
        try
        {
            Assert.Equal(c.Grids, prepared.Select(p => new[] { p.Grid.T, p.Grid.H, p.Grid.W }).ToArray());
            var rows = torch.cat(prepared.Select(p => p.Rows).ToArray(), 0).to_type(ScalarType.Float64);
            var shape = c.Pixels["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            Assert.Equal(shape, rows.shape);
            if (c.Has("pixel_values"))
            {
                // Stored whole: PIL's resize reproduced bit for bit leaves only float32 rounding.
                var hf = c.Tensor("pixel_values").to_type(ScalarType.Float64);
                Assert.True((rows - hf).abs().max().item<double>() < 1e-6, $"max diff {(rows - hf).abs().max().item<double>()}");
            }
            var sums = c.Pixels["row_sums"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            var ours = rows.sum(1);
            for (int i = 0; i < sums.Length; i++) Assert.True(Math.Abs(ours[i].item<double>() - sums[i]) < 1e-3, $"row {i}: {ours[i].item<double>()} vs {sums[i]}");
            Assert.Equal(c.Pixels["abs_sum"]!.GetValue<double>(), rows.abs().sum().item<double>(), 2);
        }
        finally { foreach (var p in prepared) p.Dispose(); foreach (var m in mats) m.Dispose(); }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void VisionOutputMatchesHf(string family, string name)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, name);
        var (images, _) = QwenFixtures.Encode(e, c);
        var ours = torch.cat(images.Select(i => i.Features).ToArray(), 0);
        var hf = c.Tensor("vision_output");
        Assert.Equal(hf.shape, ours.shape);
        double rel = QwenFixtures.RelDiff(ours, hf);
        output.WriteLine($"vision output: max |ours − HF| / max |HF| = {rel:E2}");
        Assert.True(rel < 1e-5, $"relative diff {rel}");
        foreach (var i in images) i.Dispose();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptIdsAndMropePositionsMatchHf(string family, string name)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, name);
        var (images, marker) = QwenFixtures.Encode(e, c);
        var prompt = QwenFixtures.Prompt(e, c, images, marker);
        Assert.Equal(c.InputIds, prompt.Ids);
        Assert.Equal(c.Mrope[0], prompt.Positions.T);
        Assert.Equal(c.Mrope[1], prompt.Positions.H);
        Assert.Equal(c.Mrope[2], prompt.Positions.W);
        Assert.Equal(c.RopeDeltas, prompt.NextPosition - prompt.Length);
        // The test's own get_rope_index agrees (it is the reference the streaming tests use).
        var cfg = ((Qwen2VlFamily)e.Model).Config;
        var (pos, deltas) = QwenFixtures.RopeIndex(c.InputIds, cfg, c.Grids, c.IsVideo ? 1.0 : 0);
        Assert.Equal(c.Mrope, pos);
        Assert.Equal(c.RopeDeltas, deltas);
        foreach (var i in images) i.Dispose();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAndGreedyTokensMatchHf(string family, string name)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, name);
        var (images, marker) = QwenFixtures.Encode(e, c);
        var prompt = QwenFixtures.Prompt(e, c, images, marker);
        using var _ = torch.inference_mode();
        var embeds = prompt.Embed(e.Language);
        var merged = embeds[0].index_select(0, torch.tensor(prompt.FeatureSlots));
        Assert.True(QwenFixtures.RelDiff(merged, c.Tensor("merged_image_embeds")) < 1e-5);
        // Full forward: the last three positions' logits.
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        var h = e.Decoder.Forward(embeds, new DecoderStep { Positions = prompt.Positions, Cache = cache });
        var logits = e.Language.Logits(h[0].narrow(0, prompt.Length - 3, 3));
        double rel = QwenFixtures.RelDiff(logits, c.Tensor("logits_last"));
        Assert.True(rel < 1e-5, $"logits relative diff {rel}");
        double worstStep = 0;
        // Greedy decoding with the KV cache: generated tokens continue at NextPosition (HF: seq_len + k + rope_deltas).
        var stepLogits = c.Tensor("step_logits");
        var current = logits[2];
        var tokens = new List<int>();
        long next = prompt.NextPosition;
        for (int k = 0; k < 8; k++)
        {
            double r = QwenFixtures.RelDiff(current, stepLogits[k]);
            worstStep = Math.Max(worstStep, r);
            Assert.True(r < 1e-5, $"step {k}: relative diff {r}");
            int id = (int)current.argmax().item<long>();
            // A step whose top-2 margin is within float noise may flip: then follow HF's token.
            if (c.Margins[k] > 1e-3) Assert.Equal(c.GreedyTokens[k], id);
            tokens.Add(c.GreedyTokens[k]);
            var step = e.Decoder.Forward(e.Decoder.embed_tokens.forward(torch.tensor(new long[] { c.GreedyTokens[k] }).view(1, 1)),
                new DecoderStep { Positions = new[] { next++ }, Cache = cache });
            current = e.Language.Logits(step[0, -1]);
        }
        Assert.Equal(c.GreedyTokens, tokens);
        output.WriteLine($"merged embeds {QwenFixtures.RelDiff(merged, c.Tensor("merged_image_embeds")):E2}, last-3 logits {rel:E2}, cached step logits (worst of 8) {worstStep:E2}");
        foreach (var i in images) i.Dispose();
    }

    [Theory]
    [InlineData("qwen2_vl")]
    [InlineData("qwen2_5_vl")]
    public void KvCacheDecodingEqualsAFullForward(string family)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, "two_images");
        var (images, marker) = QwenFixtures.Encode(e, c);
        var prompt = QwenFixtures.Prompt(e, c, images, marker);
        using var _ = torch.inference_mode();
        var tokens = new long[] { 211, 213, 149, 75, 134 };
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        var stepped = new List<Tensor> { e.Language.Logits(e.Decoder.Forward(prompt.Embed(e.Language), new DecoderStep { Positions = prompt.Positions, Cache = cache })[0, -1]) };
        for (int k = 0; k < tokens.Length - 1; k++)
            stepped.Add(e.Language.Logits(e.Decoder.Forward(e.Decoder.embed_tokens.forward(torch.tensor(new[] { tokens[k] }).view(1, 1)),
                new DecoderStep { Positions = new[] { prompt.NextPosition + k }, Cache = cache })[0, -1]));
        // One forward over prompt + tokens: the tokens are text at NextPosition, NextPosition + 1, …
        var all = torch.cat(new[] { prompt.Embed(e.Language), e.Decoder.embed_tokens.forward(torch.tensor(tokens[..^1]).view(1, -1)) }, 1);
        var positions = PositionIds.Concat(prompt.Positions, PositionIds.Range(prompt.NextPosition, tokens.Length - 1));
        var full = e.Language.Logits(e.Decoder.Forward(all, new DecoderStep { Positions = positions })[0]);
        for (int k = 0; k < stepped.Count; k++)
            Assert.True(QwenFixtures.RelDiff(stepped[k], full[prompt.Length - 1 + k]) < 1e-5, $"step {k}");
        foreach (var i in images) i.Dispose();
    }

    [Fact]
    public void AConfigThatDoesNotDescribeTheWeightsIsRefusedBeforeAllocating()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(QwenFixtures.Folder("qwen2_vl"))) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var path = Path.Combine(dir.Path, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!;
        cfg["vision_config"]!["depth"] = 2_000_000_000;
        File.WriteAllText(path, cfg.ToJsonString());
        Assert.Contains("2000000000 vision blocks, the checkpoint holds 2 and 2", Assert.Throws<UserError>(() => Engine.Load(dir.Path)).Message);
        cfg["vision_config"]!["depth"] = 2;
        cfg["vision_config"]!["embed_dim"] = 1 << 20;
        cfg["vision_config"]!["num_heads"] = 1 << 14;
        File.WriteAllText(path, cfg.ToJsonString());
        Assert.Contains("visual.patch_embed.proj.weight is [16, 3, 2, 14, 14]", Assert.Throws<UserError>(() => Engine.Load(dir.Path)).Message);
    }

    [Fact]
    public void FuzzedConfigsAreReadOrRefusedInOneLine()
    {
        // Seeded mutations of the fixtures' config.json and preprocessor_config.json: every input is
        // either read or refused with a UserError, never another exception.
        var rng = new Random(2020);
        JsonNode?[] values = { null, "x", -1, 0, 1, 2, 3, 14, 1e12, 3.5, -0.5, true, new JsonArray(), new JsonObject(), new JsonArray(1, "a"), int.MaxValue, long.MaxValue, 1e308 };
        foreach (var family in new[] { "qwen2_vl", "qwen2_5_vl" })
        {
            var config = File.ReadAllText(Path.Combine(QwenFixtures.Folder(family), "config.json"));
            var pre = File.ReadAllText(Path.Combine(QwenFixtures.Folder(family), "preprocessor_config.json"));
            int read = 0;
            for (int i = 0; i < 2000; i++)
            {
                var c = JsonNode.Parse(config)!;
                var p = JsonNode.Parse(pre)!;
                for (int m = rng.Next(1, 4); m > 0; m--)
                {
                    if ((rng.Next(4) switch { 0 => c, 1 => c["vision_config"], 2 => c["rope_scaling"], _ => p }) is not JsonObject target) continue;
                    var keys = target.Select(kv => kv.Key).ToList();
                    if (keys.Count == 0) continue;
                    var v = values[rng.Next(values.Length)];
                    target[keys[rng.Next(keys.Count)]] = v?.DeepClone();
                }
                try
                {
                    var parsed = Qwen2VlConfig.Parse(c, "config.json");
                    Qwen2VlProcessorConfig.Parse(p, new Qwen2VlProcessorConfig(), parsed.Vision, "preprocessor_config.json");
                    read++;
                }
                catch (UserError e) { Assert.DoesNotContain('\n', e.Message); }
            }
            Assert.InRange(read, 1, 1999); // both outcomes occur
        }
    }

    [Fact]
    public void FuzzedImageSizesResizeToWholeBlocksWithinBoundsOrAreRefused()
    {
        var rng = new Random(7);
        for (int i = 0; i < 5000; i++)
        {
            int h = rng.Next(1, 5000), w = rng.Next(1, 5000);
            long min = rng.Next(1, 200_000), max = min + rng.Next(0, 2_000_000);
            try
            {
                var (rh, rw) = Qwen2VlImageProcessor.SmartResize(h, w, 28, min, max);
                Assert.True(rh % 28 == 0 && rw % 28 == 0 && rh >= 28 && rw >= 28, $"{h}×{w} → {rh}×{rw}");
                // Within max_pixels, except where HF's upscale branch rounds both sides up past it.
                long rounded = (long)Math.Round(h / 28.0, MidpointRounding.ToEven) * 28 * (long)Math.Round(w / 28.0, MidpointRounding.ToEven) * 28;
                if (rounded >= min) Assert.True((long)rh * rw <= max, $"{h}×{w} → {rh}×{rw} over max {max}");
                else Assert.True((long)rh * rw >= min, $"{h}×{w} → {rh}×{rw} under min {min}");
            }
            catch (UserError) { }
        }
    }
}
