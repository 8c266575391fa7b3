using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>
/// Attention of one new query per head over the cache (a decode step): softmax(q·Kᵀ/√d)·V, with
/// grouped-query heads read in place (no repeated keys) and the keys split over several ranges
/// (read apart, one softmax over all). A decode step reads the whole cache once, so this streams
/// each head's keys and values from memory once, with the query heads of a KV head split over
/// the kernel threads. libtorch's SDPA read the cache at ~22 GB/s on this machine.
/// </summary>
public static unsafe class DecodeAttention
{
    /// <summary>
    /// Whether the kernel takes q [B,H,1,D] over key/value ranges [B,Hkv,S,D]: float32 on the CPU,
    /// each key and value row contiguous (a cache's narrowed buffer is), kernels on.
    /// </summary>
    public static bool Applies(Tensor q, params (Tensor K, Tensor V)[] ranges)
    {
        if (!WeightMatrix.KernelsEnabled || q.device_type != DeviceType.CPU || q.dtype != ScalarType.Float32) return false;
        var qs = q.shape;
        return qs.Length == 4 && qs[2] == 1 && RangesFit(qs[0], qs[1], qs[3], ranges);
    }

    /// <summary>
    /// The ranges as the kernel reads them for queries of batch <paramref name="b"/>, <paramref name="h"/>
    /// heads of width <paramref name="d"/>. Each tensor's shape and strides are read once: on a small
    /// model every call into libtorch costs about what this kernel's arithmetic does.
    /// </summary>
    static bool RangesFit(long b, long h, long d, (Tensor K, Tensor V)[] ranges)
    {
        long kvHeads = -1;
        foreach (var (k, v) in ranges)
        {
            long s = -1;
            foreach (var t in new[] { k, v })
            {
                if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32) return false;
                var sh = t.shape;
                if (sh.Length != 4 || sh[0] != b || sh[3] != d || h % sh[1] != 0 || (kvHeads >= 0 && sh[1] != kvHeads) || (s >= 0 && sh[2] != s)) return false;
                kvHeads = sh[1];
                s = sh[2];
                var st = t.stride();
                if (st[3] != 1 || (sh[2] > 1 && st[2] != d)) return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Several sequences' decode steps in one call (a batch of streams): the query of row i
    /// (q [1,H,N,D] float32 on the CPU, position i on the third axis) attends over row i's own
    /// ranges (<see cref="KvGroup.KernelRange"/>: read from managed fields, no call into libtorch);
    /// the output is [1,H,N,D] in the same layout. One parallel loop over every row's heads
    /// instead of one per row. <paramref name="kvHeads"/>: the key/value heads.
    /// </summary>
    public static Tensor RunRows(Tensor q, IReadOnlyList<Range[]> rows, long kvHeads)
    {
        var qs = q.shape;
        long h = qs[1], n = qs[2], d = qs[3];
        if (qs[0] != 1 || n != rows.Count) throw new ArgumentException($"{rows.Count} rows for queries {string.Join("x", qs)}");
        var qc = q.is_contiguous() ? q : q.contiguous();
        var output = torch.empty(new[] { 1, h, n, d }, ScalarType.Float32, q.device);
        try
        {
            // [1,H,N,D]: row i of head j is (j·N + i)·D floats on.
            RunRows(TensorMemory.Ptr<float>(qc), d, n * d, TensorMemory.Ptr<float>(output), d, n * d, rows, (int)h, (int)d, kvHeads);
            return output;
        }
        finally { if (!ReferenceEquals(qc, q)) qc.Dispose(); }
    }

    /// <summary>
    /// <see cref="RunRows(Tensor, IReadOnlyList{Range[]}, long)"/> on memory: row i's query head j
    /// is at q + i·<paramref name="qRow"/> + j·<paramref name="qHead"/>, its output at
    /// o + i·<paramref name="oRow"/> + j·<paramref name="oHead"/>.
    /// </summary>
    public static void RunRows(float* q, long qRow, long qHead, float* o, long oRow, long oHead, IReadOnlyList<Range[]> rows, int h, int d, long kvHeads)
    {
        int n = rows.Count;
        var isa = CpuIsa.Current;
        float scale = 1f / MathF.Sqrt(d);
        nint qp = (nint)q, op = (nint)o;
        long longest = 0;
        foreach (var r in rows)
        {
            long s = 0;
            foreach (var x in r) s += x.S;
            longest = Math.Max(longest, s);
        }
        long rep = h / kvHeads;
        KernelPool.For(n * h, 1, (int)Math.Max(1, (1L << 15) / Math.Max(1, longest * d)), (i0, i1) =>
        {
            var scores = System.Buffers.ArrayPool<float>.Shared.Rent((int)Math.Max(1, longest));
            try
            {
                fixed (float* sc = scores)
                    for (int item = i0; item < i1; item++)
                    {
                        // Head-major: a head's rows run back to back, so rows over the same keys
                        // (a block of one sequence) read them from cache after the first.
                        long hi = item / n, row = item % n;
                        Attend(isa, (float*)qp + row * qRow + hi * qHead, (float*)op + row * oRow + hi * oHead, rows[(int)row], hi / rep, d, scale, sc);
                    }
            }
            finally { System.Buffers.ArrayPool<float>.Shared.Return(scores); }
        });
    }

    /// <summary>A range of one sequence's keys and values for the kernel: addresses of its first entry's head 0, entries, and floats between heads.</summary>
    public readonly record struct Range(nint K, nint V, long S, long KH, long VH);

    /// <summary>One query head over its KV head's ranges: oh ← softmax(qh·Kᵀ·scale)·V.</summary>
    static void Attend(KernelIsa isa, float* qh, float* oh, Range[] segs, long kv, int d, float scale, float* sc)
    {
        long at = 0;
        foreach (var sg in segs)
        {
            float* k = (float*)sg.K + kv * sg.KH;
            for (long s = 0; s < sg.S; s++) sc[at + s] = Dot(isa, qh, k + s * d, d) * scale;
            at += sg.S;
        }
        float sum = Softmax(isa, sc, (int)at);
        new Span<float>(oh, d).Clear();
        at = 0;
        foreach (var sg in segs)
        {
            float* v = (float*)sg.V + kv * sg.VH;
            for (long s = 0; s < sg.S; s++) Axpy(isa, sc[at + s], v + s * d, oh, d);
            at += sg.S;
        }
        float inv = 1f / sum;
        for (int j = 0; j < d; j++) oh[j] *= inv;
    }

    /// <summary>The attention output [B,H,1,D] (check <see cref="Applies"/> first).</summary>
    public static Tensor Run(Tensor q, params (Tensor K, Tensor V)[] ranges)
    {
        long b = q.shape[0], h = q.shape[1], d = q.shape[3], kvHeads = ranges[0].K.shape[1];
        long total = ranges.Sum(r => r.K.shape[2]);
        var qc = q.is_contiguous() ? q : q.contiguous();
        var output = torch.empty(new[] { b, h, 1, d }, ScalarType.Float32, q.device);
        try
        {
            var isa = CpuIsa.Current;
            float scale = 1f / MathF.Sqrt(d);
            nint qp = (nint)TensorMemory.Ptr<float>(qc), op = (nint)TensorMemory.Ptr<float>(output);
            // Per batch row, its ranges (a row's keys start one batch stride further).
            var segs = Enumerable.Range(0, (int)b).Select(bi => ranges.Select(r => new Range(
                (nint)((float*)TensorMemory.Ptr<float>(r.K) + bi * r.K.stride(0)), (nint)((float*)TensorMemory.Ptr<float>(r.V) + bi * r.V.stride(0)),
                r.K.shape[2], r.K.stride(1), r.V.stride(1))).ToArray()).ToArray();
            int items = (int)(b * h), rep = (int)(h / kvHeads);
            KernelPool.For(items, 1, (int)Math.Max(1, (1L << 15) / Math.Max(1, total * d)), (i0, i1) =>
            {
                // Pooled: a decode step runs this per layer, and garbage here is a collection per few tokens.
                var scores = System.Buffers.ArrayPool<float>.Shared.Rent((int)total);
                try
                {
                    fixed (float* sc = scores)
                        for (int item = i0; item < i1; item++)
                            Attend(isa, (float*)qp + item * d, (float*)op + item * d, segs[item / h], item % h / rep, (int)d, scale, sc);
                }
                finally { System.Buffers.ArrayPool<float>.Shared.Return(scores); }
            });
            return output;
        }
        finally { if (!ReferenceEquals(qc, q)) qc.Dispose(); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(KernelIsa isa, float* a, float* b, int n)
    {
        int k = 0;
        float s = 0;
        if (isa == KernelIsa.Avx512)
        {
            var acc = Vector512<float>.Zero;
            for (; k + 16 <= n; k += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), acc);
            s = Vector512.Sum(acc);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= n; k += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc);
            s = Vector256.Sum(acc);
        }
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    /// <summary>y += a·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Axpy(KernelIsa isa, float a, float* x, float* y, int n)
    {
        int k = 0;
        if (isa == KernelIsa.Avx512)
        {
            var av = Vector512.Create(a);
            for (; k + 16 <= n; k += 16) Vector512.FusedMultiplyAdd(av, Vector512.Load(x + k), Vector512.Load(y + k)).Store(y + k);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var av = Vector256.Create(a);
            for (; k + 8 <= n; k += 8) Vector256.FusedMultiplyAdd(av, Vector256.Load(x + k), Vector256.Load(y + k)).Store(y + k);
        }
        for (; k < n; k++) y[k] += a * x[k];
    }

    /// <summary>s ← exp(s − max s) in place; returns the sum.</summary>
    static float Softmax(KernelIsa isa, float* s, int n)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, s[i]);
        float sum = 0;
        int k = 0;
        if (isa == KernelIsa.Avx512)
        {
            var m = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            for (; k + 16 <= n; k += 16) { var e = Vector512.Exp(Vector512.Load(s + k) - m); e.Store(s + k); acc += e; }
            sum = Vector512.Sum(acc);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var m = Vector256.Create(max);
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= n; k += 8) { var e = Vector256.Exp(Vector256.Load(s + k) - m); e.Store(s + k); acc += e; }
            sum = Vector256.Sum(acc);
        }
        for (; k < n; k++) { s[k] = MathF.Exp(s[k] - max); sum += s[k]; }
        return sum;
    }
}
