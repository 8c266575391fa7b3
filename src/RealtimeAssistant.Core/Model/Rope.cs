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

    /// <summary>cos and sin tables [.., T, D] for position ids [.., T] (any integer values).</summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, ScalarType dtype)
    {
        var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var emb = torch.cat(new[] { freqs, freqs }, -1);
        return (emb.cos().to_type(dtype), emb.sin().to_type(dtype));
    }

    /// <summary>x [B, H, T, D] rotated by the tables for its T positions.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        var half = x.shape[^1] / 2;
        var rotated = torch.cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
        return x * cos + rotated * sin;
    }

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
