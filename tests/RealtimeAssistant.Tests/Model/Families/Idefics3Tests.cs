using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Families.Idefics3;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
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
        Assert.Equal(ids.Length, e.Model.RunLength(img, ImageUse.Still));
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

    [Fact]
    public void VideoFrames_AreSmolVlm2sVideoPath_OneUnsplitTileEach()
    {
        // HF 4.50: each sampled frame's longest edge to video_size (32 here), then squashed to one tile, never split.
        using var e = Load("smolvlm");
        var c = Fixture.Case("smolvlm", "video");
        var hf = c["processor_inputs"]!["pixel_values"]!;
        var sums = Fixture.Doubles(hf["row_sums"]!);
        double abs = 0;
        int i = 0;
        foreach (var f in c["video_frames"]!.AsArray())
        {
            using var img = Fixture.Image((string)f!);
            using var prepared = e.Model.Prepare(img, ImageUse.VideoFrame);
            var px = Pixels(prepared).to_type(ScalarType.Float64);
            Assert.Equal(new long[] { 1, 3, 32, 32 }, px.shape);
            Assert.Equal(sums[i++], px.sum().item<double>(), 6);
            abs += px.abs().sum().item<double>();
        }
        Assert.Equal((double)hf["abs_sum"]!, abs, 4);
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "smolvlm", "image_landscape" }, { "smolvlm", "image_portrait" }, { "smolvlm", "video" },
        { "idefics3", "image_landscape" }, { "idefics3", "image_portrait" },
    };

    /// <summary>The case's prompt (the chat template's text, as the fixture recorded it) with its images or frames spliced in.</summary>
    static MultimodalPrompt Prompt(Engine e, JsonNode c)
    {
        bool video = c["video_frames"] is JsonArray;
        var files = (video ? c["video_frames"]! : c["images"]!).AsArray().Select(f => (string)f!).ToList();
        var encoded = files.Select(f =>
        {
            using var img = Fixture.Image(f);
            return e.Model.EncodeOne(img, video ? ImageUse.VideoFrame : ImageUse.Still);
        }).ToList();
        return MultimodalPrompt.Build(e.Tokenizer.Encode((string)c["prompt_text"]!), e.ImageMarkerId, encoded);
    }

    static double MaxDiff(Tensor a, Tensor b) => (a.to_type(ScalarType.Float32) - b.to_type(ScalarType.Float32)).abs().max().item<float>();

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptLayout_ImageFeatures_AndLogits_AreHfs(string family, string name)
    {
        using var e = Load(family);
        var c = Fixture.Case(family, name);
        using var _ = torch.inference_mode();
        var block = Prompt(e, c);
        // Each marker became HF's run: row/column and <global-img> markers, newlines, image_seq_len image tokens a tile.
        Assert.Equal(Fixture.Longs(c["input_ids"]!), block.Ids);
        Assert.Equal((int)c["n_image_tokens"]!, block.FeatureSlots.Length);
        var embeds = block.Embed(e.Language);
        var features = embeds[0].index_select(0, torch.tensor(block.FeatureSlots));
        double fd = MaxDiff(features, Fixture.Tensor(family, $"{name}.merged_image_embeds"));
        var hidden = e.Decoder.Forward(embeds, new DecoderStep { Positions = block.Positions });
        var logits = e.Language.Logits(hidden[0, ^3..]);
        var hfLogits = Fixture.Tensor(family, $"{name}.logits_last");
        double ld = MaxDiff(logits, hfLogits);
        _out.WriteLine($"{family}/{name}: features max |Δ| {fd:g3} (max |x| {features.abs().max().item<float>():g3}), last-3 logits max |Δ| {ld:g3} (max |x| {hfLogits.abs().max().item<float>():g3})");
        Assert.True(fd < 1e-5, $"image features differ by {fd}");
        Assert.True(ld < 1e-4, $"logits differ by {ld}");
        // One visual span per tile run (the row/column markers split them), in prompt order.
        int tiles = c["video_frames"] is JsonArray ? 4 : (int)c["rows"]![0]! * (int)c["cols"]![0]! + 1;
        Assert.Equal(tiles, block.Spans.Count);
        Assert.All(block.Spans, s => Assert.Equal((int)Fixture.Expected(family)["image_seq_len"]!, s.Length));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyDecodingWithTheKvCache_IsHfs_AndEqualsOneFullForward(string family, string name)
    {
        using var e = Load(family);
        var c = Fixture.Case(family, name);
        using var _ = torch.inference_mode();
        var block = Prompt(e, c);
        var hfTokens = Fixture.Longs(c["greedy_tokens"]!);
        var margins = Fixture.Doubles(c["greedy_top2_margins"]!);
        var hfSteps = Fixture.Tensor(family, $"{name}.step_logits");
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        var embeds = block.Embed(e.Language);
        var logits = e.Language.Logits(e.Decoder.Forward(embeds, new DecoderStep { Positions = block.Positions, Cache = cache })[0, -1]);
        var tokens = new List<long>();
        var steps = new List<Tensor>();
        for (int k = 0; k < hfTokens.Length; k++)
        {
            steps.Add(logits);
            long id = logits.argmax().item<long>();
            tokens.Add(id);
            var x = e.Decoder.embed_tokens.forward(torch.tensor(new[] { id }).view(1, 1));
            logits = e.Language.Logits(e.Decoder.Forward(x, new DecoderStep { Positions = new[] { block.NextPosition + k }, Cache = cache })[0, -1]);
        }
        var ours = torch.stack(steps.ToArray());
        double sd = MaxDiff(ours, hfSteps);
        _out.WriteLine($"{family}/{name}: tokens {string.Join(",", tokens)} (HF {string.Join(",", hfTokens)}), step logits max |Δ| {sd:g3}, smallest HF margin {margins.Min():g3}");
        Assert.True(sd < 1e-4, $"step logits differ by {sd}");
        Assert.Equal(hfTokens, tokens); // every margin in these cases is far above the logit difference
        // The cached steps equal one forward over the prompt and the generated tokens.
        var all = torch.cat(new[] { embeds, e.Decoder.embed_tokens.forward(torch.tensor(tokens.Take(tokens.Count - 1).ToArray()).view(1, -1)) }, 1);
        var full = e.Language.Logits(e.Decoder.Forward(all, new DecoderStep { Positions = PositionIds.Range(0, (int)all.shape[1]) })[0]);
        double cd = MaxDiff(full[((int)block.NextPosition - 1)..], ours);
        _out.WriteLine($"cache vs full forward max |Δ| {cd:g3}");
        Assert.True(cd < 1e-4, $"cached decoding differs from the full forward by {cd}");
    }

    /// <summary>SmolVLM2's chat format for one image (its template's rendering), as a checkpoint's default prompt.</summary>
    const string ChatPrompt = "<|im_start|>User:<image>Describe the image briefly.<end_of_utterance>\nAssistant:";

    /// <summary>A copy of a fixture folder with extra config.json keys (our ra_* layout keys).</summary>
    static TempDir FixtureCopy(string family, JsonObject extra)
    {
        var dir = new TempDir();
        foreach (var f in Directory.GetFiles(Fixture.Dir(family))) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!.AsObject();
        foreach (var (k, v) in extra) cfg[k] = v?.DeepClone();
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        return dir;
    }

    static List<EncodedImage> VideoFrames(Engine e) =>
        Fixture.Case("smolvlm", "video")["video_frames"]!.AsArray().Select(f =>
        {
            using var img = Fixture.Image((string)f!);
            return e.Model.EncodeOne(img, ImageUse.VideoFrame);
        }).ToList();

    static int[] Ids(IEnumerable<TokenEvent> events) => events.Where(t => t.Id >= 0).Select(t => t.Id).ToArray();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GpeSessionOverVideoFrames_EqualsOneBatchForward(bool groupPositions)
    {
        using var dir = FixtureCopy("smolvlm", new JsonObject { ["ra_default_prompt"] = ChatPrompt, ["ra_group_positions"] = groupPositions });
        using var e = Engine.Load(dir.Path);
        var tok = e.Tokenizer;
        var frames = VideoFrames(e);
        // The stream's layout: the prompt up to the image, then per frame its global run and a newline
        // (SmolVLM2's video prompt), then the question and the answer's prompt.
        var format = StreamFormat.For(e);
        var prefix = tok.Encode("<|im_start|>User:");
        var write = tok.Encode("Describe what is happening in the video briefly.<end_of_utterance>\nAssistant:", false);
        Assert.Equal(prefix, format.Prefix);
        Assert.Equal(tok.Encode("<image>\n", false), format.Frame);
        Assert.Equal(write, format.Write(null));
        Assert.Equal(frames[0].TokenIds, Family(e).Layout(0, 0).Ids);

        var options = new StreamingOptions { WindowFrames = 8, Generation = new GenerationOptions { MaxNewTokens = 6, StopTokens = Array.Empty<int>() } };
        using var session = new GpeSession(e, options);
        foreach (var f in frames.Take(3)) session.Read(f.Clone());
        var first = Ids(session.Write());
        Assert.Equal(6, first.Length);
        Assert.Equal(Reference(frames.Take(3).ToList(), first), first);
        // The next frame never sees the first write's question or caption.
        session.Read(frames[3].Clone());
        var second = Ids(session.Write());
        Assert.Equal(Reference(frames, second), second);

        // One forward over [prefix, frames, question, caption]: the source at 0, 1, …; the caption
        // right after the question, or (group positions) from φ = 0 past the first frame's position.
        int[] Reference(List<EncodedImage> fs, int[] caption)
        {
            var ids = new List<int>(prefix);
            foreach (var _ in fs) { ids.Add(e.ImageMarkerId); ids.AddRange(tok.Encode("\n", false)); }
            ids.AddRange(write);
            ids.AddRange(caption[..^1]);
            using var __ = torch.inference_mode();
            var block = MultimodalPrompt.Build(ids, e.ImageMarkerId, fs);
            int source = block.Length - (caption.Length - 1);
            var t = block.Positions.T.Select((p, i) => i < source || !groupPositions ? p : prefix.Count + (i - source)).ToArray();
            var logits = e.Language.Logits(e.Decoder.Forward(block.Embed(e.Language), new DecoderStep { Positions = t })[0]);
            return Enumerable.Range(source - 1, caption.Length).Select(i => (int)logits[i].argmax().item<long>()).ToArray();
        }
    }

    [Fact]
    public void PruningOff_IsTheEngine_AndVisiPrunerCutsTiles_KeepingOriginalPositions()
    {
        using var e = Load("smolvlm");
        using var _ = torch.inference_mode();
        var block = Prompt(e, Fixture.Case("smolvlm", "image_landscape"));
        var embeds = block.Embed(e.Language);
        int layers = e.Text.NumHiddenLayers, T = block.Length;
        // The visual spans are the tile runs: 9 tiles and the global image, 4 tokens each, all image 0.
        Assert.Equal(10, block.Spans.Count);
        Assert.All(block.Spans, s => Assert.Equal(0, s.Frame));
        Assert.Equal(block.FeatureSlots, block.Spans.SelectMany(s => Enumerable.Range(s.Start, s.Length)).Select(i => (long)i));

        using var engineCache = new KvCache(layers);
        using var prunedCache = new KvCache(layers);
        var engine = e.Decoder.Forward(embeds, new DecoderStep { Positions = block.Positions, Cache = engineCache });
        using (var off = PrunedPrefill.Run(e.Language, embeds, block.Positions, block.Spans, new NonePruner(), prunedCache))
        {
            Assert.Equal(0f, (engine - off.Hidden).abs().max().item<float>());
            for (int l = 0; l < layers; l++) Assert.True(engineCache.Layers[l].Source.Keys.equal(prunedCache.Layers[l].Source.Keys).all().item<bool>());
        }

        // Filter at layer 0 keeping at most 3 visual tokens (the whole image is one frame): layer 1 holds the text and those 3.
        var config = new PruningConfig { ShallowLayers = 0, FilterFrom = 0, Budget = 3, DeadlineLayer = 0, LayerThreshold = 1.0 };
        using var cache = new KvCache(layers);
        using var r = PrunedPrefill.Run(e.Language, embeds, block.Positions, block.Spans, config.CreatePruner(layers), cache);
        Assert.Equal(0, r.Report.FilterLayer);
        Assert.InRange(r.Report.KeptTokens, 1, 3);
        Assert.Subset(block.FeatureSlots.ToHashSet(), r.Report.KeptVisual.ToHashSet());
        Assert.Equal(Enumerable.Range(0, T).Select(i => (long)i), cache.Layers[0].Source.Positions.ToArray());
        var rows = Enumerable.Range(0, T).Where(i => !block.FeatureSlots.Contains(i) || r.Report.KeptVisual.Contains(i)).ToArray();
        Assert.Equal(rows.Select(i => block.Positions.T[i]), cache.Layers[1].Source.Positions.ToArray()); // original, non-contiguous positions
        // Decoding goes on after the prompt's last position, not after the shorter cache.
        var x = e.Decoder.embed_tokens.forward(torch.tensor(new long[] { 14 }).view(1, 1));
        e.Decoder.Forward(x, new DecoderStep { Positions = new[] { block.NextPosition }, Cache = cache });
        Assert.Equal(block.NextPosition, cache.Layers[1].Source.Positions[^1]);
    }

    [Fact]
    public void GpeSessionWithVisiPruner_PrunesEachFrameAsItEnters()
    {
        using var dir = FixtureCopy("smolvlm", new JsonObject { ["ra_default_prompt"] = ChatPrompt });
        using var e = Engine.Load(dir.Path);
        var frames = VideoFrames(e);
        var options = new StreamingOptions
        {
            WindowFrames = 8, Generation = new GenerationOptions { MaxNewTokens = 4, StopTokens = Array.Empty<int>() },
            Pruning = new PruningConfig { ShallowLayers = 0, FilterFrom = 0, Budget = 2, DeadlineLayer = 0, LayerThreshold = 1.0 },
        };
        using var session = new GpeSession(e, options);
        foreach (var f in frames) session.Read(f);
        Assert.Equal(new[] { 4, 2 }, session.Last.VisualPerLayer);
        Assert.Equal(4, Ids(session.Write()).Length);
        // Layer 0 holds every frame's 4 visual tokens, layer 1 the 2 kept of each; the text is in both.
        long text = session.Cache.Layers[0].Source.Length - 4 * 4;
        Assert.Equal(text + 4 * 2, session.Cache.Layers[1].Source.Length);
    }

    [Fact]
    public async Task CaptionCommand_OnTheFixture_GivesHfsGreedyTokens()
    {
        var c = Fixture.Case("smolvlm", "image_landscape");
        var stdout = new StringWriter();
        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(stdout);
            code = await RealtimeAssistant.Cli.Commands.CaptionCommand.Create().Parse(["-m", Fixture.Dir("smolvlm"), "-i", Path.Combine(Fixture.Root, (string)c["images"]![0]!),
                "--prompt", (string)c["prompt_text"]!, "--max-new-tokens", "8", "--json"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        var line = stdout.ToString().Split('\n').Single(l => l.StartsWith("{\"text\""));
        var json = JsonNode.Parse(line)!;
        Assert.Equal((int)c["sequence_length"]!, (int)json["prompt_tokens"]!);
        Assert.Equal(Fixture.Longs(c["greedy_tokens"]!), json["tokens"]!.AsArray().Select(t => (long)t!["id"]!));
    }

    [Fact]
    public void BucketedPositions_AreTheIdentityForFullTiles_AndSpreadASmallerGrid()
    {
        foreach (var n in new[] { 4, 26, 27, 32, 64 }) // 26: Idefics3-8B (364/14); 32: SmolVLM2 (512/16)
            Assert.Equal(Enumerable.Range(0, n * n).Select(i => (long)i), Idefics3VisionEmbeddings.BucketPositions(n, n, n));
        // A 2×2 grid over 4 buckets a side: fractional coordinates 0 and 0.5 fall in buckets 0 and 2.
        Assert.Equal(new long[] { 0, 2, 8, 10 }, Idefics3VisionEmbeddings.BucketPositions(2, 2, 4));
    }

    [Theory]
    [InlineData(1, 1, false)]
    [InlineData(3000, 2, false)] // the short side rounds to 0 in HF's int(·): one row of tiles
    [InlineData(2, 3000, false)]
    [InlineData(33, 31, true)]
    public void AnyImageSize_GivesWholeTiles_AndARunWithASlotPerVisualToken(int width, int height, bool gray)
    {
        using var e = Load("smolvlm");
        using var img = new Mat(height, width, gray ? MatType.CV_8UC1 : MatType.CV_8UC3, OpenCvSharp.Scalar.All(90));
        foreach (var use in new[] { ImageUse.Still, ImageUse.VideoFrame })
        {
            using var enc = e.Model.EncodeOne(img, use);
            Assert.Equal(enc.FeatureSlots.Length, (int)enc.Features.shape[0]);
            Assert.Equal(0, enc.FeatureSlots.Length % 4);
            Assert.All(enc.FeatureSlots, s => Assert.Equal(e.ImageMarkerId, enc.TokenIds[s]));
            Assert.Equal(enc.FeatureSlots.Length, enc.TokenIds.Count(t => t == e.ImageMarkerId));
            Assert.Equal(enc.TokenIds.Length, e.Model.RunLength(img, use)); // the server's context check, from the size alone
            if (use == ImageUse.VideoFrame) Assert.Equal(4, enc.FeatureSlots.Length);
        }
    }

    /// <summary>The house fuzzer (Fuzz/Fuzzer.cs) on this family's three JSON files, seeded with both fixtures' real files.</summary>
    [Theory]
    [InlineData("config.json")]
    [InlineData("preprocessor_config.json")]
    [InlineData("processor_config.json")]
    public void ConfigFiles_Fuzzed_LoadOrGiveAUserErrorNamingTheFile(string file)
    {
        var seeds = new[] { "smolvlm", "idefics3" }.Select(f => File.ReadAllBytes(Path.Combine(Fixture.Dir(f), file))).ToArray();
        var stats = Fuzz.FuzzRunner.Run("idefics3 " + file, (m, dir) =>
        {
            var bytes = m.JsonFile(seeds[m.Rng.Next(seeds.Length)]);
            var path = Path.Combine(dir, file);
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir =>
        {
            if (file == "config.json")
            {
                var path = Path.Combine(dir, file);
                Idefics3Config.Parse(JsonFile.Read(path, file), path);
            }
            else
            {
                var c = Idefics3ProcessorConfig.Load(dir, "smolvlm");
                Assert.True(c.TileSize is > 0 and <= 4096 && c.LongestEdge > 0 && c.ImageSeqLen > 0);
            }
        }, _out);
        Assert.True(stats.Loaded > 0 && stats.Refused > 0, "both outcomes were exercised");
    }

    static Tensor Pixels(IPreparedImage p) =>
        (Tensor)p.GetType().GetProperty("Pixels")!.GetValue(p)!;
}
