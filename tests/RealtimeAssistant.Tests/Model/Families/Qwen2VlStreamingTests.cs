using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Tests.Capture;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Families.Qwen2Vl;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// GPE and VisiPruner on Qwen2-VL / Qwen2.5-VL (M-RoPE): a stream's frames are vision blocks at
/// get_rope_index's positions; a session equals one batch forward over the same tokens, positions
/// and masks; pruned tokens keep their (t, h, w) positions; the CLI captions as HF generates.
/// </summary>
public sealed class Qwen2VlStreamingTests
{
    static readonly string[] FrameFiles = Enumerable.Range(0, 4).Select(i => $"images/frame{i}_40x30.png").ToArray();

    static List<EncodedImage> Frames(Engine e)
    {
        var result = new List<EncodedImage>();
        foreach (var f in FrameFiles)
        {
            using var m = Cv2.ImRead(Path.Combine(QwenFixtures.Root, f), ImreadModes.Color);
            result.Add(e.Model.EncodeOne(m, ImageUse.VideoFrame));
        }
        return result;
    }

    static StreamingOptions Options(int window, bool rebase = true) => new()
    {
        WindowFrames = window, RebaseOnEvict = rebase, Generation = new GenerationOptions { MaxNewTokens = 6, StopTokens = Array.Empty<int>() },
    };

    static int[] Ids(IEnumerable<TokenEvent> events) => events.Where(e => e.Id >= 0).Select(e => e.Id).ToArray();

    /// <summary>
    /// The stream as one prompt: prefix, every frame's vision block, the write and the caption so
    /// far, at the positions the test's own get_rope_index gives that token sequence.
    /// </summary>
    sealed record Batch(long[] Ids, long[][] Positions, Tensor Embeds, int[] FrameStart, int FrameLength, int WriteStart);

    static Batch BuildBatch(Engine e, IReadOnlyList<EncodedImage> frames, int[] caption)
    {
        var format = StreamFormat.For(e);
        var cfg = ((Qwen2VlFamily)e.Model).Config;
        var ids = new List<int>(format.Prefix);
        foreach (var _ in frames) ids.AddRange(format.Frame);
        int writeAt = ids.Count;
        ids.AddRange(format.Write(null));
        ids.AddRange(caption.Take(caption.Length - 1));
        var block = MultimodalPrompt.Build(ids, e.ImageMarkerId, frames);
        var grids = frames.Select(f => new[] { 1, f.GridH * 2, f.GridW * 2 }).ToList();
        var (pos, _) = QwenFixtures.RopeIndex(block.Ids, cfg, grids);
        // The family's block positions are get_rope_index's.
        Assert.Equal(pos, new[] { block.Positions.T, block.Positions.H!, block.Positions.W! });
        int frameLength = format.Frame.Length - 1 + frames[0].TokenIds.Length;
        var starts = Enumerable.Range(0, frames.Count).Select(i => format.Prefix.Length + i * frameLength).ToArray();
        return new Batch(block.Ids, pos, block.Embed(e.Language), starts, frameLength, format.Prefix.Length + frames.Count * frameLength);
    }

    /// <summary>Greedy tokens of one forward over the batch with a [T, T] mask (null: causal), and the cache it filled.</summary>
    static (int[] Tokens, KvCache Cache) Forward(Engine e, Batch b, int captionLength, Tensor? mask)
    {
        var cache = new KvCache(e.Text.NumHiddenLayers);
        var h = e.Decoder.Forward(b.Embeds, new DecoderStep { Positions = new PositionIds(b.Positions[0], b.Positions[1], b.Positions[2]), Cache = cache, Mask = mask });
        var logits = e.Language.Logits(h[0]);
        int first = b.Ids.Length - captionLength; // the write's last token predicts the caption's first
        return (Enumerable.Range(first, captionLength).Select(i => (int)logits[i].argmax().item<long>()).ToArray(), cache);
    }

    /// <summary>
    /// One forward over the batch greedily gives the session's caption, and the frames' cached keys
    /// (after RoPE, so their M-RoPE positions are in them) and positions equal the batch's.
    /// </summary>
    static void AssertTheBatchGivesTheSessions(Engine e, GpeSession session, Batch batch, int[] caption)
    {
        var (tokens, cache) = Forward(e, batch, caption.Length, null);
        using (cache)
        {
            Assert.Equal(tokens, caption);
            var sessionKeys = session.Cache.Layers[1].Source.Keys;
            var batchKeys = cache.Layers[1].Source.Keys.narrow(2, 0, sessionKeys.shape[2]);
            Assert.True(QwenFixtures.RelDiff(sessionKeys, batchKeys) < 1e-5, $"keys differ by {QwenFixtures.RelDiff(sessionKeys, batchKeys)}");
            Assert.Equal(batch.Positions[0].Take((int)sessionKeys.shape[2]), session.Cache.Layers[1].Source.Positions.ToArray());
        }
    }

    [Fact]
    public void ACaptionHistory_IsRefusedByAModelWithoutGroupPositions_InBothSessions()
    {
        // Such a model writes each caption right after its prompt and keeps none of it: a history would be ignored.
        using var e = QwenFixtures.Load("qwen2_vl");
        Assert.False(e.GroupPositions);
        var o = Options(window: 2) with { CaptionHistoryTokens = 8 };
        Assert.Contains("group positions", Assert.Throws<UserError>(() => new GpeSession(e, o)).Message);
        Assert.Contains("group positions", Assert.Throws<UserError>(() => new ReEncodingSession(e, o)).Message);
        using var without = new GpeSession(e, Options(window: 2));
        Assert.Equal(0, without.Options.CaptionHistoryTokens);
    }

    [Theory]
    [InlineData("qwen2_vl")]
    [InlineData("qwen2_5_vl")]
    public void FramesReadAtDifferentPixelBounds_EqualOneBatchForwardOverTheSameFrames(string family)
    {
        // The governor's resolution rungs change a frame's size mid-stream; each frame is still its
        // own vision block, at get_rope_index's positions for its grid.
        using var e = Engine.Load(QwenFixtures.Folder(family), new EngineOptions { Device = "cpu", MaxPixels = 28 * 28 * 64 });
        using var _ = torch.inference_mode();
        var model = Assert.IsAssignableFrom<IPixelBoundedVision>(e.Model);
        long?[] bounds = { null, 28 * 28 * 16, null };
        var mats = bounds.Select((_, i) =>
        {
            var m = new Mat(240, 320, MatType.CV_8UC3);
            Cv2.Randu(m, OpenCvSharp.Scalar.All(0), OpenCvSharp.Scalar.All(255));
            return m;
        }).ToList();
        using var session = new GpeSession(e, Options(window: 8));
        var tokensRead = new List<int>();
        for (int i = 0; i < mats.Count; i++)
        {
            session.MaxPixels = bounds[i];
            session.Read(mats[i]);
            tokensRead.Add(session.Last.VisualTokens);
        }
        var caption = Ids(session.Write());
        var frames = mats.Select((m, i) =>
        {
            using var p = bounds[i] is { } b ? model.Prepare(m, ImageUse.VideoFrame, b) : e.Model.Prepare(m, ImageUse.VideoFrame);
            return e.Model.Encode(new[] { p })[0];
        }).ToList();
        Assert.Equal(frames.Select(f => f.Count), tokensRead);
        Assert.True(frames[1].Count < frames[0].Count / 2, $"{frames[1].Count} against {frames[0].Count} tokens");
        AssertTheBatchGivesTheSessions(e, session, BuildBatch(e, frames, caption), caption);
        foreach (var f in frames) f.Dispose();
        foreach (var m in mats) m.Dispose();
    }

    [Theory]
    [InlineData("qwen2_vl")]
    [InlineData("qwen2_5_vl")]
    public void SessionOverFramesEqualsOneBatchForwardAtGetRopeIndexPositions(string family)
    {
        using var e = QwenFixtures.Load(family);
        using var _ = torch.inference_mode();
        var frames = Frames(e);
        using var session = new GpeSession(e, Options(window: 8));
        foreach (var f in frames.Take(3)) session.Read(f.Clone());
        var caption = Ids(session.Write());
        Assert.Equal(6, caption.Length);
        var batch = BuildBatch(e, frames.Take(3).ToList(), caption);
        AssertTheBatchGivesTheSessions(e, session, batch, caption);
        // With plain sequential positions instead, the same tokens give other keys: the positions are what is checked.
        var flat = batch with { Positions = new[] { 0, 1, 2 }.Select(_ => Enumerable.Range(0, batch.Ids.Length).Select(i => (long)i).ToArray()).ToArray() };
        var (_, flatCache) = Forward(e, flat, caption.Length, null);
        using (flatCache)
            Assert.True(QwenFixtures.RelDiff(flatCache.Layers[1].Source.Keys.narrow(2, 0, session.Cache.Layers[1].Source.Length), session.Cache.Layers[1].Source.Keys) > 1e-2);
        // A fourth frame after the write: it never sees the old instruction or caption.
        session.Read(frames[3].Clone());
        var second = Ids(session.Write());
        var (again, c2) = Forward(e, BuildBatch(e, frames, second), second.Length, null);
        c2.Dispose();
        Assert.Equal(again, second);
        foreach (var f in frames) f.Dispose();
    }

    [Theory]
    [InlineData("qwen2_vl", false)]
    [InlineData("qwen2_vl", true)]
    [InlineData("qwen2_5_vl", false)]
    [InlineData("qwen2_5_vl", true)]
    public void AfterEvictionTheSessionEqualsTheBatchWithEachFrameSeeingTheFrameBeforeIt(string family, bool rebase)
    {
        // Window 2 over 4 frames: each frame's keys were computed with the frame before it (then
        // evicted). One forward with that mask, at get_rope_index's positions for the whole stream,
        // gives the same caption. Re-basing rotates every cached key, the chat template's prefix
        // included, by one uniform shift (t, h and w alike): every relative distance is kept, so it is exact.
        using var e = Engine.Load(QwenFixtures.Folder(family), new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        var frames = Frames(e);
        using var session = new GpeSession(e, Options(window: 2, rebase));
        foreach (var f in frames) session.Read(f.Clone());
        Assert.Equal(2, session.FramesInWindow);
        var caption = Ids(session.Write());
        var batch = BuildBatch(e, frames, caption);
        int T = batch.Ids.Length, n = batch.FrameLength, prefix = batch.FrameStart[0];
        int FrameOf(int i) => i >= prefix && i < batch.WriteStart ? (i - prefix) / n : -1; // −1: prefix or write/caption
        var allowed = new bool[T * T];
        for (int r = 0; r < T; r++)
            for (int c = 0; c <= r; c++)
            {
                int fr = FrameOf(r), fc = FrameOf(c);
                allowed[r * T + c] = fc < 0 // the prefix (and, for write rows, the write itself)
                    || (fr >= 0 ? fc >= fr - 1 : fc >= frames.Count - 2); // a frame sees the one before it; the write sees the window
            }
        using var mask = torch.tensor(allowed).view(T, T);
        var (tokens, cache) = Forward(e, batch, caption.Length, mask);
        cache.Dispose();
        Assert.Equal(tokens, caption);
        // Re-based, the first frame in the window sits right after where the prefix began.
        var src = session.Cache.Layers[0].Source;
        Assert.True(prefix > 0, "the chat template's prefix stays at the start of the source");
        Assert.Equal(rebase ? prefix : batch.Positions[0][batch.FrameStart[2]], src.Positions[prefix]);
        foreach (var f in frames) f.Dispose();
    }

    [Theory]
    [InlineData("qwen2_vl")]
    [InlineData("qwen2_5_vl")]
    public void PruningOffIsTheEnginesOwnForward(string family)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, "two_images");
        var (images, marker) = QwenFixtures.Encode(e, c);
        var prompt = QwenFixtures.Prompt(e, c, images, marker);
        using var _ = torch.inference_mode();
        var embeds = prompt.Embed(e.Language);
        var plain = e.Decoder.Forward(embeds, new DecoderStep { Positions = prompt.Positions });
        using var pruned = PrunedPrefill.Run(e.Language, embeds, prompt.Positions, prompt.Spans, new NonePruner());
        Assert.True(pruned.Hidden.allclose(plain, 0, 0), $"max diff {(pruned.Hidden - plain).abs().max().item<float>()}");
        Assert.Equal(2, prompt.Spans.Count);
        Assert.Equal(new[] { 12 }, new[] { prompt.Spans.Sum(s => s.Length) });
        // Captions through the captioner: none-pruned = unpruned, token for token.
        using var img = Cv2.ImRead(Path.Combine(QwenFixtures.Root, "images/landscape_53x37.png"), ImreadModes.Color);
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokens = Array.Empty<int>() };
        var prompt1 = QwenFixtures.Case(family, "image_landscape").PromptText;
        var a = new Captioner(e).Caption(img, prompt1, options, new CaptionTimings()).Where(t => t.Id >= 0).Select(t => t.Id).ToArray();
        var b = new PrunedCaptioner(e, new NonePruner()).Caption(img, prompt1, options, new CaptionTimings()).Where(t => t.Id >= 0).Select(t => t.Id).ToArray();
        Assert.Equal(a, b);
        Assert.Equal(QwenFixtures.Case(family, "image_landscape").GreedyTokens, a);
        foreach (var i in images) i.Dispose();
    }

    /// <summary>Keeps the given visual tokens before layer 0.</summary>
    sealed class KeepBeforeFirstLayer(Func<long[], long[]> pick) : PrunerBase
    {
        public override string Name => "keep";
        public override long[]? BeforeFirstLayer(Probe visual) => pick(visual.Visual);
        public override ProbeNeed Need(int layer) => ProbeNeed.None;
        public override long[]? After(int layer, Probe probe) => null;
    }

    [Theory]
    [InlineData("qwen2_vl")]
    [InlineData("qwen2_5_vl")]
    public void PrunedTokensKeepTheirOriginalMropePositions(string family)
    {
        using var e = QwenFixtures.Load(family);
        var c = QwenFixtures.Case(family, "image_wide");
        var (images, marker) = QwenFixtures.Encode(e, c);
        var prompt = QwenFixtures.Prompt(e, c, images, marker);
        using var _ = torch.inference_mode();
        var embeds = prompt.Embed(e.Language);
        // Drop every other visual token before layer 0: what remains must run exactly as a prompt
        // holding only those tokens at their original (t, h, w) positions.
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        using var pruned = PrunedPrefill.Run(e.Language, embeds, prompt.Positions, prompt.Spans,
            new KeepBeforeFirstLayer(v => v.Where((_, i) => i % 2 == 0).ToArray()), cache);
        var rows = pruned.Rows;
        Assert.Equal(prompt.Length - 6, rows.Length);
        var kept = prompt.Positions.Select(rows);
        Assert.Equal(kept.T, cache.Layers[0].Source.Positions.ToArray());
        var reference = e.Decoder.Forward(embeds.index_select(1, torch.tensor(rows)), new DecoderStep { Positions = kept });
        Assert.True(QwenFixtures.RelDiff(pruned.Hidden, reference) < 1e-5);
        // Renumbered positions (the kept tokens closed up) give another result: the positions matter here.
        var renumbered = e.Decoder.Forward(embeds.index_select(1, torch.tensor(rows)), new DecoderStep
        {
            Positions = new PositionIds(kept.T, kept.T, kept.T),
        });
        Assert.True(QwenFixtures.RelDiff(renumbered, reference) > 1e-3);

        // The real VisiPruner (a schedule a 2-layer model can run: filter after layer 0, exit at 2) runs and reports.
        var schedule = new PruningConfig { ShallowLayers = 0, FilterFrom = 0, DeadlineLayer = 0, Budget = 3, ExitLayer = 2 };
        using var cache2 = new KvCache(e.Text.NumHiddenLayers);
        using var vp = PrunedPrefill.Run(e.Language, embeds, prompt.Positions, prompt.Spans, schedule.CreatePruner(2), cache2);
        Assert.Equal(3, vp.Report.KeptTokens);
        Assert.Equal(new[] { 12, 3 }, vp.Report.Layers.Select(l => l.Visual));
        var layer1 = cache2.Layers[1].Source.Positions.ToArray();
        Assert.Equal(prompt.Positions.Select(Enumerable.Range(0, prompt.Length).Where(i => !prompt.FeatureSlots.Contains(i) || vp.Report.KeptVisual.Contains(i)).Select(i => (long)i).ToArray()).T, layer1);
        foreach (var i in images) i.Dispose();
    }

    [Theory]
    [InlineData("qwen2_vl", "image_wide", "images/wide_150x100.png")]
    [InlineData("qwen2_5_vl", "image_landscape", "images/landscape_53x37.png")]
    public async Task RaCaptionGivesHfsGreedyTokens(string family, string name, string image)
    {
        var c = QwenFixtures.Case(family, name);
        var stdout = new StringWriter();
        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(stdout);
            code = await CaptionCommand.Create().Parse(["-m", QwenFixtures.Folder(family), "-i", Path.Combine(QwenFixtures.Root, image), "--prompt", c.PromptText,
                "--max-new-tokens", "8", "--json", "--device", "cpu"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        var line = stdout.ToString().Split('\n').Single(l => l.StartsWith("{\"text\""));
        var json = JsonNode.Parse(line)!;
        Assert.Equal(c.GreedyTokens, json["tokens"]!.AsArray().Select(t => t!["id"]!.GetValue<int>()));
        Assert.Equal(c.InputIds.Length, json["prompt_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task RaAnalyzeRunsOnImagesOfDifferentSizes()
    {
        // Dynamic resolution: the two images give prompts of 12 and 6 visual tokens, each with its own positions.
        using var dir = new TempDir();
        var images = new[] { "images/wide_150x100.png", "images/portrait_30x61.png" }.Select(f => Path.Combine(QwenFixtures.Root, f)).ToArray();
        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(TextWriter.Null);
            code = await AnalyzeCommand.Create().Parse(["--model", QwenFixtures.Folder("qwen2_5_vl"), "--images", .. images, "--decode", "4", "--out", dir.Path, "--device", "cpu"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        var analysis = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "analysis.json")))!;
        Assert.Equal(2, analysis["layers"]!.GetValue<int>());
        Assert.Equal(2, analysis["inputs"]!.GetValue<int>());
        Assert.Equal(3, analysis["knockout_agreement"]!.AsArray().Count);
        var proposal = PruningConfig.Load(Path.Combine(dir.Path, "schedule.json"));
        proposal.Validate(2);
        // The resolution rungs are the governor's for the first image, down to the processor's least,
        // each held on every image; the floor follows from the table by the rule, and goes into the schedule.
        using var e = QwenFixtures.Load("qwen2_5_vl");
        var pv = (IPixelBoundedVision)e.Model;
        var rows = analysis["resolution"]!.AsArray();
        Assert.Equal(PixelRungs.For(pv, 100, 150, least: pv.SmallestBound).Bounds.Select(b => b.MaxPixels), rows.Select(r => r!["max_pixels"]!.GetValue<long>()));
        Assert.NotEmpty(rows);
        var tokens = rows.Select(r => r!["visual_tokens"]!.GetValue<double>()).ToList();
        Assert.True(tokens.Zip(tokens.Skip(1)).All(p => p.Second < p.First), string.Join(", ", tokens));
        long own = Math.Min(pv.MaxPixels, 150 * 100);
        var floor = ScheduleProposal.PixelFloor(own, rows.Select(r => (r!["max_pixels"]!.GetValue<long>(), r["frame_share"]!.GetValue<double>())), AnalyzeCommand.FloorAgreement);
        Assert.Equal(floor, analysis["min_frame_pixels"]!.GetValue<long>());
        Assert.Equal(floor, proposal.MinFramePixels);
        Assert.Equal(floor, analysis["proposal"]!["min_frame_pixels"]!.GetValue<long>()); // the proposal as schedule.json writes it
        Assert.All(rows, r => Assert.Equal(r!["max_pixels"]!.GetValue<long>() < floor, r["below_floor"]!.GetValue<bool>()));
    }
    [Fact]
    public async Task RaAnalyze_OnAVideo_ReadsItsFramesEvenlySpaced()
    {
        using var dir = new TempDir();
        var clip = TestMedia.WriteClip(dir.Path, frames: 10);
        // Three of ten frames, each from the middle of its third: 1, 5 and 8, as a plain decode of the file gives them.
        var taken = AnalyzeCommand.VideoFrames(clip, 3, TestContext.Current.CancellationToken);
        var all = new List<Mat>();
        using (var cap = new VideoCapture(clip))
            for (var m = new Mat(); cap.Read(m) && !m.Empty(); m = new Mat()) all.Add(m);
        try
        {
            Assert.Equal(10, all.Count);
            Assert.Equal(3, taken.Count);
            foreach (var (mat, index) in taken.Zip(new[] { 1, 5, 8 }))
                Assert.Equal(0.0, Cv2.Norm(mat, all[index], NormTypes.L1));
            // More frames asked than the file has: each frame once.
            var every = AnalyzeCommand.VideoFrames(clip, 25, TestContext.Current.CancellationToken);
            Assert.Equal(10, every.Count);
            foreach (var m in every) m.Dispose();
        }
        finally { foreach (var m in taken.Concat(all)) m.Dispose(); }

        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(TextWriter.Null);
            code = await AnalyzeCommand.Create().Parse(["--model", QwenFixtures.Folder("qwen2_5_vl"), "--video", clip, "--frames", "2", "--decode", "4", "--out", dir.Path, "--device", "cpu"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        var analysis = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "analysis.json")))!;
        Assert.Equal(2, analysis["inputs"]!.GetValue<int>());
        Assert.NotEmpty(analysis["resolution"]!.AsArray()); // a 160×120 frame above the fixture's least bound
    }
}
