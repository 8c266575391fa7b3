using RealtimeAssistant.Demo;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Training;

/// <summary>
/// A linear read-out on the decoder's residual stream at the last frame's patch tokens, used only
/// in training: it classifies how the object owning each patch moves. Motion is the one attribute
/// no single frame shows, so no vision-tower label can teach it; the decoder must compare an
/// object's tokens with the previous frame's. Caption tokens name a motion once per object per
/// two-frame sample, and that sparse signal left the v7 model at chance on motion (F1 0.14);
/// this head gives every object patch of every multi-frame sample a label. It reads a middle
/// layer, before the layers where analyze finds text reading vision, and is not part of the checkpoint.
/// </summary>
public sealed class MotionProbe : nn.Module
{
    readonly Linear head;

    /// <summary>The decoder layer whose output the probe reads.</summary>
    public int Layer { get; }

    public MotionProbe(int textHidden, int layer) : base(nameof(MotionProbe))
    {
        Layer = layer;
        head = nn.Linear(textHidden, Motions.All.Length);
        RegisterComponents();
    }

    /// <summary>The layer read for a decoder of <paramref name="layers"/> layers: the end of its first half.</summary>
    public static int LayerFor(int layers) => Math.Max(0, layers / 2 - 1);

    /// <summary>
    /// Loss and accuracy on object patches. <paramref name="lastFrame"/> is [B, P, D] (the last
    /// frame's tokens); <paramref name="t"/> holds labels for all B·F frames in batch order.
    /// </summary>
    public (Tensor Loss, double Accuracy) Loss(Tensor lastFrame, PatchTargets t, int frames)
    {
        long b = lastFrame.shape[0], p = lastFrame.shape[1];
        var labels = t.Motion.view(b, frames, p)[.., frames - 1].reshape(-1);
        var logits = head.forward(lastFrame.reshape(b * p, -1));
        var on = labels.ne(PatchTargets.NoMotion);
        long count = on.sum().item<long>();
        if (count == 0) return (logits.sum() * 0, double.NaN); // every object has left the picture
        var loss = F.cross_entropy(logits, labels, ignore_index: PatchTargets.NoMotion);
        using var _ = torch.no_grad();
        var right = logits.argmax(-1).eq(labels).logical_and(on).sum().item<long>();
        return (loss, right / (double)count);
    }
}
