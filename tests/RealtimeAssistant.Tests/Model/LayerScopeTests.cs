using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
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
}
