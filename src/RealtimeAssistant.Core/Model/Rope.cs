using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Rotary position embedding (HF's rotate_half form). Positions are explicit ids, so they may be
/// non-contiguous (pruned tokens keep their original ids) or start anywhere (group positions).
/// </summary>
public sealed class Rope : IDisposable
{
    readonly Tensor _invFreq; // [D/2], float32, on the model's device

    public Rope(int headDim, double theta, Device device)
    {
        var exps = torch.arange(0, headDim, 2, ScalarType.Float64) / headDim;
        _invFreq = (1.0 / torch.pow(theta, exps)).to_type(ScalarType.Float32).to(device).DetachFromDisposeScope();
    }

    /// <summary>
    /// cos and signed sin tables [.., T, D] for position ids [.., T] (any integer values). The sin
    /// table carries rotate_half's sign (−sin on the first half), so <see cref="Apply"/> needs one
    /// roll instead of two slices, a negation and a concatenation: on a small model each native
    /// call costs more than its arithmetic.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, ScalarType dtype)
    {
        var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var s = freqs.sin();
        var c = freqs.cos();
        return (torch.cat(new[] { c, c }, -1).to_type(dtype), torch.cat(new[] { -s, s }, -1).to_type(dtype));
    }

    /// <summary>x [B, H, T, D] rotated by the tables for its T positions: x·cos + rotate_half(x)·sin, HF's form.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => x * cos + x.roll(x.shape[^1] / 2, -1) * sin;

    /// <summary>Rotates stored keys by −delta positions: exact for RoPE, so no re-encoding is needed.</summary>
    public Tensor ShiftKeys(Tensor keys, long delta)
    {
        using var scope = torch.NewDisposeScope();
        var pos = torch.full(new long[] { keys.shape[2] }, -delta, ScalarType.Int64, keys.device);
        var (cos, sin) = Tables(pos, keys.dtype);
        return Apply(keys, cos, sin).MoveToOuterDisposeScope();
    }

    public void Dispose() => _invFreq.Dispose();
}
