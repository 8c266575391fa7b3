using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Training;

/// <summary>
/// A linear read-out on the vision tower's last hidden states, used only in training: it
/// classifies each patch's shape and colour and regresses the owning object's geometry
/// (<see cref="PatchTargets"/>). It stands in for what a pretrained CLIP brings to LLaVA: a
/// vision tower whose patches already say what they show. Without it the from-scratch ViT learnt
/// shapes slowly (the v5 model called most shapes "triangle"). It is not part of the checkpoint.
/// </summary>
public sealed class PatchProbe : nn.Module
{
    readonly Linear head;

    public PatchProbe(int visionHidden) : base(nameof(PatchProbe))
    {
        head = nn.Linear(visionHidden, PatchTargets.ShapeClasses + PatchTargets.ColourClasses + PatchTargets.GeometryDims);
        RegisterComponents();
    }

    /// <summary>Loss, and shape and colour accuracy on object patches, for patch states [N, P, D] (no CLS).</summary>
    public (Tensor Loss, double ShapeAccuracy, double ColourAccuracy) Loss(Tensor patches, PatchTargets t)
    {
        var o = head.forward(patches.reshape(-1, patches.size(-1)));
        int s = PatchTargets.ShapeClasses, c = PatchTargets.ColourClasses;
        var shapeLogits = o[.., ..s];
        var colourLogits = o[.., s..(s + c)];
        var geometry = o[.., (s + c)..];
        var loss = F.cross_entropy(shapeLogits, t.Shape) + F.cross_entropy(colourLogits, t.Colour);
        var on = t.OnObject;
        var count = on.sum().clamp_min(1);
        loss += ((geometry - t.Geometry).pow(2).sum(-1) * on).sum() / count;
        using var _ = torch.no_grad();
        var shapeRight = (shapeLogits.argmax(-1).eq(t.Shape).to_type(ScalarType.Float32) * on).sum() / count;
        var colourRight = (colourLogits.argmax(-1).eq(t.Colour).to_type(ScalarType.Float32) * on).sum() / count;
        return (loss, shapeRight.item<float>(), colourRight.item<float>());
    }
}
