using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Tests.App;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// A layer's intermediates are freed when the layer ends (<see cref="LayerScope"/>), so a forward
/// over many layers holds one layer's at a time, not all of them.
/// </summary>
public class LayerScopeTests
{
    [Fact]
    public void ALayersIntermediates_AreFreed_AndOnlyItsOutputReachesTheCaller()
    {
        using var outer = torch.NewDisposeScope();
        var x = torch.ones(4, 4);
        var inside = new List<Tensor>();
        int before = outer.DisposablesCount;
        var y = LayerScope.Run(() =>
        {
            var a = x * 2; var b = a + 1; var c = b.exp();
            inside.AddRange([a, b, c]);
            return c.sum();
        });
        Assert.Equal(before + 1, outer.DisposablesCount);
        Assert.All(inside, t => Assert.True(t.IsInvalid, "an intermediate outlived its layer"));
        Assert.Equal(16 * MathF.Exp(3), y.item<float>(), 2);
    }

    /// <summary>A vision encoder layer (CLIP, SigLIP, Idefics3, OneVision) leaves one tensor, its output, in its caller's scope, whatever it computed.</summary>
    [Fact]
    public void AVisionEncoderLayer_LeavesOnlyItsOutput()
    {
        using var _ = torch.inference_mode();
        var config = SyntheticCheckpoint.Config(vHidden: 32).Vision;
        using var layer = new VisionEncoderLayer(config, TensorSpec.Cpu32);
        foreach (var p in layer.parameters()) p.normal_();
        using var scope = torch.NewDisposeScope();
        var h = torch.randn(2, 17, 32);
        int before = scope.DisposablesCount;
        for (int i = 0; i < 6; i++) h = layer.forward(h);
        Assert.Equal(before + 6, scope.DisposablesCount);
        Assert.False(h.isnan().any().item<bool>());
    }

    /// <summary>Counts this thread's live tensors each time a layer attends, and attends as a frame band would.</summary>
    sealed class CountingPlan(int layers, int rows) : ILayerPlan
    {
        readonly BandPlan _band = new(new long[layers], rows);
        public List<long> LiveAtLayer { get; } = new();
        public LayerAttention Attend(in AttentionInput a)
        {
            LiveAtLayer.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            return _band.Attend(a);
        }
    }

    /// <summary>
    /// A decoder forward holds one layer's intermediates at a time: as many tensors are alive when
    /// the last layer attends as when the second does. Before, each layer's stayed until the
    /// forward ended (a 32-layer prefill held all 32 layers' activations at once).
    /// </summary>
    [Fact]
    public void ADecoderForward_HoldsOneLayersIntermediatesAtATime()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int layers = e.Text.NumHiddenLayers;
        Assert.True(layers >= 4, $"the tiny model has {layers} layers");
        var cache = new KvCache(layers);
        // A first block gives every layer's cache its buffers (64 entries), so the counts below are the forward's own.
        e.Decoder.Forward(torch.randn(new long[] { 1, 4, e.Text.HiddenSize }, generator: new Generator(4)), new DecoderStep { Positions = new long[] { 0, 1, 2, 3 }, Cache = cache });
        var embeds = torch.randn(new long[] { 1, 12, e.Text.HiddenSize }, generator: new Generator(5));
        var plan = new CountingPlan(layers, 8);
        var h = e.Decoder.Forward(embeds, new DecoderStep { Positions = Enumerable.Range(4, 12).Select(i => (long)i).ToArray(), Cache = cache, Plan = plan });
        Assert.Equal(layers, plan.LiveAtLayer.Count);
        Assert.True(plan.LiveAtLayer[^1] == plan.LiveAtLayer[1],
            $"live tensors when each layer attends: {string.Join(", ", plan.LiveAtLayer)}: intermediates outlive their layer");
        Assert.False(h.isnan().any().item<bool>());
    }

    /// <summary>The batch forward (training's: several rows, no cache) under a plan holds one layer's intermediates at a time too.</summary>
    [Fact]
    public void TheBatchForwardUnderAPlan_HoldsOneLayersIntermediatesAtATime()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int layers = e.Text.NumHiddenLayers;
        var embeds = torch.randn(new long[] { 2, 12, e.Text.HiddenSize }, generator: new Generator(6));
        var plan = new CountingPlan(layers, 12);
        var h = e.Decoder.Forward(embeds, new DecoderStep { Positions = Enumerable.Range(0, 12).Select(i => (long)i).ToArray(), Plan = plan }, tapLayer: 0, out var tapped);
        Assert.Equal(layers, plan.LiveAtLayer.Count);
        // From layer 2 on, the tapped residual of layer 0 is alive beside the current rows.
        Assert.True(plan.LiveAtLayer[^1] == plan.LiveAtLayer[2],
            $"live tensors when each layer attends: {string.Join(", ", plan.LiveAtLayer)}: intermediates outlive their layer");
        Assert.NotNull(tapped);
        Assert.False(tapped!.IsInvalid, "the tapped residual was freed with its layer");
        Assert.Equal(h.shape, tapped.shape);
    }
}
