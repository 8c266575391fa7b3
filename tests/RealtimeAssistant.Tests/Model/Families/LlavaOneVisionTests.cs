using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Imaging;
using RealtimeAssistant.Model.LlavaOneVision;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// LLaVA-OneVision against the llava_onevision fixture (transformers 4.50: SigLIP tile 16 px,
/// patch 4, pinpoints 16a×16b, anyres_max_9, Qwen2 decoder) and against hand-computed anyres
/// arithmetic.
/// </summary>
public class LlavaOneVisionTests
{
    static readonly HfFixture Fx = new("llava_onevision");
    static (int H, int W)[] Pins => OneVisionConfig.ParsePinpoints(Fx.Expected["image_grid_pinpoints"], "expected.json")!;
    const int Tile = 16, Side = 4;

    public static TheoryData<string> ImageCases => new() { "image_landscape", "image_wide", "image_frame0" };

    static Engine Load() => Engine.Load(Fx.Dir, new EngineOptions { Device = "cpu" });
    static LlavaOneVisionFamily Family(Engine e) => Assert.IsType<LlavaOneVisionFamily>(e.Model);

    [Fact]
    public void TheFixtureCheckpointLoads_EveryTensorRead_AsLlavaOneVision()
    {
        using var e = Load(); // CheckpointLoader throws on any missing or unexpected tensor
        var f = Family(e);
        Assert.Equal("llava_onevision", f.ModelType);
        Assert.Equal("<image>", f.ImageMarker);
        Assert.Equal((299, 300, 9), (f.Config.ImageTokenIndex, f.Config.VideoTokenIndex, f.Config.MaxTiles));
        Assert.Equal(36, f.Config.Pinpoints.Length);
        var reader = SafeTensorsReader.Open(Fx.Dir);
        Assert.Equal(reader.Tensors.Count, f.Model.named_parameters().Count());
        Assert.True(f.ParameterCounts.Vision > 0 && f.ParameterCounts.Decoder > 0);
    }

    [Fact]
    public void TheNewerNamingGeneration_LoadsTheSameWeights_AndAStrayTensorIsNamed()
    {
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(Fx.Dir).Where(f => !f.EndsWith(".safetensors")))
            File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        var reader = SafeTensorsReader.Open(Fx.Dir);
        string Newer(string n) =>
            n == "image_newline" ? "model.image_newline"
            : n.StartsWith("language_model.model.") ? "model.language_model." + n["language_model.model.".Length..]
            : n.StartsWith("language_model.lm_head.") ? "lm_head." + n["language_model.lm_head.".Length..]
            : "model." + n;
        var tensors = reader.Tensors.Keys.Select(n => (Newer(n), reader.Load(n))).ToList();
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors);
        using (var e = Engine.Load(dir.Path))
        using (var old = Load())
        {
            var (a, b) = (Family(e).Model, Family(old).Model);
            Assert.True(a.image_newline.equal(b.image_newline).all().item<bool>());
            Assert.True(a.language_model.lm_head!.weight.equal(b.language_model.lm_head!.weight).all().item<bool>());
            Assert.True(a.vision_tower.vision_model.post_layernorm.weight.equal(b.vision_tower.vision_model.post_layernorm.weight).all().item<bool>());
        }
        tensors.Add(("model.mystery.weight", torch.zeros(2)));
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors);
        var err = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
        Assert.Contains("model.mystery.weight", err.Message);
    }

    [Fact]
    public void AnyResArithmetic_HandComputed()
    {
        // frame0, 30×40 (h×w): 32×48 keeps all 1200 pixels with the least waste (48×48 wastes 1104, 32×48 336).
        Assert.Equal((32, 48), AnyRes.SelectBestResolution(30, 40, Pins));
        // Fitted: height fills 32 (scale 32/30), width ⌈40·32/30⌉ = ⌈42.67⌉ = 43; padded 2 left, 3 right.
        Assert.Equal((32, 43), AnyRes.FitInto(30, 40, (32, 48)));
        Assert.Equal((0, 2), AnyRes.PadOffsets((32, 43), (32, 48)));
        // Grid 8×12: 40·8/30 = 10.67 → 10 columns of content, one padded column cut at each side.
        Assert.Equal((0, 8, 1, 10), AnyRes.Unpad(30, 40, 8, 12));
        Assert.Equal((8, 10), AnyRes.Downscale(8, 10, Side, 9)); // √(80/144) < 1.1: kept
        // landscape, 37×53: 48×64; width fills, height ⌈37·64/53⌉ = ⌈44.68⌉ = 45, padded 1 above, 2 below.
        Assert.Equal((48, 64), AnyRes.SelectBestResolution(37, 53, Pins));
        Assert.Equal((45, 64), AnyRes.FitInto(37, 53, (48, 64)));
        Assert.Equal((1, 0), AnyRes.PadOffsets((45, 64), (48, 64)));
        // Grid 12×16: 37·16/53 = 11.17 → 11 rows, (12 − 11) // 2 = 0 cut. √(192/144) = 1.155 > 1.1 → 12 // 1.155 = 10, 16 // 1.155 = 13.
        Assert.Equal((0, 12, 0, 16), AnyRes.Unpad(37, 53, 12, 16));
        Assert.Equal((10, 13), AnyRes.Downscale(12, 16, Side, 9));
        // wide, 100×150: 64×96, the same aspect: nothing cut; √(384/144) = 1.633 → 9 × 14.
        Assert.Equal((64, 96), AnyRes.SelectBestResolution(100, 150, Pins));
        Assert.Equal((0, 16, 0, 24), AnyRes.Unpad(100, 150, 16, 24));
        Assert.Equal((9, 14), AnyRes.Downscale(16, 24, Side, 9));
        // Tokens: base 16 + rows × (columns + newline).
        Assert.Equal(16 + 8 * 11, AnyRes.TokenCount(30, 40, Pins, Tile, Side, 9));
        Assert.Equal(16 + 10 * 14, AnyRes.TokenCount(37, 53, Pins, Tile, Side, 9));
        Assert.Equal(16 + 9 * 15, AnyRes.TokenCount(100, 150, Pins, Tile, Side, 9));
        Assert.Equal(9, AnyRes.MaxTiles("anyres_max_9", "c"));
        Assert.Contains("vision_aspect_ratio", Assert.Throws<UserError>(() => AnyRes.MaxTiles("anyres", "c")).Message);
    }

    [Fact]
    public void AtLlavaOneVision05BsShapes_AFrameIs197Tokens_AStillThousands()
    {
        var hub = JsonNode.Parse(File.ReadAllText(Path.Combine(HfFixture.Root, "hub-configs", "llava-onevision-qwen2-0.5b-ov-hf.json")))!;
        var cfg = OneVisionConfig.Parse(hub["config.json (reconstructed sizes)"]!, "hub config");
        Assert.Equal((384, 27, 36), (cfg.TileSize, cfg.TileSide, cfg.Pinpoints.Length));
        // A stream frame: ⌈27/2⌉² = 196 pooled rows and the newline.
        Assert.Equal(197, (cfg.TileSide + 1) / 2 * ((cfg.TileSide + 1) / 2) + 1);
        // 640×480 as a still: pinpoint 768×768 (the smallest that keeps every pixel), grid 54×54;
        // 480·54/640 = 40.5 → 40 rows of content, 7 padded rows cut each side; √(40·54/(9·27²)) < 1.1.
        Assert.Equal((768, 768), AnyRes.SelectBestResolution(480, 640, cfg.Pinpoints));
        Assert.Equal(729 + 40 * 55, AnyRes.TokenCount(480, 640, cfg.Pinpoints, cfg.TileSize, cfg.TileSide, cfg.MaxTiles));
        // 1920×1080: 1152×1920, grid 81×135 → 75 rows; √(75·135/6561) = 1.24 → 60 × 108 and 60 newlines.
        Assert.Equal(729 + 60 * 109, AnyRes.TokenCount(1080, 1920, cfg.Pinpoints, cfg.TileSize, cfg.TileSide, cfg.MaxTiles));
    }

    [Fact]
    public void UnpadRounding_TheModelsRoundTo7_AgainstTheProcessorsInt()
    {
        // 44×55 → 48×64, grid 12×16: 55·(12/44) is 14.999999999999998 in doubles. The model's
        // int(round(x, 7)) reads 15 (one column each side? (16 − 15) // 2 = 0: nothing cut), the 4.50
        // processor's int(x) reads 14 and cuts one column each side; the counts then differ (156 vs 196),
        // which transformers 4.50 rejects as a feature/token mismatch. Features and tokens come from one
        // computation here, with the model's rounding.
        Assert.Equal((0, 12, 0, 16), AnyRes.Unpad(44, 55, 12, 16, roundTo7: true));
        Assert.Equal((0, 12, 1, 14), AnyRes.Unpad(44, 55, 12, 16, roundTo7: false));
        Assert.Equal(156, AnyRes.TokenCount(44, 55, Pins, Tile, Side, 9, roundTo7: true));
        Assert.Equal(196, AnyRes.TokenCount(44, 55, Pins, Tile, Side, 9, roundTo7: false));
        using var e = Load();
        using var img = new Mat(44, 55, MatType.CV_8UC3, new OpenCvSharp.Scalar(10, 200, 90));
        using var enc = e.Model.EncodeOne(img, ImageUse.Still);
        Assert.Equal(156, enc.Count);
        Assert.Equal((10, 13), (enc.GridH, enc.GridW));
    }

    [Theory]
    [MemberData(nameof(ImageCases))]
    public void PinpointTilesAndTokenCounts_AreTheFixtures(string caseName)
    {
        var c = Fx.Case(caseName);
        var size = HfFixture.Ints(c["image_sizes"]![0]!);
        var best = HfFixture.Ints(c["best_resolution_hw"]!);
        Assert.Equal((best[0], best[1]), AnyRes.SelectBestResolution(size[0], size[1], Pins));
        Assert.Equal((int)c["n_tiles_including_base"]!, 1 + best[0] / Tile * (best[1] / Tile));
        foreach (var round in new[] { true, false })
            Assert.Equal((int)c["n_image_tokens"]!, AnyRes.TokenCount(size[0], size[1], Pins, Tile, Side, 9, round));
    }

    /// <summary>
    /// transformers 4.50's get_image_patches, rebuilt from our parts: it padded the fitted image by
    /// (pinpoint − fitted) // 2 on both sides, so with an odd difference the canvas is one pixel short
    /// and the last row (or column) of crops is cut short, then stretched to a tile by the per-tile
    /// resize. Later transformers (and LLaVA's own code, which trained these models) put the odd pixel
    /// after the image instead, as <see cref="OneVisionProcessor.AnyResTiles"/> does.
    /// </summary>
    static List<Mat> Hf450Tiles(Mat rgb)
    {
        var best = AnyRes.SelectBestResolution(rgb.Rows, rgb.Cols, Pins);
        var fitted = AnyRes.FitInto(rgb.Rows, rgb.Cols, best);
        var (top, left) = AnyRes.PadOffsets(fitted, best);
        var tiles = new List<Mat> { PilResample.Resize(rgb, Tile, Tile, PilResample.Filter.Bicubic) };
        using var resized = PilResample.Resize(rgb, fitted.W, fitted.H, PilResample.Filter.Bicubic);
        using var canvas = new Mat(fitted.H + 2 * top, fitted.W + 2 * left, MatType.CV_8UC3, OpenCvSharp.Scalar.All(0));
        using (var roi = new Mat(canvas, new Rect(left, top, fitted.W, fitted.H))) resized.CopyTo(roi);
        for (int y = 0; y < canvas.Rows; y += Tile)
            for (int x = 0; x < canvas.Cols; x += Tile)
                using (var crop = new Mat(canvas, new Rect(x, y, Math.Min(Tile, canvas.Cols - x), Math.Min(Tile, canvas.Rows - y))))
                    tiles.Add(PilResample.Resize(crop, Tile, Tile, PilResample.Filter.Bicubic));
        return tiles;
    }

    static Tensor Hf450Pixels(LlavaOneVisionFamily f, string caseName)
    {
        using var bgr = HfFixture.Image((string)Fx.Case(caseName)["images"]![0]!);
        using var rgb = bgr.CvtColor(ColorConversionCodes.BGR2RGB);
        var tiles = Hf450Tiles(rgb);
        try { return f.Processor.ToTensor(tiles, OneVisionLayout.AnyRes); }
        finally { foreach (var t in tiles) t.Dispose(); }
    }

    [Theory]
    [MemberData(nameof(ImageCases))]
    public void AnyResTiles_AreTheHfProcessorsPixels_ButForThe450OddPaddingEdge(string caseName)
    {
        var c = Fx.Case(caseName);
        using var e = Load();
        var f = Family(e);
        var meta = c["processor_inputs"]!["pixel_values"]!;
        // Our resize, padding, tiling and normalisation, arranged as 4.50 arranged them, are its pixels.
        using var hf450 = Hf450Pixels(f, caseName);
        Assert.Equal(HfFixture.Ints(meta["shape"]!)[1..].Select(x => (long)x).ToArray(), hf450.shape);
        if (Fx.Has(caseName, "pixel_values"))
        {
            using var hf = Fx.Tensor(caseName, "pixel_values")[0];
            Assert.True((hf450 - hf).abs().max().item<float>() < 1e-6, $"max abs diff {(hf450 - hf).abs().max().item<float>()}");
        }
        var rowSums = HfFixture.Doubles(meta["row_sums"]!); // the base, then the crops row by row
        for (int t = 0; t < rowSums.Length; t++)
            Assert.True(Math.Abs(hf450[t].to_type(ScalarType.Float64).sum().item<double>() - rowSums[t]) < 1e-3, $"tile {t}");
        var first = HfFixture.Doubles(meta["first_values"]!);
        var ours450 = hf450.flatten()[..first.Length].to_type(ScalarType.Float64).data<double>().ToArray();
        for (int i = 0; i < first.Length; i++) Assert.True(Math.Abs(first[i] - ours450[i]) < 1e-6, $"value {i}: {ours450[i]} vs {first[i]}");

        // The processor itself: the same tiles, except the last crop row/column where 4.50's canvas fell short.
        using var bgr = HfFixture.Image((string)c["images"]![0]!);
        using var p = (OneVisionPixels)e.Model.Prepare(bgr, ImageUse.Still);
        var size = HfFixture.Ints(c["image_sizes"]![0]!);
        var best = AnyRes.SelectBestResolution(size[0], size[1], Pins);
        var fitted = AnyRes.FitInto(size[0], size[1], best);
        bool shortRows = (best.H - fitted.H) % 2 == 1, shortCols = (best.W - fitted.W) % 2 == 1;
        int cols = best.W / Tile, rows = best.H / Tile, differing = 0;
        for (int t = 0; t < p.Tiles.shape[0]; t++)
        {
            bool edge = t > 0 && ((shortRows && (t - 1) / cols == rows - 1) || (shortCols && (t - 1) % cols == cols - 1));
            bool same = p.Tiles[t].equal(hf450[t]).all().item<bool>();
            Assert.True(edge || same, $"tile {t} differs from transformers'");
            if (!same) differing++;
        }
        Assert.Equal(caseName == "image_wide" ? 0 : (shortRows ? cols : rows), differing);
    }

    [Fact]
    public void VideoFrames_AreTheHfVideoProcessorsPixels()
    {
        var c = Fx.Case("video");
        using var e = Load();
        using var hf = Fx.Tensor("video", "pixel_values_videos")[0];
        var frames = c["video_frames"]!.AsArray().Select(f => (string)f!).ToArray();
        for (int i = 0; i < frames.Length; i++)
        {
            using var bgr = HfFixture.Image(frames[i]);
            using var p = (OneVisionPixels)e.Model.Prepare(bgr, ImageUse.VideoFrame);
            Assert.Equal(new long[] { 1, 3, Tile, Tile }, p.Tiles.shape);
            Assert.True((p.Tiles[0] - hf[i]).abs().max().item<float>() < 1e-6, $"frame {i}");
        }
    }

    /// <summary>The merged rows, the last logits, the step logits and the greedy tokens of one case, from its image's features.</summary>
    static void AssertMatchesTransformers(Engine e, string caseName, EncodedImage image)
    {
        var c = Fx.Case(caseName);
        var hfFeats = Fx.Tensor(caseName, "merged_image_embeds");
        Assert.True(HfFixture.RelErr(image.Features, hfFeats) < 1e-5, $"features: rel err {HfFixture.RelErr(image.Features, hfFeats)}");
        var block = MultimodalPrompt.Build(e.Tokenizer.Encode((string)c["prompt_text"]!), e.ImageMarkerId, new[] { image });
        Assert.Equal(HfFixture.Ints(c["input_ids"]!), block.Ids.Select(i => (int)i).ToArray());
        var last = HfFixture.FullLogits(e.Language, block)[^3..];
        Assert.True(HfFixture.RelErr(last, Fx.Tensor(caseName, "logits_last")) < 1e-5, $"last logits: rel err {HfFixture.RelErr(last, Fx.Tensor(caseName, "logits_last"))}");
        var (tokens, steps) = HfFixture.Greedy(e.Language, block, 8);
        HfFixture.AssertGreedy(HfFixture.Ints(c["greedy_tokens"]!), HfFixture.Doubles(c["greedy_top2_margins"]!), tokens);
        Assert.True(HfFixture.RelErr(steps, Fx.Tensor(caseName, "step_logits")) < 1e-5, "step logits");
    }

    [Theory]
    [MemberData(nameof(ImageCases))]
    public void FromTransformersPixels_FeaturesLogitsAndGreedyTokensMatch(string caseName)
    {
        // 4.50's tiles (rebuilt exactly, see above) through our tower, packing and decoder.
        using var e = Load();
        var f = Family(e);
        using var _ = torch.inference_mode();
        var size = HfFixture.Ints(Fx.Case(caseName)["image_sizes"]![0]!);
        var (features, h, w) = f.Model.PackAnyRes(f.Model.TileFeatures(Hf450Pixels(f, caseName)), size[0], size[1]);
        int n = (int)features.shape[0];
        using var image = new EncodedImage { Features = features, TokenIds = Enumerable.Repeat(299, n).ToArray(), FeatureSlots = Enumerable.Range(0, n).ToArray(), GridH = h, GridW = w };
        AssertMatchesTransformers(e, caseName, image);
    }

    [Fact]
    public void FromThePng_TheEnginesStillPathMatchesTransformers()
    {
        // The wide image fills its pinpoint exactly (no padding), so 4.50 and later tile it alike.
        using var e = Load();
        using var _ = torch.inference_mode();
        using var bgr = HfFixture.Image("images/wide_150x100.png");
        using var image = e.Model.EncodeOne(bgr, ImageUse.Still);
        AssertMatchesTransformers(e, "image_wide", image);
    }

    [Fact]
    public void FromHfPixels_TheModelAloneMatchesTransformers()
    {
        // The model's share, apart from preprocessing: HF's own tiles in, HF's merged rows out.
        using var e = Load();
        var f = Family(e);
        using var _ = torch.inference_mode();
        var tiles = f.Model.TileFeatures(Fx.Tensor("image_landscape", "pixel_values")[0]);
        var (packed, h, w) = f.Model.PackAnyRes(tiles, 37, 53);
        Assert.Equal((10, 13), (h, w));
        Assert.True(HfFixture.RelErr(packed, Fx.Tensor("image_landscape", "merged_image_embeds")) < 1e-5);
    }

    [Fact]
    public void VideoFrames_PooledGridsAndTheNewline_MatchTransformers_AndTheVideoPromptsTokens()
    {
        var c = Fx.Case("video");
        using var e = Load();
        using var _ = torch.inference_mode();
        var hfRows = Fx.Tensor("video", "merged_image_embeds"); // 4 frames × 2×2 pooled, then one newline
        var frames = c["video_frames"]!.AsArray().Select(p => { using var m = HfFixture.Image((string)p!); return e.Model.EncodeOne(m, ImageUse.VideoFrame); }).ToList();
        foreach (var (frame, i) in frames.Select((f, i) => (f, i)))
        {
            Assert.Equal(5, frame.Count); // ⌈4/2⌉² pooled + one newline: a one-frame video
            Assert.Equal((2, 2), (frame.GridH, frame.GridW));
            Assert.All(frame.TokenIds, t => Assert.Equal(300, t)); // <video> placeholders, as HF's input_ids hold
            Assert.True(HfFixture.RelErr(frame.Features[..4], hfRows[(4 * i)..(4 * i + 4)]) < 1e-5, $"frame {i}");
            Assert.True(HfFixture.RelErr(frame.Features[4..], hfRows[16..]) < 1e-6, "newline");
        }
        // transformers' layout for the whole video (frames back to back, one newline) gives its logits and tokens.
        var video = new EncodedImage
        {
            Features = torch.cat(frames.Select(f => f.Features[..4]).Append(frames[0].Features[4..]).ToArray(), 0),
            TokenIds = Enumerable.Repeat(300, 17).ToArray(), FeatureSlots = Enumerable.Range(0, 17).ToArray(),
        };
        var block = MultimodalPrompt.Build(e.Tokenizer.Encode((string)c["prompt_text"]!), 300, new[] { video });
        Assert.Equal(HfFixture.Ints(c["input_ids"]!), block.Ids.Select(i => (int)i).ToArray());
        Assert.True(HfFixture.RelErr(HfFixture.FullLogits(e.Language, block)[^3..], Fx.Tensor("video", "logits_last")) < 1e-5);
        var (tokens, _) = HfFixture.Greedy(e.Language, block, 8);
        HfFixture.AssertGreedy(HfFixture.Ints(c["greedy_tokens"]!), HfFixture.Doubles(c["greedy_top2_margins"]!), tokens);
        foreach (var f in frames) f.Dispose();
    }

    [Fact]
    public async Task RaCaption_OnTheFixtureFolder_GivesTransformersGreedyTokens()
    {
        var c = Fx.Case("image_wide");
        var stdout = new StringWriter();
        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(stdout);
            code = await RealtimeAssistant.Cli.Commands.CaptionCommand.Create().Parse(["-m", Fx.Dir, "-i", Path.Combine(HfFixture.Root, "images", "wide_150x100.png"),
                "-p", (string)c["prompt_text"]!, "--json", "--max-new-tokens", "8", "--device", "cpu"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        var line = stdout.ToString().Split('\n').Single(l => l.StartsWith("{\"text\""));
        var json = JsonNode.Parse(line)!;
        Assert.Equal((int)c["sequence_length"]!, (int)json["prompt_tokens"]!);
        // Its 8 tokens (none is a stop token) are transformers' greedy ones.
        Assert.Equal(HfFixture.Ints(c["greedy_tokens"]!), json["tokens"]!.AsArray().Select(t => (int)t!["id"]!).ToArray());
    }

    [Fact]
    public void KvCacheDecoding_EqualsOneFullForward()
    {
        using var e = Load();
        using var _ = torch.inference_mode();
        using var bgr = HfFixture.Image("images/landscape_53x37.png");
        using var image = e.Model.EncodeOne(bgr, ImageUse.Still);
        var ids = e.Tokenizer.Encode((string)Fx.Case("image_landscape")["prompt_text"]!);
        var block = MultimodalPrompt.Build(ids, e.ImageMarkerId, new[] { image });
        var (tokens, steps) = HfFixture.Greedy(e.Language, block, 8);
        var full = HfFixture.FullLogits(e.Language, MultimodalPrompt.Build(ids.Concat(tokens[..^1]).ToList(), e.ImageMarkerId, new[] { image }));
        var diff = (full[(block.Length - 1)..] - steps).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"cached vs full: {diff}");
    }

    [Fact]
    public void SeveralImagesInOnePrompt_AreEachOnePaddedTileAndANewline()
    {
        using var e = Load();
        var f = Family(e);
        using var frame = HfFixture.Image("images/frame0_40x30.png");
        using var portrait = HfFixture.Image("images/portrait_30x61.png");
        // pad_to_square: the 30×40 frame centred on a 40×40 square of int(0.5·255) = 127, then one tile.
        using var rgb = frame.CvtColor(ColorConversionCodes.BGR2RGB);
        using var square = new Mat(40, 40, MatType.CV_8UC3, new OpenCvSharp.Scalar(127, 127, 127));
        using (var roi = new Mat(square, new Rect(0, 5, 40, 30))) rgb.CopyTo(roi);
        using var expected = PilResample.Resize(square, Tile, Tile, PilResample.Filter.Bicubic);
        using var tile = f.Processor.SquareTile(rgb);
        Assert.Equal(0, Cv2.Norm(expected, tile, NormTypes.INF));

        var timings = new CaptionTimings();
        var options = new GenerationOptions { MaxNewTokens = 2, StopTokens = Array.Empty<int>() };
        var text = "<|im_start|>user <image><image>\nDescribe.<|im_end|><|im_start|>assistant\n";
        _ = new Captioner(e).Caption(new[] { frame, portrait }, text, options, timings).ToList();
        Assert.Equal(e.Tokenizer.Encode(text).Count - 2 + 2 * (Side * Side + 1), timings.PromptTokens);
        var (_, _, spans, _) = new Captioner(e).EmbedPrompt(new[] { frame, portrait }, text);
        Assert.Equal(new[] { 17, 17 }, spans.Select(s => s.Length));
    }

    [Fact]
    public void TheHeatmapGrid_IsTheUnpaddedGrid_BaseAndNewlinesAreNoCells()
    {
        using var e = Load();
        using var bgr = HfFixture.Image("images/landscape_53x37.png");
        using var image = e.Model.EncodeOne(bgr, ImageUse.Still);
        var cells = image.Cells();
        Assert.Equal(156, cells.Length);
        Assert.All(cells[..16], c => Assert.Equal(-1, c));
        Assert.Equal(Enumerable.Range(0, 13).Append(-1), cells[16..30]);
        Assert.Equal(Enumerable.Range(0, 130), cells.Where(c => c >= 0));
    }

    [Fact]
    public void BadConfigs_AreOneLineErrorsNamingTheKey()
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(Fx.Dir, "config.json")))!;
        OneVisionConfig Parse(Action<JsonNode> edit) { var r = root.DeepClone(); edit(r); return OneVisionConfig.Parse(r, "config.json"); }
        Assert.Contains("image_grid_pinpoints", Assert.Throws<UserError>(() => Parse(r => r["image_grid_pinpoints"] = new JsonArray(new JsonArray(20, 16)))).Message);
        Assert.Contains("image_grid_pinpoints", Assert.Throws<UserError>(() => Parse(r => r["image_grid_pinpoints"] = "x")).Message);
        Assert.Contains("vision_aspect_ratio", Assert.Throws<UserError>(() => Parse(r => r["vision_aspect_ratio"] = "pad")).Message);
        Assert.Contains("full", Assert.Throws<UserError>(() => Parse(r => r["vision_feature_select_strategy"] = "default")).Message);
        // preprocessor_config.json: wrong kinds are named; pinpoints that disagree with config.json refuse to load.
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(Fx.Dir)) File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        var pre = JsonNode.Parse(File.ReadAllText(dir.File("preprocessor_config.json")))!;
        void Pre(Action<JsonNode> edit, string expected)
        {
            var r = pre.DeepClone(); edit(r);
            File.WriteAllText(dir.File("preprocessor_config.json"), r.ToJsonString());
            var e = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
            Assert.Contains("preprocessor_config.json", e.Message);
            Assert.Contains(expected, e.Message);
        }
        Pre(r => r["size"] = "big", "size");
        Pre(r => r["size"] = new JsonObject { ["height"] = 32, ["width"] = 32 }, "image_size");
        Pre(r => r["image_mean"] = new JsonArray(1, 2), "image_mean");
        Pre(r => r["image_std"] = new JsonArray(0, 0, 0), "image_std");
        Pre(r => r["resample"] = 0, "resample");
        Pre(r => r["image_grid_pinpoints"] = new JsonArray(new JsonArray(16, 16)), "image_grid_pinpoints");
        File.WriteAllText(dir.File("preprocessor_config.json"), "{not json");
        Assert.Contains("preprocessor_config.json", Assert.Throws<UserError>(() => Engine.Load(dir.Path)).Message);

        var defaults = Parse(r => { r.AsObject().Remove("image_grid_pinpoints"); r.AsObject().Remove("vision_aspect_ratio"); });
        Assert.Equal(OneVisionConfig.DefaultPinpoints, defaults.Pinpoints);
        Assert.Equal(9, defaults.MaxTiles);
    }
}

/// <summary>GPE and VisiPruner on LLaVA-OneVision: frames are one-frame videos (pooled grid + newline) in the model's own prompt.</summary>
public class LlavaOneVisionStreamingTests
{
    static readonly HfFixture Fx = new("llava_onevision");

    static List<EncodedImage> Frames(Engine e) => Enumerable.Range(0, 4)
        .Select(i => { using var m = HfFixture.Image($"images/frame{i}_40x30.png"); return e.Model.EncodeOne(m, ImageUse.VideoFrame); }).ToList();

    static StreamingOptions Options(int window = 8) => new()
    {
        WindowFrames = window, Generation = new GenerationOptions { MaxNewTokens = 6, StopTokens = Array.Empty<int>() },
    };

    static int[] Ids(IEnumerable<TokenEvent> events) => events.Where(t => t.Id >= 0).Select(t => t.Id).ToArray();

    /// <summary>One forward over prefix, frames and the write, greedy from the given caption position (null: right after).</summary>
    static int[] Batch(Engine e, IReadOnlyList<EncodedImage> frames, int steps, Func<MultimodalPrompt, long>? captionStart = null)
    {
        var format = StreamFormat.For(e);
        var ids = format.Prefix.Concat(frames.SelectMany(_ => format.Frame)).Concat(format.Write(null)).ToList();
        var block = MultimodalPrompt.Build(ids, e.ImageMarkerId, frames);
        return HfFixture.Greedy(e.Language, block, steps, captionStart?.Invoke(block)).Tokens;
    }

    [Fact]
    public void AGpeSession_EqualsOneBatchForward_OverTheSameFrames()
    {
        using var e = Engine.Load(Fx.Dir);
        var frames = Frames(e);
        var format = StreamFormat.For(e);
        Assert.Contains(e.ImageMarkerId, format.Frame);
        using var session = new GpeSession(e, Options());
        foreach (var f in frames.Take(3)) session.Read(f.Clone());
        var caption = Ids(session.Write());
        Assert.Equal(6, caption.Length);
        Assert.Equal(Batch(e, frames.Take(3).ToList(), 6), caption);
        // The source holds the prefix and three one-frame videos (the marker became 4 pooled rows and a newline).
        Assert.Equal(format.Prefix.Length + 3 * (format.Frame.Length - 1 + 5), session.Cache.Layers[0].Source.Length);
        // A later frame never sees the earlier instruction or caption.
        session.Read(frames[3].Clone());
        Assert.Equal(Batch(e, frames, 6), Ids(session.Write()));
        foreach (var f in frames) f.Dispose();
    }

    [Fact]
    public void WithGroupPositions_TheCaptionCountsFromTheFirstFrame()
    {
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(Fx.Dir)) File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        cfg["ra_group_positions"] = true;
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        using var e = Engine.Load(dir.Path);
        var frames = Frames(e);
        using var session = new GpeSession(e, Options());
        foreach (var f in frames) session.Read(f.Clone());
        var caption = Ids(session.Write());
        // Target group at φ = 0 past the source's first frame, which sits right after the prefix.
        int prefix = StreamFormat.For(e).Prefix.Length;
        Assert.Equal(Batch(e, frames, 6, _ => prefix), caption);
        Assert.NotEqual(Batch(e, frames, 6), caption); // the positions matter
        foreach (var f in frames) f.Dispose();
    }

    [Fact]
    public void PruningOff_IsTheEngineExactly()
    {
        using var e = Engine.Load(Fx.Dir);
        using var bgr = HfFixture.Image("images/landscape_53x37.png");
        var prompt = (string)Fx.Case("image_landscape")["prompt_text"]!;
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokens = Array.Empty<int>() };
        var plain = Ids(new Captioner(e).Caption(bgr, prompt, options, new CaptionTimings()));
        var none = new PrunedCaptioner(e, new NonePruner());
        Assert.Equal(plain, Ids(none.Caption(bgr, prompt, options, new CaptionTimings())));
        Assert.Equal(156, none.LastReport!.KeptTokens);
        // …and the prefill's hidden states are bitwise the engine's.
        using var _ = torch.inference_mode();
        var (embeds, positions, spans, _) = new Captioner(e).EmbedPrompt(new[] { bgr }, prompt);
        var engine = e.Decoder.Forward(embeds, new DecoderStep { Positions = positions });
        using var pruned = PrunedPrefill.Run(e.Language, embeds, positions, spans, new NonePruner());
        Assert.Equal(0f, (engine - pruned.Hidden).abs().max().item<float>());
    }

    [Fact]
    public void VisiPruner_CutsTheImageRun_NewlinesIncluded_KeptTokensKeepTheirPositions()
    {
        using var e = Engine.Load(Fx.Dir);
        using var bgr = HfFixture.Image("images/landscape_53x37.png");
        var prompt = (string)Fx.Case("image_landscape")["prompt_text"]!;
        using var _ = torch.inference_mode();
        var (embeds, positions, spans, _) = new Captioner(e).EmbedPrompt(new[] { bgr }, prompt);
        // The whole run (base tile, grid and its newlines) is one visual span: 156 rows from index 4.
        Assert.Equal(new[] { new VisualSpan(4, 156, 0) }, spans);
        var schedule = new PruningConfig { ShallowLayers = 0, FilterFrom = 0, DeadlineLayer = 0, Budget = 12 };
        schedule.Validate(e.Text.NumHiddenLayers);
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        using var r = PrunedPrefill.Run(e.Language, embeds, positions, spans, schedule.CreatePruner(e.Text.NumHiddenLayers)!, cache);
        Assert.InRange(r.Report.KeptTokens, 1, 12);
        // Layer 1 holds the text and the kept visual rows at their original positions.
        var text = Enumerable.Range(0, embeds.shape[1] is var t ? (int)t : 0).Where(i => i < 4 || i >= 160).Select(i => (long)i);
        var expected = text.Concat(r.Report.KeptVisual).Order().Select(i => positions.T[i]).ToArray();
        Assert.Equal(expected, cache.Layers[1].Source.Positions.ToArray());
        Assert.Equal(embeds.shape[1], cache.Layers[0].Source.Length);
    }
}
