using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Which group of the cache a token belongs to (group position encoding, METHODS.md §2).
/// Source tokens (instruction, frames) attend only to the source; target tokens (the caption)
/// attend to the source and to earlier target tokens. A plain causal LM uses Source only.
/// </summary>
public enum CacheGroup { Source = 0, Target = 1 }

/// <summary>
/// One layer's keys and values for one group, with the position id of every entry.
/// Keys are stored after RoPE. Storage grows by doubling, so appending is amortised O(new).
/// Each layer's groups have their own length: pruning may drop tokens from some layers only.
/// </summary>
public sealed class KvGroup : IDisposable
{
    Tensor? _k, _v;      // [B, Hkv, capacity, D]
    long[] _pos = Array.Empty<long>();
    public long Length { get; private set; }

    /// <summary>Position ids of the entries, in cache order (host side: no device sync to read).</summary>
    public ReadOnlySpan<long> Positions => _pos.AsSpan(0, (int)Length);

    public Tensor Keys => _k!.narrow(2, 0, Length);
    public Tensor Values => _v!.narrow(2, 0, Length);
    public bool IsEmpty => Length == 0;

    /// <summary>Bytes held on the device (capacity, not length).</summary>
    public long AllocatedBytes => _k is null ? 0 : 2 * _k.numel() * _k.ElementSize;

    public void Append(Tensor k, Tensor v, ReadOnlySpan<long> positions)
    {
        long n = k.shape[2];
        if (positions.Length != n) throw new ArgumentException($"{positions.Length} positions for {n} entries");
        EnsureCapacity(k, Length + n);
        using (torch.no_grad())
        {
            _k!.narrow(2, Length, n).copy_(k);
            _v!.narrow(2, Length, n).copy_(v);
        }
        positions.CopyTo(_pos.AsSpan((int)Length));
        Length += n;
    }

    void EnsureCapacity(Tensor like, long needed)
    {
        long cap = _k?.shape[2] ?? 0;
        if (needed <= cap) return;
        long newCap = Math.Max(64, Math.Max(needed, cap * 2));
        var shape = new[] { like.shape[0], like.shape[1], newCap, like.shape[3] };
        var k = torch.empty(shape, like.dtype, like.device).DetachFromDisposeScope();
        var v = torch.empty(shape, like.dtype, like.device).DetachFromDisposeScope();
        if (_k is not null && Length > 0)
            using (torch.no_grad())
            {
                k.narrow(2, 0, Length).copy_(_k.narrow(2, 0, Length));
                v.narrow(2, 0, Length).copy_(_v!.narrow(2, 0, Length));
            }
        _k?.Dispose(); _v?.Dispose();
        _k = k; _v = v;
        Array.Resize(ref _pos, (int)newCap);
    }

    /// <summary>Removes entries [start, start+count); later entries move down, order is kept.</summary>
    public void Evict(long start, long count)
    {
        if (start < 0 || count < 0 || start + count > Length) throw new ArgumentOutOfRangeException(nameof(start));
        if (count == 0) return;
        long tail = Length - start - count;
        if (tail > 0)
            using (torch.no_grad())
            {
                // clone: source and destination ranges may overlap.
                using var kt = _k!.narrow(2, start + count, tail).clone();
                using var vt = _v!.narrow(2, start + count, tail).clone();
                _k.narrow(2, start, tail).copy_(kt);
                _v!.narrow(2, start, tail).copy_(vt);
            }
        Array.Copy(_pos, start + count, _pos, start, tail);
        Length -= count;
    }

    /// <summary>Keeps only the entries at <paramref name="indices"/> (ascending), in that order.</summary>
    public void Keep(long[] indices)
    {
        if (indices.Length == Length) return;
        using (torch.no_grad())
        {
            using var idx = torch.tensor(indices, device: _k!.device);
            using var k = _k.narrow(2, 0, Length).index_select(2, idx);
            using var v = _v!.narrow(2, 0, Length).index_select(2, idx);
            _k.narrow(2, 0, indices.Length).copy_(k);
            _v.narrow(2, 0, indices.Length).copy_(v);
        }
        for (int i = 0; i < indices.Length; i++) _pos[i] = _pos[indices[i]];
        Length = indices.Length;
    }

    /// <summary>Applies <paramref name="rotate"/> to the stored keys and shifts positions by <paramref name="delta"/>.</summary>
    public void ShiftPositions(long delta, Func<Tensor, Tensor> rotate)
    {
        if (Length == 0) return;
        using (torch.no_grad())
        {
            var view = _k!.narrow(2, 0, Length);
            using var rotated = rotate(view);
            view.copy_(rotated);
        }
        for (int i = 0; i < Length; i++) _pos[i] += delta;
    }

    public void Clear() => Length = 0;

    public void Dispose()
    {
        _k?.Dispose(); _v?.Dispose();
        _k = _v = null;
        Length = 0;
    }
}

/// <summary>A decoder layer's cache: a source group and a target group.</summary>
public sealed class LayerKv : IDisposable
{
    public readonly KvGroup Source = new(), Target = new();

    public KvGroup this[CacheGroup g] => g == CacheGroup.Source ? Source : Target;

    /// <summary>The keys and values a query of group <paramref name="g"/> may attend to.</summary>
    public (Tensor K, Tensor V) KeysFor(CacheGroup g)
    {
        if (g == CacheGroup.Source || Target.IsEmpty) return (Source.Keys, Source.Values);
        if (Source.IsEmpty) return (Target.Keys, Target.Values);
        return (torch.cat(new[] { Source.Keys, Target.Keys }, 2), torch.cat(new[] { Source.Values, Target.Values }, 2));
    }

    public void Dispose() { Source.Dispose(); Target.Dispose(); }
}

/// <summary>The whole decoder's cache, one <see cref="LayerKv"/> per layer.</summary>
public sealed class KvCache : IDisposable
{
    public readonly LayerKv[] Layers;
    public KvCache(int layers) => Layers = Enumerable.Range(0, layers).Select(_ => new LayerKv()).ToArray();

    public long AllocatedBytes => Layers.Sum(l => l.Source.AllocatedBytes + l.Target.AllocatedBytes);

    public void Clear() { foreach (var l in Layers) { l.Source.Clear(); l.Target.Clear(); } }

    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}
