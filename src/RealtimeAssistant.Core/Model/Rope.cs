using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Position ids of a block of tokens. <see cref="T"/> is every token's sequence position (the KV
/// cache keeps it, and a plain RoPE model uses nothing else). Multimodal RoPE models (Qwen2-VL)
/// also give image tokens a height and a width position; text has all three equal, so
/// <see cref="H"/> and <see cref="W"/> are null for a block of text.
/// </summary>
public sealed record PositionIds(long[] T, long[]? H = null, long[]? W = null)
{
    public int Length => T.Length;
    public bool IsSpatial => H is not null;

    public static implicit operator PositionIds(long[] t) => new(t);

    /// <summary>count positions from start, text only.</summary>
    public static PositionIds Range(long start, int count)
    {
        var t = new long[count];
        for (int i = 0; i < count; i++) t[i] = start + i;
        return new(t);
    }

    /// <summary>The entries at <paramref name="rows"/> (a pruned block keeps its tokens' original positions).</summary>
    public PositionIds Select(IReadOnlyList<long> rows) =>
        new(Pick(T, rows), H is null ? null : Pick(H, rows), W is null ? null : Pick(W, rows));

    /// <summary>Blocks one after the other.</summary>
    public static PositionIds Concat(params PositionIds[] parts)
    {
        bool spatial = parts.Any(p => p.IsSpatial);
        var t = parts.SelectMany(p => p.T).ToArray();
        return spatial
            ? new(t, parts.SelectMany(p => p.H ?? p.T).ToArray(), parts.SelectMany(p => p.W ?? p.T).ToArray())
            : new(t);
    }

    /// <summary>Every component moved by <paramref name="delta"/>.</summary>
    public PositionIds Shift(long delta) =>
        delta == 0 ? this : new(T.Select(x => x + delta).ToArray(), H?.Select(x => x + delta).ToArray(), W?.Select(x => x + delta).ToArray());

    static long[] Pick(long[] a, IReadOnlyList<long> rows)
    {
        var r = new long[rows.Count];
        for (int i = 0; i < r.Length; i++) r[i] = a[rows[i]];
        return r;
    }
}

/// <summary>
/// Rotary position embedding (HF's rotate_half form). Positions are explicit ids, so they may be
/// non-contiguous (pruned tokens keep their original ids) or start anywhere (group positions).
/// With <c>mrope_section</c> (Qwen2-VL's multimodal RoPE) each frequency takes its angle from the
/// t, h or w position, by consecutive sections of the frequencies.
/// </summary>
public sealed class Rope : IDisposable
{
    readonly Tensor _invFreq; // [D/2], float32, on the model's device
    readonly Tensor? _section; // [D/2] int64: 0, 1 or 2 (t, h, w) per frequency; null without M-RoPE

    public Rope(int headDim, double theta, Device device, int[]? mropeSection = null)
    {
        // Made on the first forward (DecoderLm.Rope), so with Scalars that stay alive (Model/Rooted);
        // reciprocal() is what 1.0 / t runs, less a ×1.
        var exps = Rooted.Arange(0, headDim, 2, ScalarType.Float64).DividedByNumber(headDim);
        _invFreq = torch.pow(theta, exps).reciprocal().to_type(ScalarType.Float32).to(device).DetachFromDisposeScope();
        if (mropeSection is { } s)
        {
            if (s.Sum() != headDim / 2)
                throw new UserError($"mrope_section [{string.Join(", ", s)}] must add up to head_dim / 2 = {headDim / 2}");
            var owner = s.SelectMany((n, i) => Enumerable.Repeat((long)i, n)).ToArray();
            _section = torch.tensor(owner, device: device).DetachFromDisposeScope();
        }
    }

    public bool IsMultimodal => _section is not null;

    /// <summary>Tables for a block's positions, on <paramref name="device"/>.</summary>
    public (Tensor Cos, Tensor Sin) Tables(PositionIds positions, ScalarType dtype, Device device)
    {
        if (_section is null || !positions.IsSpatial) return Tables(torch.tensor(positions.T, device: device), dtype);
        var thw = torch.tensor(positions.T.Concat(positions.H!).Concat(positions.W!).ToArray(), device: device).view(3, -1);
        return Tables(thw, dtype);
    }

    /// <summary>
    /// cos and signed sin tables [.., T, D] for position ids [.., T] (any integer values); with
    /// M-RoPE, ids [3, T] (t, h, w) give tables [T, D]. The sin table carries rotate_half's sign
    /// (−sin on the first half), so <see cref="Apply"/> needs one roll instead of two slices, a
    /// negation and a concatenation: on a small model each native call costs more than its arithmetic.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, ScalarType dtype)
    {
        var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq; // [.., T, D/2]
        if (_section is not null && positions.dim() == 2 && positions.size(0) == 3)
            // Frequency j turns with the t, h or w position its section names.
            freqs = freqs.gather(0, _section.view(1, 1, -1).expand(1, freqs.size(1), -1)).squeeze(0);
        var s = freqs.sin();
        var c = freqs.cos();
        return (torch.cat(new[] { c, c }, -1).to_type(dtype), torch.cat(new[] { -s, s }, -1).to_type(dtype));
    }

    /// <summary>x [B, H, T, D] rotated by the tables for its T positions: x·cos + rotate_half(x)·sin, HF's form.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => (x * cos).Plus(x.roll(x.size(-1) / 2, -1) * sin);

    /// <summary>
    /// Rotates stored keys by −delta positions: exact for RoPE, so no re-encoding is needed. With
    /// M-RoPE the three components move together, which turns every frequency by the same delta.
    /// </summary>
    public Tensor ShiftKeys(Tensor keys, long delta)
    {
        using var scope = torch.NewDisposeScope();
        using var by = (-delta).ToScalar(); // kept alive across the call: see Rooted
        var pos = torch.full(new long[] { keys.size(2) }, by, ScalarType.Int64, keys.device);
        var freqs = pos.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var (s, c) = (freqs.sin(), freqs.cos());
        var (cos, sin) = (torch.cat(new[] { c, c }, -1).to_type(keys.dtype), torch.cat(new[] { -s, s }, -1).to_type(keys.dtype));
        return Apply(keys, cos, sin).MoveToOuterDisposeScope();
    }

    public void Dispose() { _invFreq.Dispose(); _section?.Dispose(); }
}
