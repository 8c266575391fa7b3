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
/// Evicting from the front only moves a start offset (a sliding window costs O(1) per frame);
/// the live range is moved back to the buffer's start when an append runs out of room.
/// Each layer's groups have their own length: pruning may drop tokens from some layers only.
/// Writes run under InferenceMode: buffers made by an inference path are inference tensors,
/// which only that mode may write; a cache made outside it is written the same way.
/// </summary>
public sealed unsafe class KvGroup : IDisposable
{
    Tensor? _k, _v;      // [B, Hkv, capacity, D]; live entries are [_start, _start + Length)
    long[] _pos = Array.Empty<long>();
    long _start;
    // The buffers' layout, read once when they are made (reading a tensor's shape calls into
    // libtorch): capacity, KV heads, head width, and for float32 on the CPU at batch 1 (the decode
    // kernel's case) their addresses.
    long _cap, _heads, _dim;
    float* _kp, _vp;
    public long Length { get; private set; }

    /// <summary>Position ids of the entries, in cache order (host side: no device sync to read).</summary>
    public ReadOnlySpan<long> Positions => _pos.AsSpan((int)_start, (int)Length);

    public Tensor Keys => _k!.narrow(2, _start, Length);
    public Tensor Values => _v!.narrow(2, _start, Length);
    public bool IsEmpty => Length == 0;

    /// <summary>Bytes held on the device (capacity, not length).</summary>
    public long AllocatedBytes => _k is null ? 0 : 2 * _k.numel() * _k.ElementSize;

    public void Append(Tensor k, Tensor v, ReadOnlySpan<long> positions)
    {
        long n = k.size(2);
        if (positions.Length != n) throw new ArgumentException($"{positions.Length} positions for {n} entries");
        EnsureCapacity(k, Length + n);
        using (torch.inference_mode())
        {
            _k!.narrow(2, _start + Length, n).copy_(k);
            _v!.narrow(2, _start + Length, n).copy_(v);
        }
        positions.CopyTo(_pos.AsSpan((int)(_start + Length)));
        Length += n;
    }

    void EnsureCapacity(Tensor like, long needed)
    {
        if (_start + needed <= _cap) return;
        EnsureCapacity(like.size(0), like.size(1), like.size(3), like.dtype, like.device, needed);
    }

    void EnsureCapacity(long batch, long heads, long dim, ScalarType dtype, Device device, long needed)
    {
        long cap = _cap;
        if (_start + needed <= cap) return;
        if (needed <= cap * 3 / 4) { Compact(); return; } // room enough once the evicted front is reclaimed
        long newCap = Math.Max(64, Math.Max(needed, cap * 2));
        var shape = new[] { batch, heads, newCap, dim };
        var k = torch.empty(shape, dtype, device).DetachFromDisposeScope();
        var v = torch.empty(shape, dtype, device).DetachFromDisposeScope();
        if (_k is not null && Length > 0)
            using (torch.inference_mode())
            {
                k.narrow(2, 0, Length).copy_(Keys);
                v.narrow(2, 0, Length).copy_(Values);
            }
        _k?.Dispose(); _v?.Dispose();
        _k = k; _v = v;
        (_cap, _heads, _dim) = (newCap, shape[1], shape[3]);
        bool kernel = shape[0] == 1 && k.device_type == DeviceType.CPU && k.dtype == ScalarType.Float32;
        _kp = kernel ? Kernels.TensorMemory.Ptr<float>(k) : null;
        _vp = kernel ? Kernels.TensorMemory.Ptr<float>(v) : null;
        var pos = new long[newCap];
        Array.Copy(_pos, _start, pos, 0, Length);
        _pos = pos;
        _start = 0;
    }

    /// <summary>Moves the live entries to the buffer's start.</summary>
    void Compact()
    {
        if (_start == 0) return;
        if (Length > 0)
            using (torch.inference_mode())
            {
                // clone: source and destination ranges may overlap.
                using var kt = Keys.clone();
                using var vt = Values.clone();
                _k!.narrow(2, 0, Length).copy_(kt);
                _v!.narrow(2, 0, Length).copy_(vt);
            }
        Array.Copy(_pos, _start, _pos, 0, Length);
        _start = 0;
    }

    /// <summary>Removes entries [start, start+count); later entries move down, order is kept.</summary>
    public void Evict(long start, long count)
    {
        if (start < 0 || count < 0 || start + count > Length) throw new ArgumentOutOfRangeException(nameof(start));
        if (count == 0) return;
        if (start == 0) { _start += count; Length -= count; return; } // the window slides: no copy
        long tail = Length - start - count;
        if (tail > 0)
            using (torch.inference_mode())
            {
                using var kt = _k!.narrow(2, _start + start + count, tail).clone();
                using var vt = _v!.narrow(2, _start + start + count, tail).clone();
                _k.narrow(2, _start + start, tail).copy_(kt);
                _v!.narrow(2, _start + start, tail).copy_(vt);
            }
        Array.Copy(_pos, _start + start + count, _pos, _start + start, tail);
        Length -= count;
    }

    /// <summary>Keeps only the entries at <paramref name="indices"/> (ascending), in that order.</summary>
    public void Keep(long[] indices)
    {
        if (indices.Length == Length) return;
        using (torch.inference_mode())
        {
            using var idx = torch.tensor(indices, device: _k!.device);
            using var k = Keys.index_select(2, idx);
            using var v = Values.index_select(2, idx);
            _k.narrow(2, _start, indices.Length).copy_(k);
            _v!.narrow(2, _start, indices.Length).copy_(v);
        }
        for (int i = 0; i < indices.Length; i++) _pos[_start + i] = _pos[_start + indices[i]];
        Length = indices.Length;
    }

    /// <summary>Applies <paramref name="rotate"/> to the stored keys from entry <paramref name="from"/> on and shifts their positions by <paramref name="delta"/>.</summary>
    public void ShiftPositions(long delta, Func<Tensor, Tensor> rotate, long from = 0)
    {
        if (Length - from <= 0) return;
        using (torch.inference_mode())
        {
            var view = _k!.narrow(2, _start + from, Length - from);
            using var rotated = rotate(view);
            view.copy_(rotated);
        }
        for (long i = _start + from; i < _start + Length; i++) _pos[i] += delta;
    }

    /// <summary>
    /// Appends one entry read from memory (the CPU decode kernel's path, float32 at batch 1: no call
    /// into libtorch unless the buffer must grow): <paramref name="k"/> and <paramref name="v"/> point
    /// at the entry's first head, heads <paramref name="kHeadStride"/> / <paramref name="vHeadStride"/>
    /// floats apart. <paramref name="like"/> gives the shape and type if the buffer must be made or grown.
    /// </summary>
    public void AppendRow(Tensor like, float* k, float* v, long kHeadStride, long vHeadStride, long position)
    {
        EnsureCapacity(like, Length + 1);
        AppendRowInPlace(k, v, kHeadStride, vHeadStride, position);
    }

    /// <summary>
    /// <see cref="AppendRow(Tensor, float*, float*, long, long, long)"/> for a float32 CPU cache of
    /// <paramref name="heads"/> × <paramref name="dim"/> (made so if it has no buffers yet), with no
    /// call into libtorch unless the buffers grow: the fused decode step's append.
    /// </summary>
    public void AppendRow(long heads, long dim, float* k, float* v, long kHeadStride, long vHeadStride, long position)
    {
        EnsureCapacity(1, heads, dim, ScalarType.Float32, torch.CPU, Length + 1);
        if (_heads != heads || _dim != dim) throw new ArgumentException($"a row of {heads} heads × {dim} for a cache of {_heads} × {_dim}");
        AppendRowInPlace(k, v, kHeadStride, vHeadStride, position);
    }

    void AppendRowInPlace(float* k, float* v, long kHeadStride, long vHeadStride, long position)
    {
        if (_kp is null) throw new InvalidOperationException("AppendRow needs a float32 CPU cache at batch 1 (check KernelLayout)");
        long at = _start + Length;
        for (long h = 0; h < _heads; h++)
        {
            new ReadOnlySpan<float>(k + h * kHeadStride, (int)_dim).CopyTo(new Span<float>(_kp + (h * _cap + at) * _dim, (int)_dim));
            new ReadOnlySpan<float>(v + h * vHeadStride, (int)_dim).CopyTo(new Span<float>(_vp + (h * _cap + at) * _dim, (int)_dim));
        }
        _pos[at] = position;
        Length++;
    }

    /// <summary>Appends row <paramref name="row"/> of keys and values [1, Hkv, N, D] (float32 on the CPU, each head's row contiguous): <see cref="AppendRow(Tensor, float*, float*, long, long, long)"/> for one row.</summary>
    public void AppendRow(Tensor k, Tensor v, int row, long position)
    {
        var (ks, vs) = (k.Strides(), v.Strides());
        if (ks[3] != 1 || vs[3] != 1) throw new ArgumentException("each head's row of keys and values must be contiguous");
        AppendRow(k, Kernels.TensorMemory.Ptr<float>(k) + row * ks[2], Kernels.TensorMemory.Ptr<float>(v) + row * vs[2], ks[1], vs[1], position);
    }

    /// <summary>Whether the buffers are float32 on the CPU at batch 1 (or not made yet): what <see cref="AppendRow"/> and <see cref="KernelRange"/> need.</summary>
    public bool KernelLayout => _k is null || _kp is not null;

    /// <summary>The live entries as the CPU decode kernel reads them (managed fields only; null when empty or not <see cref="KernelLayout"/>).</summary>
    public Kernels.DecodeAttention.Range? KernelRange =>
        _kp is null || Length == 0 ? null : new((nint)(_kp + _start * _dim), (nint)(_vp + _start * _dim), Length, _cap * _dim, _cap * _dim);

    public void Clear() { Length = 0; _start = 0; }

    public void Dispose()
    {
        _k?.Dispose(); _v?.Dispose();
        _k = _v = null;
        _kp = _vp = null;
        _cap = 0;
        Length = 0; _start = 0;
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

    /// <summary>
    /// What a decode row of group <paramref name="g"/> attends, as the CPU kernel reads it in place:
    /// a source row its group; a target row the source (if any) and the target. Both kernel paths
    /// (the layer path's decode rows and the fused step) take it from here.
    /// </summary>
    public Kernels.DecodeAttention.Range[] KernelRangesFor(CacheGroup g)
    {
        var source = Source.KernelRange;
        return g == CacheGroup.Source ? [source!.Value]
            : source is { } src ? [src, Target.KernelRange!.Value] : [Target.KernelRange!.Value];
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
