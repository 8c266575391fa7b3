using System.Text.Json.Nodes;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Streaming;

public sealed class StreamingTests : IDisposable
{
    readonly TempDir _dir = new();
    readonly Engine _engine;

    public StreamingTests()
    {
        var cfg = SyntheticCheckpoint.Config(tLayers: 2, imageSize: 16, patch: 8) with { };
        cfg = cfg with { Text = cfg.Text with { MaxPositionEmbeddings = 512 } };
        SyntheticCheckpoint.Write(_dir.Path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)), seed: 5,
            extraConfig: new JsonObject { ["ra_frame_marker"] = "w0", ["ra_instruction"] = "w1 w2", ["ra_group_positions"] = true });
        _engine = Load();
    }

    /// <summary>The checkpoint loaded (again: its layout is read at load), with sharper logits than N(0, 0.02): argmax is a stricter check.</summary>
    Engine Load()
    {
        var engine = Engine.Load(_dir.Path);
        using var _ = torch.no_grad();
        foreach (var p in ((LlavaFamily)engine.Model).Model.parameters()) if (p.dim() == 2) p.mul_(3);
        return engine;
    }

    LlavaModel Llava => ((LlavaFamily)_engine.Model).Model;
    LlavaConfig Cfg => Llava.Config;

    /// <summary>Visual tokens as the vision side would give them (a copy: a session takes ownership of what it reads).</summary>
    EncodedImage Enc(Tensor features)
    {
        int n = (int)features.shape[1], side = Cfg.Vision.PatchesPerSide;
        return new EncodedImage
        {
            Features = features[0].clone(), TokenIds = Enumerable.Repeat(Cfg.ImageTokenIndex, n).ToArray(),
            FeatureSlots = Enumerable.Range(0, n).ToArray(), GridH = side, GridW = side,
        };
    }

    public void Dispose() { _engine.Dispose(); _dir.Dispose(); }

    Tensor Frame(int seed) => torch.randn(new long[] { 1, Cfg.ImageTokens, _engine.Text.HiddenSize }, generator: new Generator((ulong)seed));

    StreamingOptions Options(int window = 8, bool rebase = true) => new()
    {
        WindowFrames = window, RebaseOnEvict = rebase,
        Generation = new GenerationOptions { MaxNewTokens = 6, StopTokens = Array.Empty<int>() },
    };

    static int[] Ids(IEnumerable<TokenEvent> events) => events.Where(e => e.Id >= 0).Select(e => e.Id).ToArray();

    /// <summary>One batch forward over [frames, instruction, caption] with group positions, greedy.</summary>
    /// <param name="band">0: causal. W: the band training uses for a session with window W (DemoBatcher.BandMask).</param>
    /// <param name="sparedFrom">Sparing the newest frame (KeepNewestFrame): from this layer on an image token is seen only by its own frame's tokens, and the instruction and caption see the newest frame's only.</param>
    int[] BatchReference(IReadOnlyList<Tensor> frames, int[] caption, int band = 0, int? frameBand = null, int? sparedFrom = null)
    {
        using var _ = torch.no_grad();
        var m = Llava;
        int n = Cfg.ImageTokens;
        var marker = _engine.Tokenizer.TokenToId("w0")!.Value;
        var instruction = _engine.Tokenizer.Encode("w1 w2", false);
        var ids = new List<long>();
        foreach (var __ in frames) { ids.AddRange(Enumerable.Repeat((long)Cfg.ImageTokenIndex, n)); ids.Add(marker); }
        ids.AddRange(instruction.Select(i => (long)i));
        int source = ids.Count;
        ids.AddRange(caption.Take(caption.Length - 1).Select(i => (long)i));
        var slots = Enumerable.Range(0, frames.Count).SelectMany(f => Enumerable.Range(f * (n + 1), n)).Select(i => (long)i).ToArray();
        var feats = torch.cat(frames.ToArray(), 1);
        var embeds = m.Embed(torch.tensor(ids.ToArray()).view(1, -1), feats, slots);
        // Source at 0..S−1, target restarting at φ = 0; causal mask: the source precedes the target.
        // With a band, the target counts from the first frame the window still holds.
        long origin = band > 0 ? (long)(frames.Count - band) * (n + 1) : 0;
        var positions = Enumerable.Range(0, ids.Count).Select(i => i < source ? i : origin + i - source).ToArray();
        using var mask = band > 0 ? RealtimeAssistant.Training.DemoBatcher.BandMask(ids.Count, frames.Count, n + 1, band, torch.CPU, frameBand) : null;
        Tensor? deep = null;
        if (sparedFrom is not null)
        {
            int T = ids.Count, F = frames.Count;
            int FrameOf(int i) => i < F * (n + 1) ? i / (n + 1) : F - 1; // the instruction and caption go with the newest frame
            bool IsImage(int i) => i < F * (n + 1) && i % (n + 1) < n;
            var allowed = new bool[T * T];
            for (int r = 0; r < T; r++)
                for (int c = 0; c <= r; c++) allowed[r * T + c] = !IsImage(c) || FrameOf(c) == FrameOf(r);
            deep = torch.tensor(allowed).view(T, T);
        }
        var logits = m.language_model.Logits(m.Decoder.Forward(embeds, new DecoderStep
        {
            Positions = positions.Select(x => (long)x).ToArray(), Mask = mask, Plan = deep is null ? null : new MaskPlan(mask, deep, sparedFrom!.Value),
        }));
        return Enumerable.Range(source - 1, caption.Length).Select(i => (int)logits[0, i].argmax().item<long>()).ToArray();
    }

    [Fact]
    public void SessionCaptionsEqualOneBatchForwardWithGroupPositions()
    {
        using var session = new GpeSession(_engine, Options());
        var frames = Enumerable.Range(1, 4).Select(Frame).ToList();
        foreach (var f in frames.Take(3)) session.Read(Enc(f));
        var first = Ids(session.Write());
        Assert.Equal(6, first.Length);
        Assert.Equal(BatchReference(frames.Take(3).ToList(), first), first);
        // After a write, a new frame never sees the old instruction or caption.
        session.Read(Enc(frames[3]));
        var second = Ids(session.Write());
        Assert.Equal(BatchReference(frames, second), second);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AfterEvictionTheSessionEqualsTheBandedBatchForwardTrainingUses(bool rebase)
    {
        // Window 2 over 5 frames: every frame's KV was computed with the frame before it, some of
        // them since evicted. One forward with the training band mask must give the same caption.
        using var session = new GpeSession(_engine, Options(window: 2, rebase: rebase));
        var frames = Enumerable.Range(11, 5).Select(Frame).ToList();
        foreach (var f in frames) session.Read(Enc(f));
        Assert.Equal(2, session.FramesInWindow);
        var caption = Ids(session.Write());
        Assert.Equal(BatchReference(frames, caption, band: 2), caption);
        // …and not what a fresh forward over the last two frames alone gives (re-encoding): the
        // older frame's keys remember the evicted one, which is why training uses the band.
        Assert.NotEqual(BatchReference(frames.TakeLast(2).ToList(), caption), caption);
    }

    [Fact]
    public void AFrameBandLimitsWhatEachFrameSees_TheCaptionStillSeesTheWindow()
    {
        // Window 4, frame band 2, over 6 frames: each frame attends only the frame before it.
        using var session = new GpeSession(_engine, Options(window: 4, rebase: false) with { FrameBand = 2 });
        var frames = Enumerable.Range(21, 6).Select(Frame).ToList();
        foreach (var f in frames.Take(5)) session.Read(Enc(f));
        var caption = Ids(session.ReadAndWrite(Enc(frames[5])));
        Assert.Equal(4, session.FramesInWindow);
        Assert.Equal(BatchReference(frames, caption, band: 4, frameBand: 2), caption);
        Assert.NotEqual(BatchReference(frames, caption, band: 4), caption); // the band changed what frames saw
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options(window: 4) with { FrameBand = 5 }));
    }

    /// <summary>
    /// The re-encoding baseline rebuilds the window with the same band: each frame's tokens see
    /// the frame before theirs and not earlier ones, as they did when GPE read them, so the
    /// caption is GPE's; without the band the rebuild lets every frame see the whole window.
    /// </summary>
    [Fact]
    public void ReEncodingWithAFrameBand_MatchesGpe_AndTheBandChangesItsCaption()
    {
        var o = Options(window: 4, rebase: false) with { FrameBand = 2 };
        using var gpe = new GpeSession(_engine, o);
        using var re = new ReEncodingSession(_engine, o);
        using var unbanded = new ReEncodingSession(_engine, o with { FrameBand = 4 });
        var frames = Enumerable.Range(31, 4).Select(Frame).ToList();
        foreach (ICaptionSession s in new ICaptionSession[] { gpe, re, unbanded })
            foreach (var f in frames) s.Read(Enc(f));
        var caption = Ids(gpe.Write());
        Assert.Equal(caption, Ids(re.Write()));
        Assert.NotEqual(caption, Ids(unbanded.Write()));
    }

    /// <summary>Sets one key of the checkpoint's config.json (the engine reads it when it loads).</summary>
    void SetConfig(string key, JsonNode? value)
    {
        var path = Path.Combine(_dir.Path, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        cfg[key] = value;
        File.WriteAllText(path, cfg.ToJsonString());
    }

    [Fact]
    public void WithoutAFrameBand_FramesAttendTheSpanTheModelWasTrainedWith()
    {
        // ra_frame_band 2 (the model's frames attended two frames in training), window 4.
        SetConfig("ra_frame_band", 2);
        using var engine = Load();
        var frames = Enumerable.Range(21, 6).Select(Frame).ToList(); // frames on which band 2 and the whole window caption differently (test above)
        int[] Caption(GpeSession s)
        {
            foreach (var f in frames.Take(5)) s.Read(Enc(f));
            return Ids(s.ReadAndWrite(Enc(frames[5])));
        }
        using var byModel = new GpeSession(engine, Options(window: 4, rebase: false));
        using var whole = new GpeSession(engine, Options(window: 4, rebase: false) with { FrameBand = 4 });
        Assert.Equal(2, byModel.FrameBand);
        Assert.Equal(4, whole.FrameBand);
        var caption = Caption(byModel);
        Assert.Equal(BatchReference(frames, caption, band: 4, frameBand: 2), caption);
        var wholeCaption = Caption(whole); // an explicit band of W overrides the model's
        Assert.Equal(BatchReference(frames, wholeCaption, band: 4), wholeCaption);
        Assert.NotEqual(caption, wholeCaption);
        // A window narrower than the trained span is the whole band; a pruned session has the model's band too.
        using (var narrow = new GpeSession(engine, Options(window: 1))) Assert.Equal(1, narrow.FrameBand);
        var pruning = new RealtimeAssistant.Pruning.PruningConfig { Method = "random", FastvK = 0, RandomKeep = 2 };
        using (var pruned = new GpeSession(engine, Options(window: 4) with { Pruning = pruning })) Assert.Equal(2, pruned.FrameBand);
        // A malformed value is the checkpoint's fault, said in one line when it loads.
        foreach (var bad in new JsonNode?[] { 0, 2.5, "two" })
        {
            SetConfig("ra_frame_band", bad);
            var e = Assert.Throws<UserError>(() => Engine.Load(_dir.Path));
            Assert.Contains("ra_frame_band", e.Message);
        }
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("window", 32)]
    [InlineData("3", 3)]
    public void FrameBandOptionReadsANumberOrWindow(string? value, int? expected) =>
        Assert.Equal(expected, RealtimeAssistant.Cli.Cli.FrameBand(value, 32));

    [Fact]
    public void FrameBandOptionRejectsWords() =>
        Assert.Contains("'window'", Assert.Throws<UserError>(() => RealtimeAssistant.Cli.Cli.FrameBand("all", 32)).Message);

    [Theory]
    [InlineData(null, "none")]
    [InlineData(2, "none")] // the frame scores the band's keys, the instruction all of them, in the same pass
    [InlineData(null, "spare")] // the schedule's rung: the newest frame spared, the one before it leaves layer 1 first
    [InlineData(2, "spare")] // and the band's keys then differ by layer
    [InlineData(null, "exit")] // a rung that prunes the new frame: the instruction rides behind it in the pruned pass
    [InlineData(2, "exit")] // a band that cuts the frame's view: read alone, then the write
    [InlineData(null, "shallow")] // a shallow stage bars text from the new frame only in its own pass: read alone too
    public void ReadAndWriteInOnePassEqualsReadThenWrite(int? frameBand, string rung)
    {
        var pruning = rung switch
        {
            "spare" => new RealtimeAssistant.Pruning.PruningConfig { Method = "visipruner", ShallowLayers = 0, KeepNewestFrame = true, OlderFramesExitLayer = 1 },
            "exit" => new RealtimeAssistant.Pruning.PruningConfig { Method = "visipruner", ShallowLayers = 0, FilterFrom = 1, ExitLayer = 1 },
            "shallow" => new RealtimeAssistant.Pruning.PruningConfig { Method = "visipruner", ShallowLayers = 1, FilterFrom = 1, ExitLayer = 2 },
            _ => null,
        };
        var o = Options(window: 3, rebase: false) with { CaptionHistoryTokens = 4, FrameBand = frameBand, Pruning = pruning };
        using var separate = new GpeSession(_engine, o);
        using var fused = new GpeSession(_engine, o);
        for (int i = 1; i <= 7; i++)
        {
            if (i % 2 == 0)
            {
                separate.Read(Enc(Frame(i)));
                var read = separate.Last;
                var a = Ids(separate.Write());
                Assert.Equal(a, Ids(fused.ReadAndWrite(Enc(Frame(i)))));
                // The fused report says what the read alone said about the frame's pruning.
                Assert.Equal(read.Level, fused.Last.Level);
                Assert.Equal(read.VisualPerLayer, fused.Last.VisualPerLayer);
                Assert.Equal(read.Prune?.KeptVisual, fused.Last.Prune?.KeptVisual);
                if (rung is "exit" or "shallow") Assert.Equal("read+write", fused.Last.Kind);
            }
            else { separate.Read(Enc(Frame(i))); fused.Read(Enc(Frame(i))); }
            // The same cache afterwards: the frame stays, the instruction has left, the window holds.
            for (int l = 0; l < separate.Cache.Layers.Length; l++)
            {
                Assert.Equal(separate.Cache.Layers[l].Source.Positions.ToArray(), fused.Cache.Layers[l].Source.Positions.ToArray());
                Assert.Equal(separate.Cache.Layers[l].Target.Positions.ToArray(), fused.Cache.Layers[l].Target.Positions.ToArray());
                Assert.True(separate.Cache.Layers[l].Source.Keys.allclose(fused.Cache.Layers[l].Source.Keys, rtol: 1e-4, atol: 1e-5), $"layer {l}: source keys differ");
            }
        }
        Assert.Equal(3, fused.FramesInWindow);
        Assert.Equal(Ids(separate.Write("w3 w4")), Ids(fused.Write("w3 w4")));
    }

    [Fact]
    public void UpdateCostDoesNotDependOnStreamLength()
    {
        using var session = new GpeSession(_engine, Options(window: 4));
        var costs = new Dictionary<int, (int Read, int Write)>();
        for (int i = 1; i <= 100; i++)
        {
            session.Read(Enc(Frame(i)));
            var read = session.Last.DecoderTokens;
            if (i is 10 or 100) { Ids(session.Write()); costs[i] = (read, session.Last.DecoderTokens); }
        }
        Assert.Equal(costs[10], costs[100]);
        Assert.Equal(Cfg.ImageTokens + 1, costs[100].Read);
    }

    [Fact]
    public void EvictionWithRotationHoldsTheSameCacheAsUnshiftedPositions()
    {
        using var _ = torch.no_grad();
        using var rebased = new GpeSession(_engine, Options(window: 3, rebase: true));
        using var plain = new GpeSession(_engine, Options(window: 3, rebase: false));
        for (int i = 1; i <= 6; i++) { rebased.Read(Enc(Frame(i))); plain.Read(Enc(Frame(i))); }
        var a = rebased.Cache.Layers[1].Source;
        var b = plain.Cache.Layers[1].Source;
        Assert.Equal(0, a.Positions[0]);
        long delta = b.Positions[0];
        Assert.Equal(3 * (Cfg.ImageTokens + 1), delta); // three frames left the window
        Assert.Equal(b.Positions.ToArray().Select(p => p - delta), a.Positions.ToArray());
        // Rotating the re-based keys forward by Δ gives back the keys at the original positions:
        // under RoPE only relative positions matter, so every later attention score is unchanged.
        var back = _engine.Decoder.Rope.ShiftKeys(a.Keys, -delta);
        var relative = (back - b.Keys).abs().max().item<float>() / b.Keys.abs().max().item<float>();
        Assert.True(relative < 1e-5, $"relative key error {relative}");
        // Values of frames read after a re-base come from rotated keys one layer down: equal up to float error.
        var valueError = (a.Values - b.Values).abs().max().item<float>() / b.Values.abs().max().item<float>();
        Assert.True(valueError < 1e-5, $"relative value error {valueError}");
        // Unrotated, the target counts from the source's first position: the same relative
        // positions, so the same caption, token for token.
        Assert.Equal(Ids(rebased.Write()), Ids(plain.Write()));
    }

    [Fact]
    public void LazyRebaseKeepsPositionsInRangeOverALongStream()
    {
        // No per-frame rotation: positions grow until the next frame and caption would pass
        // max_position_embeddings, then everything is rotated back at once.
        using var session = new GpeSession(_engine, Options(window: 3, rebase: false));
        var frames = Enumerable.Range(0, 4).Select(Frame).ToArray();
        int max = _engine.Text.MaxPositionEmbeddings, perFrame = Cfg.ImageTokens + 1;
        int total = 3 * max / perFrame; // enough frames to pass the position limit about three times
        long highest = 0;
        bool rotated = false;
        for (int i = 0; i < total; i++)
        {
            long before = session.NextSourcePosition;
            session.Read(Enc(frames[i % frames.Length]));
            rotated |= session.NextSourcePosition < before;
            highest = Math.Max(highest, session.NextSourcePosition);
        }
        Assert.True(rotated, "positions were never rotated back");
        Assert.True(highest < max, $"source reached position {highest} of {max}");
        Assert.Equal(3 * perFrame, session.Cache.Layers[1].Source.Length);
        Assert.Equal(6, Ids(session.Write()).Length);
        Assert.True(session.Cache.Layers[0].Target.Positions[^1] < max);
    }

    [Fact]
    public void RotatingCachedKeysEqualsComputingThemAtShiftedPositions()
    {
        using var _ = torch.no_grad();
        var rope = _engine.Decoder.Rope;
        var k = torch.randn(1, 2, 5, _engine.Text.HeadDim);
        var at = torch.tensor(new long[] { 100, 101, 102, 103, 104 });
        var (c1, s1) = rope.Tables(at, ScalarType.Float32);
        var (c2, s2) = rope.Tables(at - 100, ScalarType.Float32);
        var rotated = rope.ShiftKeys(Rope.Apply(k, c1, s1), 100);
        var direct = Rope.Apply(k, c2, s2);
        Assert.True((rotated - direct).abs().max().item<float>() < 1e-4);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // the default: lazy re-basing
    public void CacheStaysFlatOverTenThousandFrames(bool rebase)
    {
        using var session = new GpeSession(_engine, Options(window: 4, rebase: rebase));
        long bytesAt100 = 0;
        var frames = Enumerable.Range(0, 8).Select(Frame).ToArray();
        for (int i = 1; i <= 10_000; i++)
        {
            session.Read(Enc(frames[i % frames.Length]));
            if (i == 100) bytesAt100 = session.Cache.AllocatedBytes;
        }
        Assert.Equal(bytesAt100, session.Cache.AllocatedBytes);
        Assert.Equal(4, session.FramesInWindow);
        Assert.Equal(4 * (Cfg.ImageTokens + 1), session.Cache.Layers[1].Source.Length);
        Assert.True(session.NextSourcePosition < (rebase ? 4 * (Cfg.ImageTokens + 1) + 1 : _engine.Text.MaxPositionEmbeddings));
    }

    [Fact]
    public void QuestionMidStreamIsAnsweredAndTheStreamGoesOn()
    {
        using var session = new GpeSession(_engine, Options(window: 3) with { CaptionHistoryTokens = 4 });
        for (int i = 1; i <= 3; i++) session.Read(Enc(Frame(i)));
        var answer = Ids(session.Write("w3 w4 w5"));
        Assert.Equal(6, answer.Length);
        var sourceAfter = session.Cache.Layers[0].Source.Length;
        Assert.Equal(3 * (Cfg.ImageTokens + 1), sourceAfter); // the question left the source
        session.Read(Enc(Frame(4)));
        var caption = Ids(session.Write());
        Assert.Equal(6, caption.Length);
        Assert.True(session.Cache.Layers[0].Target.Length <= 4 + 5);
        Assert.Equal(0, session.Cache.Layers[0].Target.Positions[0]);
    }

    [Fact]
    public void ReEncodingReEncodesTheCaptionHistory_AndMatchesGpeWhileTheSourceIsUnchanged()
    {
        // Writes with no read between them: GPE's kept caption tokens were computed against the
        // very source the rebuild re-encodes them against, so the captions agree until the history
        // is cut (GPE's kept tokens still carry what they saw of the tokens cut before them).
        var o = Options(window: 5) with { CaptionHistoryTokens = 12 };
        using var gpe = new GpeSession(_engine, o);
        using var re = new ReEncodingSession(_engine, o);
        using var alone = new GpeSession(_engine, Options(window: 5));
        foreach (ICaptionSession s in new ICaptionSession[] { gpe, re, alone })
            for (int i = 1; i <= 3; i++) s.Read(Enc(Frame(i)));
        var withHistory = new List<int[]>();
        var withoutHistory = new List<int[]>();
        int source = 3 * (Cfg.ImageTokens + 1) + 2;
        for (int w = 0; w < 3; w++)
        {
            var g = Ids(gpe.Write());
            Assert.Equal(g, Ids(re.Write()));
            withHistory.Add(g);
            withoutHistory.Add(Ids(alone.Write()));
            // A caption of 6 tokens feeds 5 back into the target: the next rebuild re-encodes them.
            Assert.Equal(source + 5 * w + 5, re.Last.DecoderTokens);
        }
        // The history is what made the later captions: without it the same writes say something else.
        Assert.Equal(withoutHistory[0], withHistory[0]);
        Assert.NotEqual(withoutHistory.Skip(1).SelectMany(x => x), withHistory.Skip(1).SelectMany(x => x));
        // 15 tokens fed back: the fourth rebuild re-encodes the last 12.
        Assert.Equal(6, Ids(re.Write()).Length);
        Assert.Equal(source + 12 + 5, re.Last.DecoderTokens);
    }

    [Fact]
    public void BaselinesRunBehindTheSameInterface_ReEncodingMatchesGpe()
    {
        var o = Options(window: 5); // no eviction yet: re-encoding sees exactly what GPE holds
        using var gpe = new GpeSession(_engine, o);
        using var re = new ReEncodingSession(_engine, o);
        using var inter = new InterleavedSession(_engine, o);
        foreach (ICaptionSession s in new ICaptionSession[] { gpe, re, inter })
            for (int i = 1; i <= 5; i++) s.Read(Enc(Frame(i)));
        // Re-encoding rebuilds the same prompt with the same group positions: the same caption.
        Assert.Equal(Ids(gpe.Write()), Ids(re.Write()));
        Assert.True(re.Last.DecoderTokens > gpe.Last.DecoderTokens);
        Assert.Equal(6, Ids(inter.Write()).Length);
        inter.Read(Enc(Frame(6)));
        Assert.Equal(6, Ids(inter.Write()).Length);
    }

    [Fact]
    public void PrunedFramesKeepPerLayerCountsThroughEviction()
    {
        // Random pruning after layer 0, 2 tokens per frame: layer 0 holds whole frames, layer 1
        // only what survived. Eviction must remove each layer's own share of the oldest frame.
        var pruning = new RealtimeAssistant.Pruning.PruningConfig { Method = "random", FastvK = 0, RandomKeep = 2 };
        using var session = new GpeSession(_engine, Options(window: 3, rebase: false) with { Pruning = pruning });
        int n = Cfg.ImageTokens;
        for (int i = 1; i <= 10; i++)
        {
            session.Read(Enc(Frame(i)));
            int inWindow = Math.Min(i, 3);
            Assert.Equal(inWindow * (n + 1), session.Cache.Layers[0].Source.Length);
            Assert.Equal(inWindow * (2 + 1), session.Cache.Layers[1].Source.Length);
        }
        Assert.Equal(2, session.Last.Prune!.KeptTokens);
        Assert.Equal(6, Ids(session.Write()).Length);
        Assert.Equal(3 * (2 + 1), session.Cache.Layers[1].Source.Length); // the instruction left again
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options() with { Pruning = pruning with { RandomKeep = -1 } }));
    }

    [Fact]
    public void SparingTheNewestFrame_OlderFramesLeaveTheDeepLayersWhenTheNextArrives()
    {
        // KeepNewestFrame: each frame enters whole; when the next arrives it becomes an older frame
        // and its image tokens leave layers ≥ older_frames_exit_layer (its marker stays).
        var spare = new RealtimeAssistant.Pruning.PruningConfig { ShallowLayers = 0, FilterFrom = 1, ExitLayer = 1, KeepNewestFrame = true, OlderFramesExitLayer = 1 };
        using var session = new GpeSession(_engine, Options(window: 3, rebase: false) with { Pruning = spare });
        int n = Cfg.ImageTokens;
        var frames = Enumerable.Range(61, 5).Select(Frame).ToList();
        for (int i = 0; i < frames.Count; i++)
        {
            session.Read(Enc(frames[i]));
            int inWindow = Math.Min(i + 1, 3);
            Assert.Equal(inWindow * (n + 1), session.Cache.Layers[0].Source.Length);
            Assert.Equal(n + 1 + (inWindow - 1), session.Cache.Layers[1].Source.Length);
            if (i == 2)
            {
                // Three frames, none evicted yet: the caption equals one batch forward in which, from
                // layer 1 on, image tokens are seen only within their own frame and the instruction
                // and caption see the newest frame's.
                var ids = Ids(session.Write());
                Assert.Equal(n + 1 + 2, session.Cache.Layers[1].Source.Length); // the instruction left again
                Assert.Equal(BatchReference(frames.Take(3).ToList(), ids, sparedFrom: 1), ids);
                Assert.NotEqual(BatchReference(frames.Take(3).ToList(), ids), ids);
            }
        }
        // Demotion needs a fixed exit: the exit test cannot run on a frame already read.
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options() with { Pruning = spare with { ExitLayer = null, OlderFramesExitLayer = null } }));
    }

    [Fact]
    public void APrunedFrameAttendsItsBand_EachLayerSkippingItsOwnShare()
    {
        var frames = Enumerable.Range(41, 7).Select(Frame).ToList();
        // A pruner that keeps every token runs the pruned prefill's own attention: with band 2 it
        // must match the unpruned session with band 2, captions and cached keys.
        var keepAll = new RealtimeAssistant.Pruning.PruningConfig { Method = "fastv", FastvK = 0, FastvKeep = 1.0 };
        using var plain = new GpeSession(_engine, Options(window: 4, rebase: false) with { FrameBand = 2 });
        using var pruned = new GpeSession(_engine, Options(window: 4, rebase: false) with { FrameBand = 2, Pruning = keepAll });
        using var whole = new GpeSession(_engine, Options(window: 4, rebase: false) with { FrameBand = 4, Pruning = keepAll });
        foreach (var f in frames) { plain.Read(Enc(f)); pruned.Read(Enc(f)); whole.Read(Enc(f)); }
        for (int l = 0; l < plain.Cache.Layers.Length; l++)
            Assert.True(plain.Cache.Layers[l].Source.Keys.allclose(pruned.Cache.Layers[l].Source.Keys, rtol: 1e-4, atol: 1e-5), $"layer {l}: keys differ");
        Assert.False(whole.Cache.Layers[1].Source.Keys.allclose(pruned.Cache.Layers[1].Source.Keys, rtol: 1e-4, atol: 1e-5), "the band changed nothing");
        Assert.Equal(Ids(plain.Write()), Ids(pruned.Write()));

        // Real pruning (2 tokens per frame after layer 0): layer 0 skips whole frames, layer 1
        // their survivors; the window and each layer's share stay as the schedule says.
        var two = new RealtimeAssistant.Pruning.PruningConfig { Method = "random", FastvK = 0, RandomKeep = 2 };
        using var banded = new GpeSession(_engine, Options(window: 3, rebase: false) with { FrameBand = 2, Pruning = two });
        using var full = new GpeSession(_engine, Options(window: 3, rebase: false) with { FrameBand = 3, Pruning = two });
        foreach (var f in frames) { banded.Read(Enc(f)); full.Read(Enc(f)); }
        int n = Cfg.ImageTokens;
        Assert.Equal(3 * (n + 1), banded.Cache.Layers[0].Source.Length);
        Assert.Equal(3 * (2 + 1), banded.Cache.Layers[1].Source.Length);
        Assert.False(full.Cache.Layers[1].Source.Keys.allclose(banded.Cache.Layers[1].Source.Keys, rtol: 1e-4, atol: 1e-5), "the band changed nothing");
        Assert.Equal(6, Ids(banded.Write()).Length);
    }

    [Fact]
    public void BadOptionsAreUserErrors()
    {
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options() with { WindowFrames = 0 }));
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options() with { TargetStart = 100_000 }));
        Assert.Throws<UserError>(() => new GpeSession(_engine, Options() with { CaptionHistoryTokens = -1 }));
    }
}
