using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace RealtimeAssistant.Tests.Pruning;

public class PruningTests
{
    const int Layers = 6;

    static LanguageModel Model(int layers = Layers, long seed = 3, int heads = 4, int kvHeads = 2)
    {
        var cfg = SyntheticCheckpoint.Config(tLayers: layers, heads: heads, kvHeads: kvHeads);
        var lm = new LanguageModel(cfg.Text, TensorSpec.Cpu32);
        ModelInit.Initialize(lm, seed);
        using (torch.no_grad()) foreach (var p in lm.parameters()) if (p.dim() == 2) p.mul_(4); // peakier attention than init
        lm.eval();
        return lm;
    }

    /// <summary>[3 text, 16 visual (frame 0), 2 text, 16 visual (frame 1), 4 text].</summary>
    static (Tensor Embeds, long[] Positions, List<VisualSpan> Spans) Prompt(LanguageModel lm, long offset = 0, int seed = 11)
    {
        var spans = new List<VisualSpan> { new(3, 16, 0), new(21, 16, 1) };
        int T = 41;
        var ids = torch.randint(4, 64, new long[] { 1, T }, dtype: ScalarType.Int64, generator: new Generator((ulong)seed));
        var emb = lm.model.embed_tokens.forward(ids);
        var vis = torch.randn(new long[] { 1, 32, emb.shape[2] }, generator: new Generator((ulong)seed + 1)) * 0.5;
        emb = emb.index_copy(1, torch.tensor(spans.SelectMany(s => Enumerable.Range(s.Start, s.Length)).Select(i => (long)i).ToArray()), vis);
        return (emb, Enumerable.Range(0, T).Select(i => offset + i).ToArray(), spans);
    }

    /// <summary>
    /// The slow reference, built as the authors built theirs: every token goes through every layer,
    /// and pruning is a mask. present[i] = visual tokens that layer i may see as keys. Trailing
    /// <paramref name="decodeRows"/> rows are decode tokens (no shallow rule: they see what each layer kept).
    /// </summary>
    static Tensor MaskReference(LanguageModel lm, Tensor emb, long[] pos, List<VisualSpan> spans, int s, bool sink, long[][] present, int decodeRows = 0)
    {
        int T = (int)emb.shape[1], prompt = T - decodeRows;
        var frameOf = Enumerable.Repeat(-1, T).ToArray();
        foreach (var sp in spans) for (int i = sp.Start; i < sp.Start + sp.Length; i++) frameOf[i] = sp.Frame;
        var sinks = spans.Select(sp => sp.Start).ToHashSet();
        var (cos, sin) = lm.model.Rope.Tables(torch.tensor(pos), emb.dtype);
        var h = emb;
        for (int li = 0; li < lm.model.layers.Count; li++)
        {
            var here = present[li].ToHashSet();
            var m = new bool[T * T];
            for (int r = 0; r < T; r++)
                for (int c = 0; c <= r; c++)
                {
                    bool vis = frameOf[c] >= 0, ok = !vis || here.Contains(c);
                    if (li < s && r < prompt)
                    {
                        if (frameOf[r] < 0 && vis) ok = ok && sink && sinks.Contains(c);
                        if (li == 0 && frameOf[r] >= 0) ok = c == r || !vis;
                    }
                    if (frameOf[r] >= 0 && !here.Contains(r) && c == r) ok = true; // pruned rows: keep softmax finite
                    m[r * T + c] = ok;
                }
            var mask = torch.tensor(m).view(T, T);
            var layer = lm.model.layers[li];
            var (q, k, v) = layer.self_attn.Project(layer.input_layernorm.forward(h), cos, sin);
            h = h + layer.self_attn.Output(layer.self_attn.Attend(q, k, v, mask));
            h = h + layer.mlp.forward(layer.post_attention_layernorm.forward(h));
        }
        return lm.model.norm.forward(h);
    }

    static long[] TextRows(int T, List<VisualSpan> spans) =>
        Enumerable.Range(0, T).Where(i => !spans.Any(s => i >= s.Start && i < s.Start + s.Length)).Select(i => (long)i).ToArray();

    [Fact]
    public void PruningOff_EqualsTheEngineExactly()
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        using var c1 = new KvCache(Layers);
        using var c2 = new KvCache(Layers);
        var engine = lm.model.Forward(emb, new DecoderStep { Positions = pos, Cache = c1 });
        using var r = PrunedPrefill.Run(lm, emb, pos, spans, new NonePruner(), c2);
        Assert.Equal(0f, (engine - r.Hidden).abs().max().item<float>());
        for (int i = 0; i < Layers; i++) Assert.True(c1.Layers[i].Source.Keys.equal(c2.Layers[i].Source.Keys).all().item<bool>());
        Assert.Equal(32, r.Report.KeptTokens);
        Assert.Equal(PrunedPrefill.DenseFlops(lm.Config, 41), r.Report.Flops, 6);
    }

    public static TheoryData<string> Configs => new()
    {
        """{"shallow_layers": 2, "layer_threshold": 1.0, "tokens_threshold": 0.0, "exit_layer": 5}""",
        """{"shallow_layers": 1, "budget": 3, "deadline_layer": 3, "layer_threshold": 0.01}""",
        """{"shallow_layers": 2, "sink": false, "budget": 4, "deadline_layer": 4, "layer_threshold": 0.01, "exit_threshold": 0.01, "exit_passes": 1}""",
        """{"method": "fastv", "fastv_k": 1, "fastv_keep": 0.25}""",
        // The older frame's exit cuts inside the shallow stage (the newest is spared): the split
        // attention's visual rows are dropped mid-layer.
        """{"shallow_layers": 3, "keep_newest_frame": true, "older_frames_exit_layer": 2}""",
    };

    static PruningConfig Parse(string json, TempDir dir)
    {
        var f = dir.File("p.json");
        File.WriteAllText(f, json);
        return PruningConfig.Load(f);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void RealSavings_MatchTheMaskReference_OnTextLogits_AndInDecoding(string json)
    {
        using var _ = torch.no_grad();
        using var dir = new TempDir();
        using var lm = Model();
        var cfg = Parse(json, dir);
        var pruner = cfg.CreatePruner(Layers);
        var (emb, pos, spans) = Prompt(lm);
        using var cache = new KvCache(Layers);
        using var r = PrunedPrefill.Run(lm, emb, pos, spans, pruner, cache);
        Assert.True(r.Report.FilterLayer is not null || r.Report.ExitLayer is not null, "the schedule pruned nothing");
        Assert.True(r.Report.Flops < PrunedPrefill.DenseFlops(lm.Config, 41));

        var present = r.Report.Layers.Select(l => l.VisualPresent).ToArray();
        int s = pruner.ShallowLayers;
        var text = TextRows(41, spans);
        var reference = MaskReference(lm, emb, pos, spans, s, pruner.Sink, present);
        var fast = lm.Logits(r.Hidden[0].index_select(0, torch.tensor(r.Rows.Where(x => text.Contains(x)).Select(x => (long)Array.IndexOf(r.Rows, x)).ToArray())));
        var slow = lm.Logits(reference[0].index_select(0, torch.tensor(text)));
        Assert.True(fast.allclose(slow, 1e-4, 1e-4), $"max abs diff {(fast - slow).abs().max().item<float>()}");

        // Decode two tokens at original, non-contiguous absolute positions (past the cache length).
        long[] dpos = { 50, 51 };
        var ids = torch.tensor(new long[] { 7, 9 }).view(1, 2);
        var outs = new List<Tensor>();
        for (int t = 0; t < 2; t++)
            outs.Add(lm.model.Forward(lm.model.embed_tokens.forward(ids[.., t..(t + 1)]), new DecoderStep { Positions = new[] { dpos[t] }, Cache = cache })[0, 0]);
        var all = torch.cat(new[] { emb, lm.model.embed_tokens.forward(ids) }, 1);
        var refDec = MaskReference(lm, all, pos.Concat(dpos).ToArray(), spans, s, pruner.Sink, present, decodeRows: 2);
        var dec = torch.stack(outs.ToArray());
        Assert.True(dec.allclose(refDec[0, 41..], 1e-4, 1e-4), $"decode max abs diff {(dec - refDec[0, 41..]).abs().max().item<float>()}");
        for (int i = 0; i < Layers; i++) Assert.Equal(dpos, cache.Layers[i].Source.Positions.ToArray()[^2..]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void TrainingsVisualExit_ComputesWhatThePrunersExitComputes(int exit)
    {
        // Prune-aware training masks text→image attention from a layer on; inference drops the
        // image there. The two must agree, or the model would learn a different computation.
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        const int T = 41;
        var slots = spans.SelectMany(s => Enumerable.Range(s.Start, s.Length)).Select(i => (long)i).ToArray();
        using var batch = new RealtimeAssistant.Training.DemoBatch
        {
            Ids = torch.zeros(1, T, ScalarType.Int64), Labels = torch.zeros(1, T, ScalarType.Int64),
            Positions = torch.tensor(pos).view(1, T), ImageSlots = slots,
        };
        var deep = batch.VisualExitMask();
        // Exactly the text-row × image-column entries of the causal mask are cleared.
        var expected = SelfAttention.CausalMask(T, T, torch.CPU).clone();
        foreach (var row in TextRows(T, spans)) foreach (var c in slots) expected[row, c] = false;
        Assert.True(deep.equal(expected).all().item<bool>());

        var trained = lm.model.Forward(emb, new DecoderStep { Positions = pos, Plan = new MaskPlan(null, deep, exit) });
        var pruner = new PruningConfig { ShallowLayers = 0, TokensThreshold = 0, ExitLayer = exit }.CreatePruner(Layers);
        using var r = PrunedPrefill.Run(lm, emb, pos, spans, pruner);
        Assert.Equal(exit - 1, r.Report.ExitLayer);
        Assert.Equal(T - slots.Length, r.Rows.Length);
        var text = torch.tensor(TextRows(T, spans));
        var a = lm.Logits(trained[0].index_select(0, text));
        var b = lm.Logits(r.Hidden[0]);
        Assert.True(a.allclose(b, 1e-4, 1e-4), $"max abs diff {(a - b).abs().max().item<float>()}");
        // And the exit matters: without it the text rows read the image in every layer.
        var full = lm.Logits(lm.model.Forward(emb, new DecoderStep { Positions = pos })[0].index_select(0, text));
        Assert.False(full.allclose(b, 1e-3, 1e-3));
    }

    [Fact]
    public void KeepNewestFrame_TheExitDropsOnlyTheOlderFrames_AsTheMaskReferenceSays()
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        // The filter test never runs (from the last layer); a lone frame would exit after layer 1, older frames after layer 2.
        var cfg = new PruningConfig { ShallowLayers = 0, FilterFrom = Layers - 1, ExitLayer = 2, KeepNewestFrame = true, OlderFramesExitLayer = 3 };
        using var cache = new KvCache(Layers);
        using var r = PrunedPrefill.Run(lm, emb, pos, spans, cfg.CreatePruner(Layers), cache);
        // layers 0..2: all 41; 3..5: 9 text + the newest frame's 16
        Assert.Equal(new long[] { 41, 41, 41, 25, 25, 25 }, cache.Layers.Select(l => l.Source.Length).ToArray());
        var newest = Enumerable.Range(21, 16).Select(i => (long)i).ToArray();
        Assert.Equal(newest, r.Report.KeptVisual);
        Assert.Equal(2, r.Report.ExitLayer);
        var all = spans.SelectMany(sp => Enumerable.Range(sp.Start, sp.Length)).Select(i => (long)i).ToArray();
        var reference = MaskReference(lm, emb, pos, spans, 0, true, Enumerable.Range(0, Layers).Select(li => li < 3 ? all : newest).ToArray());
        var text = TextRows(41, spans);
        var a = lm.Logits(reference[0].index_select(0, torch.tensor(text)));
        var b = lm.Logits(r.Hidden[0].index_select(0, torch.tensor(text.Select(t => (long)Array.IndexOf(r.Rows, t)).ToArray())));
        Assert.True(a.allclose(b, 1e-4, 1e-4), $"max abs diff {(a - b).abs().max().item<float>()}");

        // A lone frame is pruned as usual: all of it exits after layer 1.
        using var lone = new KvCache(Layers);
        using var r1 = PrunedPrefill.Run(lm, emb, pos, spans.Take(1).ToList(), cfg.CreatePruner(Layers), lone);
        Assert.Equal(new long[] { 41, 41, 25, 25, 25, 25 }, lone.Layers.Select(l => l.Source.Length).ToArray());
        Assert.Empty(r1.Report.KeptVisual);

        Assert.Throws<UserError>(() => new PruningConfig { OlderFramesExitLayer = 3 }.Validate(Layers)); // needs keep_newest_frame
        Assert.Throws<UserError>(() => new PruningConfig { KeepNewestFrame = true, OlderFramesExitLayer = Layers + 1 }.Validate(Layers));
    }

    [Fact]
    public void EachLayersCache_HoldsWhatTheScheduleSays_AlsoWhenAFrameIsAppendedLater()
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var cfg = new PruningConfig { ShallowLayers = 1, Budget = 2, DeadlineLayer = 2, LayerThreshold = 0.01, ExitLayer = 5 };
        using var cache = new KvCache(Layers);
        var (emb, pos, spans) = Prompt(lm);
        using var first = PrunedPrefill.Run(lm, emb, pos, spans, cfg.CreatePruner(Layers), cache);
        Assert.Equal(2, first.Report.FilterLayer);
        Assert.Equal(4, first.Report.ExitLayer);
        // layers 0..2: all 41; 3..4: 9 text + 2 per frame; 5: text only
        Assert.Equal(new long[] { 41, 41, 41, 13, 13, 9 }, cache.Layers.Select(l => l.Source.Length).ToArray());
        var keptPos = cache.Layers[3].Source.Positions.ToArray();
        Assert.Equal(keptPos.OrderBy(x => x), keptPos);
        Assert.All(first.Report.KeptVisual, v => Assert.Contains(v, keptPos)); // original position ids kept

        // A later frame (streaming): same layout, positions continue after the first block.
        var before = cache.Layers.Select(l => l.Source.Length).ToArray();
        var (emb2, pos2, spans2) = Prompt(lm, offset: 41, seed: 5);
        using var second = PrunedPrefill.Run(lm, emb2, pos2, spans2, cfg.CreatePruner(Layers), cache);
        for (int i = 0; i < Layers; i++)
        {
            Assert.Equal(second.Report.Layers[i].Tokens, (int)(cache.Layers[i].Source.Length - before[i]));
            Assert.Equal(before[i] + second.Report.Layers[i].Tokens, second.Report.Layers[i].CacheLength);
        }
        Assert.Equal(new long[] { 82, 82, 82, 26, 26, 18 }, cache.Layers.Select(l => l.Source.Length).ToArray());
        Assert.True(second.Hidden.isfinite().all().item<bool>());
    }

    [Fact]
    public void RowsCutAfterALayer_ServeItsKeys_ButSkipTheirOutputAndMlp()
    {
        // The exit drops every visual token after layer 2: they are keys and values there (the text
        // rows attend them), and nothing else. The text logits are checked against the mask
        // reference above; this checks the work really skipped, in the accounting that follows it.
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        using var cache = new KvCache(Layers);
        var pruner = new PruningConfig { ShallowLayers = 0, TokensThreshold = 0, ExitLayer = 3 }.CreatePruner(Layers);
        using var r = PrunedPrefill.Run(lm, emb, pos, spans, pruner, cache);
        var c = lm.Config;
        double d = c.HiddenSize, qd = c.NumAttentionHeads * c.HeadDim, kvd = c.NumKeyValueHeads * c.HeadDim;
        var text = TextRows(41, spans);
        double Attn(double pairs) => 4.0 * pairs * c.HeadDim * c.NumAttentionHeads;
        double qkv41 = 2.0 * 41 * d * (qd + 2 * kvd);
        double outMlp(int n) => n * (2.0 * qd * d + 6.0 * d * c.IntermediateSize);
        // A full layer, plus the filtering test's probe (the last row's query over every key).
        Assert.Equal(qkv41 + outMlp(41) + Attn(41 * 42 / 2) + Attn(41), r.Report.Layers[1].Flops, 6);
        Assert.Equal(qkv41 + outMlp(text.Length) + Attn(text.Sum(i => i + 1)), r.Report.Layers[2].Flops, 6);
        Assert.Equal(41, cache.Layers[2].Source.Length);
        Assert.Equal(text.Length, cache.Layers[3].Source.Length);
        Assert.Equal(text, r.Rows);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(5)]
    public void BudgetMode_NeverKeepsMoreThanK_PerFrame(int k)
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        foreach (var thr in new[] { 0.995, 1.0 })
        {
            var pruner = new PruningConfig { ShallowLayers = 1, Budget = k, LayerThreshold = thr, TokensThreshold = 0 }.CreatePruner(Layers);
            using var r = PrunedPrefill.Run(lm, emb, pos, spans, pruner);
            Assert.NotNull(r.Report.FilterLayer); // the deadline guarantees it
            Assert.True(r.Report.FilterLayer <= new PruningConfig { ShallowLayers = 1 }.Deadline(Layers));
            foreach (var sp in spans) Assert.True(r.Report.KeptVisual.Count(v => v >= sp.Start && v < sp.Start + sp.Length) <= k);
            foreach (var l in r.Report.Layers.Where(l => l.Layer > r.Report.FilterLayer)) Assert.True(l.Visual <= 2 * k);
            var grid = r.Report.KeptGrid(4, 4);
            Assert.Equal(r.Report.KeptTokens, grid.Sum() * spans.Count, 3);
        }
    }

    [Fact]
    public void BadSettings_GiveClearUserErrors()
    {
        var e = Assert.Throws<UserError>(() => new PruningConfig().Validate(4)); // reference s = 6 on a 4-layer model
        Assert.Contains("beyond this model's 4 decoder layers", e.Message);
        Assert.Contains("k", Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 1, Budget = -1 }.Validate(4)).Message);
        Assert.Contains("layer_threshold", Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 1, LayerThreshold = 1.5 }.Validate(4)).Message);
        Assert.Contains("exit_threshold", Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 1, ExitThreshold = 0 }.Validate(4)).Message);
        Assert.Contains("tokens_threshold", Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 1, TokensThreshold = -0.1 }.Validate(4)).Message);
        Assert.Contains("deadline_layer", Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 1, DeadlineLayer = 9 }.Validate(4)).Message);
        Assert.Contains("method", Assert.Throws<UserError>(() => new PruningConfig { Method = "magic" }.Validate(8)).Message);
        using var dir = new TempDir();
        Assert.Contains("p.json", Assert.Throws<UserError>(() => Parse("""{"shallow_layer": 2}""", dir)).Message); // typo'd key
        Assert.Throws<UserError>(() => PruningConfig.Load(dir.File("missing.json")));
        var ok = new PruningConfig { ShallowLayers = 2, Budget = 8 };
        ok.Save(dir.File("ok.json"));
        Assert.Equal(ok, PruningConfig.Load(dir.File("ok.json")));
    }

    [Fact]
    public void VisualSpans_ComeFromWhereTheImageTokensAre()
    {
        var ids = new List<int> { 5, 3, 3, 3, 3, 6, 3, 3, 7 };
        var spans = VisualSpan.FromIds(ids, 3, 2);
        Assert.Equal(new[] { new VisualSpan(1, 2, 0), new VisualSpan(3, 2, 1), new VisualSpan(6, 2, 2) }, spans);
        Assert.Throws<UserError>(() => VisualSpan.FromIds(new List<int> { 3, 3, 3 }, 3, 2));
    }

    [Fact]
    public void RandomAndFastV_KeepWhatTheyPromise()
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        using var rr = PrunedPrefill.Run(lm, emb, pos, spans, new RandomPruner(1, 3, 42));
        Assert.Equal(6, rr.Report.KeptTokens);
        using var fv = PrunedPrefill.Run(lm, emb, pos, spans, new FastVPruner(2, 0.5));
        Assert.Equal(16, fv.Report.KeptTokens);
        Assert.Equal(new[] { 41, 41, 41, 25, 25, 25 }, fv.Report.Layers.Select(l => l.Tokens).ToArray());
    }

    [Fact]
    public void Oracle_KeepsTheGivenCellsOfEveryFrame()
    {
        using var _ = torch.no_grad();
        using var lm = Model();
        var (emb, pos, spans) = Prompt(lm);
        var cells = new HashSet<int> { 0, 5, 7 };
        using var before = PrunedPrefill.Run(lm, emb, pos, spans, new OraclePruner(cells, -1));
        var expected = spans.SelectMany(sp => cells.Order().Select(c => (long)(sp.Start + c))).Order().ToArray();
        Assert.Equal(expected, before.Report.KeptVisual);
        using var after = PrunedPrefill.Run(lm, emb, pos, spans, new OraclePruner(cells, 1));
        Assert.Equal(expected, after.Report.KeptVisual);
        Assert.Equal(spans.Sum(sp => sp.Length), after.Report.Layers[1].Visual); // layer 1 still sees every token
        Assert.Equal(expected.Length, after.Report.Layers[2].Visual);
    }
}

public class ScheduleProposalTests
{
    [Theory]
    // v9's measurements: s 5, exit 7, test fires early → the filter would sit at the exit; s gives a layer back.
    [InlineData(8, 5, 7, 6, 6, 4, 5, 5, true)]
    // v7's: s 4, exit 7 → filter from 5, deadline before the exit.
    [InlineData(8, 4, 7, 5, 6, 4, 5, 5, false)]
    // No fixed exit: the deadline may go to L−2.
    [InlineData(8, 2, 8, 3, 6, 2, 3, 6, false)]
    public void TheFilterAlwaysActsBeforeTheExit(int layers, int shallow, int exit, int lfMin, int lfMax,
        int s, int from, int deadline, bool traded)
    {
        var p = ScheduleProposal.Propose(layers, shallow, exit, lfMin, lfMax);
        Assert.Equal((s, from, (int?)deadline, traded), (p.Shallow, p.FilterFrom, p.Deadline, p.Traded));
        if (p.Exit is { } x) Assert.True(p.FilterFrom <= x - 2 && p.Deadline <= x - 2);
        // The proposal is a valid config for that many layers.
        new PruningConfig { ShallowLayers = p.Shallow, FilterFrom = p.FilterFrom, DeadlineLayer = p.Deadline, ExitLayer = p.Exit, Budget = 12 }.Validate(layers);
    }

    [Theory]
    [InlineData(1, 2, 7, 5)]    // v13: filter 2..5 with the exit, 2..6 without
    [InlineData(6, 7, null, null)] // s at the last layers: the filter can only sit at 7, still one schedule per threshold
    public void TheCheckedGridCoversEveryFilterLayerThatCanCut(int s, int from, int? exit, int? deadline)
    {
        var proposal = new PruningConfig { ShallowLayers = s, FilterFrom = from, ExitLayer = exit, DeadlineLayer = deadline };
        var grid = ScheduleProposal.Grid(proposal, 8, 0.2);
        Assert.NotEmpty(grid);
        Assert.All(grid, c => c.Validate(8)); // every schedule is a valid config
        Assert.Equal(exit is null ? 1 : 2, grid.Select(c => c.ExitLayer).Distinct().Count());
        Assert.Equal(new[] { 0.05, 0.1, 0.2 }, grid.Select(c => c.TokensThreshold).Distinct().Order());
        if (exit is { } x)
        {
            Assert.Equal(x - 2, grid.Where(c => c.ExitLayer == x).Max(c => c.FilterFrom));
            Assert.Equal(6, grid.Where(c => c.ExitLayer is null).Max(c => c.FilterFrom));
        }
        Assert.Equal(from, grid.Min(c => c.FilterFrom));
    }

    [Fact]
    public void SeveralFrames_TheCheckTriesTheScheduleAsIs_AndSparingTheNewestWithEachLaterOlderExit()
    {
        var proposal = new PruningConfig { ShallowLayers = 0, FilterFrom = 1, ExitLayer = 2, DeadlineLayer = 1, KeepNewestFrame = true, OlderFramesExitLayer = 4 };
        var grid = ScheduleProposal.FrameGrid(proposal, 8);
        Assert.All(grid, c => c.Validate(8));
        // First every frame exits (whatever the proposal said), then the newest spared with the older frames' exit at 2..7.
        Assert.False(grid[0].KeepNewestFrame);
        Assert.Null(grid[0].OlderFramesExitLayer);
        Assert.Equal(new int?[] { 2, 3, 4, 5, 6, 7 }, grid.Skip(1).Select(c => c.OlderFramesExitLayer));
        Assert.All(grid.Skip(1), c => Assert.True(c.KeepNewestFrame));
        Assert.All(grid, c => Assert.Equal(proposal with { KeepNewestFrame = c.KeepNewestFrame, OlderFramesExitLayer = c.OlderFramesExitLayer }, c)); // nothing else changes
        // Without a fixed exit the session could not demote a frame: only the schedule itself.
        Assert.Single(ScheduleProposal.FrameGrid(proposal with { ExitLayer = null, KeepNewestFrame = false, OlderFramesExitLayer = null }, 8));
    }

    [Fact]
    public void WhenNoneHolds_TheCheapestWithinOneStandardErrorOfTheBestIsChosen()
    {
        static Candidate C(double agree, double flops) => new(0, 1, 0.2, 2, double.NaN, agree, double.NaN, flops, 0);
        var cheap = C(0.84, 1e8);
        var close = C(0.90, 2.7e8);
        var best = C(0.93, 2.8e8);
        // The best's per-input agreements: mean 0.93, standard error 0.04 (sd 0.16 over 16 inputs).
        var bestRows = Enumerable.Range(0, 16).Select(i => 0.93 + (i % 2 == 0 ? 0.155 : -0.155)).ToArray();
        var rows = new List<double[]> { Enumerable.Repeat(0.84, 16).ToArray(), Enumerable.Repeat(0.90, 16).ToArray(), bestRows };
        var (chosen, holds) = ScheduleProposal.ChooseWithinOneSe(new[] { cheap, close, best }, rows, 0.98);
        Assert.False(holds);
        Assert.Same(close, chosen); // 0.90 ≥ 0.93 − 0.04; 0.84 is not
        // With little spread the best stands alone; and a candidate that holds wins outright.
        var tight = new List<double[]> { rows[0], rows[1], Enumerable.Repeat(0.93, 16).ToArray() };
        Assert.Same(best, ScheduleProposal.ChooseWithinOneSe(new[] { cheap, close, best }, tight, 0.98).Chosen);
        Assert.Same(close, ScheduleProposal.ChooseWithinOneSe(new[] { cheap, close, best }, rows, 0.9).Chosen);
    }

    [Fact]
    public void TheCheckedScheduleIsTheCheapestThatHoldsTheAgreement_OrTheClosest()
    {
        // Chosen by greedy-caption agreement: "early" holds teacher-forced (0.99) but not free-running.
        var early = new Candidate(1, 2, 0.2, 7, 0.99, 0.90, 0.5, 1.0e8, 5);   // cheap, loses the caption
        var middle = new Candidate(1, 4, 0.1, 7, 0.95, 0.985, 0.05, 1.6e8, 20);
        var late = new Candidate(0, 5, 0.05, null, 0.97, 0.995, 0.01, 2.0e8, 40);
        Assert.Equal((middle, true), ScheduleProposal.Choose([early, late, middle], 0.98));
        Assert.Equal((late, true), ScheduleProposal.Choose([early, late, middle], 0.99));
        Assert.Equal((late, false), ScheduleProposal.Choose([early, late, middle], 0.999));
        Assert.Throws<ArgumentException>(() => ScheduleProposal.Choose([], 0.98));
    }

    [Fact]
    public void TheFloorIsTheLastEarlierExit_BeforeTheFirstThatFallsShort()
    {
        // The demo's validation windows: exits 3 and 2 keep 0.84 of what the frame adds, exit 1 0.49.
        (int, double)[] demo = [(2, 0.84), (1, 0.49), (3, 0.84)]; // any order
        Assert.Equal(2, ScheduleProposal.Floor(4, demo, 0.75));
        Assert.Equal(1, ScheduleProposal.Floor(4, demo, 0.4));
        // The walk stops at the first exit that falls short, even if an earlier one would hold.
        Assert.Equal(3, ScheduleProposal.Floor(4, [(3, 0.9), (2, 0.6), (1, 0.95)], 0.75));
        // The first earlier exit falls short: no earlier exit at all, the floor is the ladder's own.
        Assert.Equal(4, ScheduleProposal.Floor(4, [(3, 0.7), (2, 0.9)], 0.75));
        Assert.Equal(8, ScheduleProposal.Floor(8, [], 0.75)); // no fixed exit and no rungs below it
        Assert.Equal(3, ScheduleProposal.Floor(4, [(4, 0.1), (3, 0.8)], 0.75)); // exits at or above the ladder's are not earlier
    }

    [Fact]
    public void TheResolutionFloor_IsTheLastLowerBound_BeforeTheFirstThatFallsShort()
    {
        (long, double)[] bounds = [(50_176, 0.6), (200_704, 0.9), (100_352, 0.8)]; // any order
        Assert.Equal(100_352, ScheduleProposal.PixelFloor(401_408, bounds, 0.75));
        Assert.Equal(50_176, ScheduleProposal.PixelFloor(401_408, bounds, 0.5));
        // The first lower bound falls short: the frame keeps its own resolution.
        Assert.Equal(401_408, ScheduleProposal.PixelFloor(401_408, bounds, 0.95));
        Assert.Equal(401_408, ScheduleProposal.PixelFloor(401_408, [], 0.75));
        // Bounds at or above the frame's own area are not lower.
        Assert.Equal(200_704, ScheduleProposal.PixelFloor(401_408, [(401_408, 0.1), (200_704, 0.8)], 0.75));
    }

    [Fact]
    public void TheFrameShare_CountsOnlyWhatTheFrameAddsOverACaptionOfNoFrame()
    {
        Assert.Equal(1, ScheduleProposal.FrameShare(1, 0.2), 9);
        Assert.Equal(0, ScheduleProposal.FrameShare(0.2, 0.2), 9);
        Assert.Equal(0.5, ScheduleProposal.FrameShare(0.6, 0.2), 9);
        Assert.True(ScheduleProposal.FrameShare(0.1, 0.2) < 0); // worse than no frame
        Assert.Equal(1, ScheduleProposal.FrameShare(1, 1)); // the frame adds nothing: nothing to lose
    }

    [Fact]
    public void CaptionAgreementIsTokenF1_CountingRepeats()
    {
        Assert.Equal(1, ScheduleProposal.TokenF1([1, 2, 3], [3, 2, 1]));
        Assert.Equal(2.0 * 2 / 6, ScheduleProposal.TokenF1([1, 2], [1, 2, 3, 4]), 9);
        Assert.Equal(2.0 * 1 / 3, ScheduleProposal.TokenF1([1, 1], [1]), 9); // the second 1 has no partner
        Assert.Equal(0, ScheduleProposal.TokenF1([5], [6]));
        Assert.Equal(0, ScheduleProposal.TokenF1([], [6]));
        Assert.Equal(1, ScheduleProposal.TokenF1([], []));
        Assert.Equal([6, 3, 0], ScheduleProposal.ShallowChoices(6));
        Assert.Equal([1, 0], ScheduleProposal.ShallowChoices(1));
        Assert.Equal([0], ScheduleProposal.ShallowChoices(0));
    }
}
