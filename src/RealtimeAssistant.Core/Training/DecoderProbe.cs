using RealtimeAssistant.Demo;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Training;

/// <summary>
/// A linear read-out on the decoder's residual stream at the last frame's patch tokens, used only
/// in training: it classifies the colour and shape of the object owning each patch and, when the
/// sample has several frames, how it moves. Motion is the one attribute no single frame shows, so
/// no vision-tower label can teach it; the decoder must compare an object's tokens with the
/// previous frame's. Caption tokens name a motion once per object per two-frame sample, and that
/// sparse signal left the v7 model at chance on motion (F1 0.14). A motion-only head fixed motion
/// from scratch but the captions then lost colour (v8, v11 at 1,000 joint steps: colour F1 0.15
/// and 0.12 while the vision tower's colour probe read 0.97); the colour and shape heads keep
/// what each object is in the same residual stream the motion is computed in. It reads a middle
/// layer, before the layers where analyze finds text reading vision, and is not part of the checkpoint.
/// </summary>
public sealed class DecoderProbe : nn.Module
{
    readonly Linear head;

    /// <summary>The decoder layer whose output the probe reads.</summary>
    public int Layer { get; }

    public DecoderProbe(int textHidden, int layer) : base(nameof(DecoderProbe))
    {
        Layer = layer;
        head = nn.Linear(textHidden, Motions.All.Length + PatchTargets.ColourClasses + PatchTargets.ShapeClasses);
        RegisterComponents();
    }

    /// <summary>The layer read for a decoder of <paramref name="layers"/> layers: the end of its first half.</summary>
    public static int LayerFor(int layers) => Math.Max(0, layers / 2 - 1);

    /// <summary>
    /// Loss on the last frame's patches, and the motion accuracy on its object patches (NaN for one
    /// frame, or when every object has left). <paramref name="lastFrame"/> is [B, P, D];
    /// <paramref name="t"/> holds labels for all B·F frames in batch order. Colour and shape are
    /// classified on every patch (background is a class); motion on object patches only.
    /// </summary>
    public (Tensor Loss, double MotionAccuracy) Loss(Tensor lastFrame, PatchTargets t, int frames)
    {
        long b = lastFrame.size(0), p = lastFrame.size(1);
        Tensor Last(Tensor labels) => labels.view(b, frames, p)[.., frames - 1].reshape(-1);
        var logits = head.forward(lastFrame.reshape(b * p, -1));
        int m = Motions.All.Length, c = PatchTargets.ColourClasses;
        var loss = F.cross_entropy(logits[.., m..(m + c)], Last(t.Colour)) + F.cross_entropy(logits[.., (m + c)..], Last(t.Shape));
        if (frames < 2) return (loss, double.NaN);
        var motion = Last(t.Motion);
        var on = motion.ne(PatchTargets.NoMotion);
        long count = on.sum().item<long>();
        if (count == 0) return (loss, double.NaN); // every object has left the picture
        loss = loss + F.cross_entropy(logits[.., ..m], motion, ignore_index: PatchTargets.NoMotion);
        using var _ = torch.no_grad();
        var right = logits[.., ..m].argmax(-1).eq(motion).logical_and(on).sum().item<long>();
        return (loss, right / (double)count);
    }
}
