using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Runs one layer in a dispose scope of its own and moves only its output out, so the layer's
/// intermediates (q, k, v, the attention, the MLP's wide activations) are freed when the layer
/// ends, not when the whole forward's scope does. Without it a forward holds every layer's
/// intermediates at once: SmolVLM's still image (17 tiles through 12 SigLIP layers) peaked at
/// 13 GB (docs/BENCHMARKS.md, "A layer's intermediates freed with the layer").
/// </summary>
public static class LayerScope
{
    public static Tensor Run(Func<Tensor> layer)
    {
        using var scope = torch.NewDisposeScope();
        return layer().MoveToOuterDisposeScope();
    }
}
