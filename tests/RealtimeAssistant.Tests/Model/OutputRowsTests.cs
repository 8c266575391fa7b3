using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Tests.App;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// A forward told how many of its last rows the caller reads (<see cref="DecoderStep.OutputRows"/>)
/// fills the cache exactly as a full forward does, gives the same hidden states for those rows,
/// and runs the last layer's o_proj and MLP on those rows only: plain, under a frame band, and
/// under a pruning plan (on the layer path and on the kernels once the visual tokens left).
/// </summary>
[Collection(nameof(FusedDecodeSwitch))]
public class OutputRowsTests(ITestOutputHelper output)
{
    static readonly long[] Positions = Enumerable.Range(8, 10).Select(i => (long)i).ToArray();

    /// <summary>Ten rows after an 8-entry cache, as <paramref name="how"/> says: the hidden states, the cache, and the rows the last layer's MLP ran on.</summary>
    static (Tensor Hidden, KvCache Cache, long LastRows, long[]? Rows, PruneReport? Report) Run(Engine e, Tensor embeds, string how, int? outputRows, bool fused = true)
    {
        var cache = ForwardBatcherTests.Prefilled(e, [8], 5)[0];
        long before = e.Decoder.LastLayerRows;
        bool was = DecoderModel.FusedDecodeEnabled;
        DecoderModel.FusedDecodeEnabled = fused;
        try
        {
            int layers = e.Text.NumHiddenLayers;
            if (how.StartsWith("exit") || how == "none")
            {
                var pruner = how == "none" ? new NonePruner() : new PruningConfig { ShallowLayers = 0, ExitLayer = int.Parse(how[4..5]) }.CreatePruner(layers);
                var r = PrunedPrefill.Run(e.Language, embeds, new PositionIds(Positions), [new VisualSpan(2, 6, 0)], pruner, cache, outputRows: outputRows);
                return (r.Hidden, cache, e.Decoder.LastLayerRows - before, r.Rows, r.Report);
            }
            var plan = how == "band" ? new BandPlan(Enumerable.Repeat(3L, layers).ToArray(), 8) : null;
            var h = e.Decoder.Forward(embeds, new DecoderStep { Positions = Positions, Cache = cache, Plan = plan, OutputRows = outputRows });
            return (h, cache, e.Decoder.LastLayerRows - before, null, null);
        }
        finally { DecoderModel.FusedDecodeEnabled = was; }
    }

    [Theory]
    [InlineData("plain", 1)]
    [InlineData("plain", 0)]
    [InlineData("plain", 3)]
    [InlineData("band", 1)]
    [InlineData("band", 0)]
    [InlineData("none", 1)] // a plan that keeps every row: the last layer runs on the layer path
    [InlineData("exit2", 1)] // they leave early: the rest of the layers on the kernels
    [InlineData("exit2", 0)]
    [InlineData("exit2 layer path", 1)]
    public void TheRowsAskedFor_AreTheFullForwardsLastRows_AndTheCacheIsTheSame(string how, int rows)
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        var embeds = torch.randn(new long[] { 1, 10, e.Text.HiddenSize }, generator: new Generator(3)) * 0.5;
        bool kernels = !how.EndsWith("layer path");
        var (all, allCache, allRows, allKept, allReport) = Run(e, embeds, how, outputRows: null, kernels);
        var (some, someCache, someRows, someKept, someReport) = Run(e, embeds, how, outputRows: rows, kernels);
        long reached = all.shape[1];
        Assert.Equal(new long[] { 1, rows, e.Text.HiddenSize }, some.shape);
        if (rows > 0)
        {
            double err = (all.narrow(1, reached - rows, rows) - some).abs().max().item<float>();
            output.WriteLine($"{how}, {rows} of {reached} rows: max |Δh| {err:g3}; last layer's MLP on {someRows} rows against {allRows}");
            Assert.True(err < 1e-5, $"the rows asked for differ from the full forward's by {err}");
        }
        if (allKept is not null) Assert.Equal(allKept[^rows..], someKept);
        // The plan's account of the last layer leaves out the o_proj and MLP it did not run.
        if (how is "none" or "exit2")
            Assert.Equal(allReport!.Layers[^1].Flops - PrunedPrefill.OutMlpFlops(e.Language.Config, (int)reached - rows), someReport!.Layers[^1].Flops, 6);
        for (int l = 0; l < e.Text.NumHiddenLayers; l++)
        {
            var (a, b) = (allCache.Layers[l].Source, someCache.Layers[l].Source);
            Assert.Equal(a.Positions.ToArray(), b.Positions.ToArray());
            Assert.True((a.Keys - b.Keys).abs().max().item<float>() == 0 && (a.Values - b.Values).abs().max().item<float>() == 0, $"layer {l}: the cache differs");
        }
        // What was saved: the last layer's o_proj and MLP ran on the rows asked for, not on all that
        // reached it (on the kernels too, where a pruned read's few text rows finish).
        Assert.Equal(reached, allRows);
        Assert.Equal(rows, someRows);
    }

    [Fact]
    public void ASessionsRead_RunsTheLastLayersMlpOnNoRow_AndItsWrite_OnTheInstructionsLastRow()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var session = new RealtimeAssistant.Streaming.GpeSession(e, AppTestSupport.TinyOptions(window: 3, pruning: null));
        var clip = RealtimeAssistant.Demo.ClipGenerator.Generate(31, 40, 15);
        long before = e.Decoder.LastLayerRows;
        using (var img = clip.Render(0, 32, 32)) session.Read(img);
        Assert.Equal(0, e.Decoder.LastLayerRows - before);
        var tokens = session.Write().Where(t => t.Id >= 0).ToList();
        Assert.NotEmpty(tokens);
        // The write's prompt pass reads one row; each decode step after it one more (the fused step counts none).
        Assert.InRange(e.Decoder.LastLayerRows - before, 1, tokens.Count);
    }
}
