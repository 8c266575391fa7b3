using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.App;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Decode steps run fused (every layer on the CPU kernels, no libtorch between them) give what
/// the layer path gives: the same hidden states and the same cached keys and values, one row or
/// several rows of different sequences in either cache group, for LLaMA and for Qwen2-VL (q/k/v
/// biases, M-RoPE), in every weight format; and a step after the weights changed format reads
/// the new weights, not the old memory.
/// </summary>
[Collection(nameof(FusedDecodeSwitch))]
public class FusedDecodeStepTests(ITestOutputHelper output)
{
    /// <summary>Runs <paramref name="rounds"/> decode forwards over fresh caches with the fused step on or off: each round's hidden states per sequence, and the caches.</summary>
    static (List<Tensor[]> Hidden, List<KvCache> Caches, long Fused) Decode(Engine e, bool fused, int[] lengths, CacheGroup[] groups, int rounds)
    {
        var caches = ForwardBatcherTests.Prefilled(e, lengths, 5); // a prompt of up to 8 rows runs fused too: not counted
        var before = e.Decoder.FusedForwards;
        var hidden = new List<Tensor[]>();
        bool was = DecoderModel.FusedDecodeEnabled;
        DecoderModel.FusedDecodeEnabled = fused;
        try
        {
            for (int r = 0; r < rounds; r++)
            {
                var ids = torch.tensor(lengths.Select((_, i) => (long)(3 + i + 5 * r)).ToArray()).view(1, -1);
                var tokens = e.Decoder.embed_tokens.forward(ids);
                var seqs = lengths.Select((n, i) => (tokens.narrow(1, i, 1), new DecoderStep
                {
                    Positions = new[] { groups[i] == CacheGroup.Source ? (long)(n + r) : r },
                    Cache = caches[i],
                    Group = groups[i],
                })).ToList();
                hidden.Add(e.Decoder.ForwardMany(seqs));
            }
        }
        finally { DecoderModel.FusedDecodeEnabled = was; }
        return (hidden, caches, e.Decoder.FusedForwards - before);
    }

    [Theory]
    [InlineData("tiny", "auto", 1)]
    [InlineData("tiny", "auto", 4)]
    [InlineData("tiny", "bf16", 3)]
    [InlineData("tiny", "q8", 3)]
    [InlineData("qwen2_vl", "auto", 1)]
    [InlineData("qwen2_vl", "auto", 3)]
    public void FusedSteps_GiveTheLayerPathsHiddenStatesAndCaches(string model, string weights, int rows)
    {
        var dir = model == "tiny" ? AppTestSupport.TinyModel : Path.Combine(Families.QwenFixtures.Root, model);
        using var e = Engine.Load(dir, new EngineOptions { Device = "cpu", Weights = weights });
        using var _ = torch.inference_mode();
        int[] lengths = new[] { 3, 11, 7, 5, 9, 4, 6, 8 }[..rows];
        var groups = lengths.Select((_, i) => i % 2 == 1 ? CacheGroup.Target : CacheGroup.Source).ToArray();
        var (layerPath, layerCaches, none) = Decode(e, fused: false, lengths, groups, rounds: 3);
        var (fused, fusedCaches, ran) = Decode(e, fused: true, lengths, groups, rounds: 3);
        Assert.Equal(0, none);
        Assert.Equal(3, ran); // every round took the fused step
        double worst = 0;
        for (int r = 0; r < 3; r++)
            for (int i = 0; i < rows; i++)
            {
                Assert.Equal(layerPath[r][i].shape, fused[r][i].shape);
                worst = Math.Max(worst, (layerPath[r][i] - fused[r][i]).abs().max().item<float>());
            }
        output.WriteLine($"{model} {weights} {rows} rows: max |Δh| {worst:g3}");
        Assert.True(worst < 1e-4, $"fused hidden states differ from the layer path's by {worst}");
        for (int i = 0; i < rows; i++)
            for (int l = 0; l < e.Text.NumHiddenLayers; l++)
            {
                var (a, b) = (layerCaches[i].Layers[l][groups[i]], fusedCaches[i].Layers[l][groups[i]]);
                Assert.Equal(a.Positions.ToArray(), b.Positions.ToArray());
                Assert.True((a.Keys - b.Keys).abs().max().item<float>() < 1e-4, $"sequence {i} layer {l}: cached keys differ");
                Assert.True((a.Values - b.Values).abs().max().item<float>() < 1e-4, $"sequence {i} layer {l}: cached values differ");
            }
        foreach (var c in layerCaches.Concat(fusedCaches)) c.Dispose();
    }

    /// <summary>
    /// A few rows of one sequence with no plan (drafted caption tokens being verified, a short
    /// prompt) run every layer on the kernels: what the layer path gives, and each row exactly
    /// what a fused decode step of that row alone gives (so drafts verified in a block choose the
    /// tokens one step at a time would).
    /// </summary>
    [Theory]
    [InlineData("tiny", CacheGroup.Source, 5)]
    [InlineData("tiny", CacheGroup.Target, 8)]
    [InlineData("qwen2_vl", CacheGroup.Target, 4)]
    public void AFewRowsOfOneSequence_RunOnTheKernels_AsTheLayerPathAndAsOneStepEach(string model, CacheGroup group, int rows)
    {
        var dir = model == "tiny" ? AppTestSupport.TinyModel : Path.Combine(Families.QwenFixtures.Root, model);
        using var e = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        var x = torch.randn(new long[] { 1, rows, e.Text.HiddenSize }, generator: new Generator(9)) * 0.5;
        long start = group == CacheGroup.Source ? 8 : 0; // after the 8 prefilled source entries, or the target's own positions
        (Tensor Hidden, KvCache Cache, long Fused) Run(bool fused, bool oneAtATime)
        {
            var cache = ForwardBatcherTests.Prefilled(e, [8], 5)[0];
            long before = e.Decoder.FusedForwards;
            bool was = DecoderModel.FusedDecodeEnabled;
            DecoderModel.FusedDecodeEnabled = fused;
            try
            {
                var h = oneAtATime
                    ? torch.cat(Enumerable.Range(0, rows).Select(r => e.Decoder.Forward(x.narrow(1, r, 1), new DecoderStep { Positions = new[] { start + r }, Cache = cache, Group = group })).ToArray(), 1)
                    : e.Decoder.Forward(x, new DecoderStep { Positions = PositionIds.Range(start, rows), Cache = cache, Group = group });
                return (h, cache, e.Decoder.FusedForwards - before);
            }
            finally { DecoderModel.FusedDecodeEnabled = was; }
        }
        var (layerPath, layerCache, none) = Run(fused: false, oneAtATime: false);
        var (block, blockCache, ran) = Run(fused: true, oneAtATime: false);
        var (steps, stepsCache, stepped) = Run(fused: true, oneAtATime: true);
        Assert.Equal(0, none);
        Assert.Equal(1, ran);
        Assert.Equal(rows, stepped);
        double err = (layerPath - block).abs().max().item<float>();
        output.WriteLine($"{model} {group} {rows} rows: max |Δh| against the layer path {err:g3}");
        Assert.True(err < 1e-4, $"the block's hidden states differ from the layer path's by {err}");
        Assert.True((steps == block).all().item<bool>(), $"the block differs from one fused step a row by {(steps - block).abs().max().item<float>():g3}");
        for (int l = 0; l < e.Text.NumHiddenLayers; l++)
        {
            var (a, b, c) = (layerCache.Layers[l][group], blockCache.Layers[l][group], stepsCache.Layers[l][group]);
            Assert.Equal(a.Positions.ToArray(), b.Positions.ToArray());
            Assert.True((a.Keys - b.Keys).abs().max().item<float>() < 1e-4, $"layer {l}: cached keys differ from the layer path's");
            Assert.True((c.Keys == b.Keys).all().item<bool>() && (c.Values == b.Values).all().item<bool>(), $"layer {l}: cached keys or values differ from the steps'");
        }
        layerCache.Dispose(); blockCache.Dispose(); stepsCache.Dispose();
    }

    /// <summary>
    /// A pruned read (a frame read through VisiPruner's fixed exit, with a frame band's skip) runs
    /// its text rows through the layers after the exit on the kernels: the rows, hidden states,
    /// cache and per-layer report are the layer path's.
    /// </summary>
    [Theory]
    [InlineData("tiny", 1)]
    [InlineData("tiny", 2)]
    [InlineData("qwen2_vl", 1)]
    public void APrunedReadAfterItsExit_RunsItsTextRowsAsTheLayerPathDoes(string model, int exit)
    {
        var dir = model == "tiny" ? AppTestSupport.TinyModel : Path.Combine(Families.QwenFixtures.Root, model);
        using var e = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int layers = e.Text.NumHiddenLayers;
        var embeds = torch.randn(new long[] { 1, 10, e.Text.HiddenSize }, generator: new Generator(3)) * 0.5;
        var spans = new List<RealtimeAssistant.Pruning.VisualSpan> { new(2, 6, 0) }; // rows 2..7 visual, 0, 1, 8, 9 text
        long[] t = Enumerable.Range(8, 10).Select(i => (long)i).ToArray();
        var positions = e.Text.MropeSection is null ? new PositionIds(t)
            : new PositionIds(t, t.Select((x, i) => i is >= 2 and < 8 ? 10 + (i - 2) / 3 : x).ToArray(), t.Select((x, i) => i is >= 2 and < 8 ? 10 + (i - 2) % 3 : x).ToArray());
        var schedule = new RealtimeAssistant.Pruning.PruningConfig { ShallowLayers = 0, ExitLayer = exit };
        (RealtimeAssistant.Pruning.PrefillResult Read, KvCache Cache, long Fused) Read(bool fused)
        {
            var cache = ForwardBatcherTests.Prefilled(e, [8], 5)[0];
            var skip = Enumerable.Repeat(3L, layers).ToArray(); // a band: the oldest 3 entries are not attended
            long before = e.Decoder.FusedForwards;
            bool was = DecoderModel.FusedDecodeEnabled;
            DecoderModel.FusedDecodeEnabled = fused;
            try
            {
                var r = RealtimeAssistant.Pruning.PrunedPrefill.Run(e.Language, embeds, positions, spans, schedule.CreatePruner(layers), cache, skip);
                return (r, cache, e.Decoder.FusedForwards - before);
            }
            finally { DecoderModel.FusedDecodeEnabled = was; }
        }
        var (layerPath, layerCache, none) = Read(fused: false);
        var (fused, fusedCache, ran) = Read(fused: true);
        Assert.Equal(0, none);
        Assert.Equal(1, ran);
        Assert.Equal(new long[] { 0, 1, 8, 9 }, fused.Rows);
        Assert.Equal(layerPath.Rows, fused.Rows);
        double err = (layerPath.Hidden - fused.Hidden).abs().max().item<float>();
        output.WriteLine($"{model} exit {exit}: max |Δh| {err:g3}");
        Assert.True(err < 1e-4, $"the read's hidden states differ by {err}");
        Assert.Equal(layers, fused.Report.Layers.Count);
        for (int l = 0; l < layers; l++)
        {
            var (a, b) = (layerPath.Report.Layers[l], fused.Report.Layers[l]);
            Assert.Equal((a.Layer, a.Stage, a.Tokens, a.Visual, a.CacheLength, a.VisualPresent.Length), (b.Layer, b.Stage, b.Tokens, b.Visual, b.CacheLength, b.VisualPresent.Length));
            Assert.Equal(a.Flops, b.Flops, 6);
            var (ka, kb) = (layerCache.Layers[l].Source, fusedCache.Layers[l].Source);
            Assert.Equal(ka.Positions.ToArray(), kb.Positions.ToArray());
            Assert.True((ka.Keys - kb.Keys).abs().max().item<float>() < 1e-4, $"layer {l}: cached keys differ");
            Assert.True((ka.Values - kb.Values).abs().max().item<float>() < 1e-4, $"layer {l}: cached values differ");
        }
        layerCache.Dispose(); fusedCache.Dispose();
    }

    /// <summary>The step holds addresses of the weights' memory: once they are converted (and the old memory freed) it must read the new ones.</summary>
    [Fact]
    public void AStepAfterTheWeightsChangedFormat_ReadsTheNewWeights()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var reference = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu", Weights = "q8" });
        using var _ = torch.inference_mode();
        int[] lengths = [6];
        CacheGroup[] groups = [CacheGroup.Source];
        Decode(e, fused: true, lengths, groups, rounds: 1).Caches.ForEach(c => c.Dispose()); // built on the float32 weights
        Compaction.Apply(e.Decoder, WeightFormat.Q8);
        var (after, c1, ran) = Decode(e, fused: true, lengths, groups, rounds: 2);
        var (expected, c2, _) = Decode(reference, fused: false, lengths, groups, rounds: 2);
        Assert.Equal(2, ran);
        for (int r = 0; r < 2; r++)
        {
            double err = (after[r][0] - expected[r][0]).abs().max().item<float>();
            Assert.True(err < 1e-4, $"round {r}: after the conversion the fused step differs from the q8 layer path by {err}");
        }
        foreach (var c in c1.Concat(c2)) c.Dispose();
    }

    /// <summary>
    /// A stage clock on the model (`ra bench engine --profile`) times each fused step by stage and
    /// changes nothing it computes: the same hidden states and caches, one pass per step, every
    /// stage seen, and the stages' time within the steps' wall time.
    /// </summary>
    [Fact]
    public void AStageClock_TimesEveryFusedStepByStage_AndChangesNothing()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int[] lengths = [5, 8];
        CacheGroup[] groups = [CacheGroup.Source, CacheGroup.Target];
        var (plain, c1, _) = Decode(e, fused: true, lengths, groups, rounds: 3);
        var clock = new StageClock();
        e.Decoder.FusedStepClock = clock;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        (List<Tensor[]> Hidden, List<KvCache> Caches, long Fused) timed;
        try { timed = Decode(e, fused: true, lengths, groups, rounds: 3); }
        finally { e.Decoder.FusedStepClock = null; }
        double wall = sw.Elapsed.TotalMilliseconds;
        Assert.Equal(3, timed.Fused);
        Assert.Equal(3, clock.Passes);
        for (int r = 0; r < 3; r++)
            for (int i = 0; i < lengths.Length; i++)
                Assert.True(plain[r][i].allclose(timed.Hidden[r][i], 0, 0), $"round {r} sequence {i}: the clock changed the hidden states");
        for (int i = 0; i < lengths.Length; i++)
            for (int l = 0; l < e.Text.NumHiddenLayers; l++)
                Assert.True(c1[i].Layers[l][groups[i]].Keys.allclose(timed.Caches[i].Layers[l][groups[i]].Keys, 0, 0), $"sequence {i} layer {l}: the clock changed the cache");
        var stages = clock.Stages.ToDictionary(s => s.Stage, s => s.Ms);
        foreach (var stage in new[] { "RMSNorm", "q/k/v product", "RoPE", "KV cache append", "attention", "o_proj product", "residual add", "gate/up product", "SiLU·up", "down product" })
            Assert.True(stages.ContainsKey(stage), $"no time for {stage}");
        Assert.All(stages.Values, ms => Assert.True(ms >= 0));
        Assert.True(stages.Values.Sum() <= wall, $"stages {stages.Values.Sum():0.000} ms over the {wall:0.000} ms the steps took");
        foreach (var c in c1.Concat(timed.Caches)) c.Dispose();
    }
}

/// <summary>Tests that switch <see cref="DecoderModel.FusedDecodeEnabled"/> (a process-wide setting) run one at a time.</summary>
[CollectionDefinition(nameof(FusedDecodeSwitch), DisableParallelization = true)]
public sealed class FusedDecodeSwitch;
