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
        var qs = q.Dims();
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
                var sh = t.Dims();
                if (sh.Length != 4 || sh[0] != b || sh[3] != d || h % sh[1] != 0 || (kvHeads >= 0 && sh[1] != kvHeads) || (s >= 0 && sh[2] != s)) return false;
                kvHeads = sh[1];
                s = sh[2];
                var st = t.Strides();
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
        var qs = q.Dims();
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
        bool fold = FoldedScores;
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
                        Attend(isa, fold, (float*)qp + row * qRow + hi * qHead, (float*)op + row * oRow + hi * oHead, rows[(int)row], hi / rep, d, scale, sc);
                    }
            }
            finally { System.Buffers.ArrayPool<float>.Shared.Return(scores); }
        });
    }

    /// <summary>A range of one sequence's keys and values for the kernel: addresses of its first entry's head 0, entries, and floats between heads.</summary>
    public readonly record struct Range(nint K, nint V, long S, long KH, long VH);

    /// <summary>One query head over its KV head's ranges: oh ← softmax(qh·Kᵀ·scale)·V.</summary>
    /// <param name="fold">Whether heads AVX-512 folds take <see cref="AttendAvx512"/> (<see cref="FoldedScores"/>, read by the calling thread before it hands out ranges).</param>
    static void Attend(KernelIsa isa, bool fold, float* qh, float* oh, Range[] segs, long kv, int d, float scale, float* sc)
    {
        if (fold && isa == KernelIsa.Avx512 && d % 16 == 0 && d <= MaxWideHead) { AttendAvx512(qh, oh, segs, kv, d, scale, sc); return; }
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

    /// <summary>Whether AVX-512 heads of 16·k floats (k ≤ 8) score 16 keys a fold (<see cref="AttendAvx512"/>, the default); false: a horizontal sum per key (`ra bench engine --attention compare`).</summary>
    public static bool FoldedScores { get => !PerKey.Value; set => PerKey.Value = !value; }

    // Per async flow, as CpuIsa's forced path: a measurement's setting is not a concurrent caller's.
    static readonly AsyncLocal<bool> PerKey = new();

    /// <summary>Head widths up to which <see cref="AttendAvx512"/> keeps the output row in registers.</summary>
    const int MaxWideHead = 128;

    /// <summary>
    /// <see cref="Attend"/> on AVX-512 for heads of 16·k floats, k ≤ 8. Scores 16 keys at a time:
    /// each key's products stay in a vector, and one fold network sums the 16 vectors into one
    /// vector of 16 scores, where a sum per key costs a horizontal reduction each. The fold sums
    /// every key's lanes in the same order wherever the key sits among the 16 (a missing key is
    /// zeros), so a key's score does not depend on which keys share its group: a row of a block
    /// scores as that row alone does. The weighted sum of values runs in registers.
    /// </summary>
    static void AttendAvx512(float* qh, float* oh, Range[] segs, long kv, int d, float scale, float* sc)
    {
        int nd = d / 16;
        long at = 0;
        var sv = Vector512.Create(scale);
        foreach (var sg in segs)
        {
            float* k = (float*)sg.K + kv * sg.KH;
            for (long s = 0; s < sg.S; s += 16)
            {
                int count = (int)Math.Min(16, sg.S - s);
                var scores = Score16(qh, k + s * d, d, nd, count) * sv;
                if (count == 16) scores.Store(sc + at + s);
                else for (int j = 0; j < count; j++) sc[at + s + j] = scores.GetElement(j);
            }
            at += sg.S;
        }
        float sum = Softmax(KernelIsa.Avx512, sc, (int)at);
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
        at = 0;
        foreach (var sg in segs)
        {
            float* v = (float*)sg.V + kv * sg.VH;
            for (long s = 0; s < sg.S; s++)
            {
                var w = Vector512.Create(sc[at + s]);
                float* vs = v + s * d;
                o0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs), o0);
                if (nd > 1) o1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 16), o1);
                if (nd > 2) o2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 32), o2);
                if (nd > 3) o3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 48), o3);
                if (nd > 4) o4 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 64), o4);
                if (nd > 5) o5 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 80), o5);
                if (nd > 6) o6 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 96), o6);
                if (nd > 7) o7 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vs + 112), o7);
            }
            at += sg.S;
        }
        var inv = Vector512.Create(1f / sum);
        (o0 * inv).Store(oh);
        if (nd > 1) (o1 * inv).Store(oh + 16);
        if (nd > 2) (o2 * inv).Store(oh + 32);
        if (nd > 3) (o3 * inv).Store(oh + 48);
        if (nd > 4) (o4 * inv).Store(oh + 64);
        if (nd > 5) (o5 * inv).Store(oh + 80);
        if (nd > 6) (o6 * inv).Store(oh + 96);
        if (nd > 7) (o7 * inv).Store(oh + 112);
    }

    /// <summary>q·k for keys k, k + d, … (<paramref name="count"/> ≤ 16 of them) as one vector, lane j the j-th key's (0 past the count).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Score16(float* q, float* k, int d, int nd, int count)
    {
        var a = Fold(Lanes(q, k, 0, d, nd, count), Lanes(q, k, 1, d, nd, count), Fold16Lo, Fold16Hi);
        var b = Fold(Lanes(q, k, 2, d, nd, count), Lanes(q, k, 3, d, nd, count), Fold16Lo, Fold16Hi);
        var c = Fold(Lanes(q, k, 4, d, nd, count), Lanes(q, k, 5, d, nd, count), Fold16Lo, Fold16Hi);
        var e = Fold(Lanes(q, k, 6, d, nd, count), Lanes(q, k, 7, d, nd, count), Fold16Lo, Fold16Hi);
        var f = Fold(Lanes(q, k, 8, d, nd, count), Lanes(q, k, 9, d, nd, count), Fold16Lo, Fold16Hi);
        var g = Fold(Lanes(q, k, 10, d, nd, count), Lanes(q, k, 11, d, nd, count), Fold16Lo, Fold16Hi);
        var h = Fold(Lanes(q, k, 12, d, nd, count), Lanes(q, k, 13, d, nd, count), Fold16Lo, Fold16Hi);
        var i = Fold(Lanes(q, k, 14, d, nd, count), Lanes(q, k, 15, d, nd, count), Fold16Lo, Fold16Hi);
        a = Fold(a, b, Fold8Lo, Fold8Hi); c = Fold(c, e, Fold8Lo, Fold8Hi); f = Fold(f, g, Fold8Lo, Fold8Hi); h = Fold(h, i, Fold8Lo, Fold8Hi);
        a = Fold(a, c, Fold4Lo, Fold4Hi); f = Fold(f, h, Fold4Lo, Fold4Hi);
        return Fold(a, f, Fold2Lo, Fold2Hi);
    }

    /// <summary>Key <paramref name="j"/>'s products summed over the head's vectors, lane by lane (zeros for a key past the count).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Lanes(float* q, float* k, int j, int d, int nd, int count)
    {
        if (j >= count) return Vector512<float>.Zero;
        float* kj = k + (long)j * d;
        var p = Vector512.Load(q) * Vector512.Load(kj);
        for (int i = 1; i < nd; i++) p = Vector512.FusedMultiplyAdd(Vector512.Load(q + 16 * i), Vector512.Load(kj + 16 * i), p);
        return p;
    }

    /// <summary>
    /// Two vectors holding keys of g lanes each (16/g keys a vector) into one holding all their
    /// keys, in order, of g/2 lanes: lane u of a key plus its lane u + g/2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Fold(Vector512<float> a, Vector512<float> b, Vector512<int> lo, Vector512<int> hi) =>
        System.Runtime.Intrinsics.X86.Avx512F.PermuteVar16x32x2(a, lo, b) + System.Runtime.Intrinsics.X86.Avx512F.PermuteVar16x32x2(a, hi, b);

    static readonly Vector512<int> Fold16Lo = FoldIndex(16, false), Fold16Hi = FoldIndex(16, true), Fold8Lo = FoldIndex(8, false), Fold8Hi = FoldIndex(8, true),
        Fold4Lo = FoldIndex(4, false), Fold4Hi = FoldIndex(4, true), Fold2Lo = FoldIndex(2, false), Fold2Hi = FoldIndex(2, true);

    /// <summary>The lanes <see cref="Fold"/> takes from the pair (0–15: the first vector, 16–31: the second) for keys of g lanes: each key's low half, or its high half.</summary>
    static Vector512<int> FoldIndex(int g, bool high)
    {
        int keys = 16 / g, half = g / 2;
        var idx = new int[16];
        for (int t = 0; t < 2 * keys; t++)
            for (int u = 0; u < half; u++)
                idx[t * half + u] = (t < keys ? 0 : 16) + t % keys * g + u + (high ? half : 0);
        return Vector512.Create(idx);
    }

    /// <summary>The attention output [B,H,1,D] (check <see cref="Applies"/> first).</summary>
    public static Tensor Run(Tensor q, params (Tensor K, Tensor V)[] ranges)
    {
        long b = q.size(0), h = q.size(1), d = q.size(3), kvHeads = ranges[0].K.size(1);
        long total = ranges.Sum(r => r.K.size(2));
        var qc = q.is_contiguous() ? q : q.contiguous();
        var output = torch.empty(new[] { b, h, 1, d }, ScalarType.Float32, q.device);
        try
        {
            var isa = CpuIsa.Current;
            bool fold = FoldedScores;
            float scale = 1f / MathF.Sqrt(d);
            nint qp = (nint)TensorMemory.Ptr<float>(qc), op = (nint)TensorMemory.Ptr<float>(output);
            // Per batch row, its ranges (a row's keys start one batch stride further).
            var segs = Enumerable.Range(0, (int)b).Select(bi => ranges.Select(r => new Range(
                (nint)((float*)TensorMemory.Ptr<float>(r.K) + bi * r.K.stride(0)), (nint)((float*)TensorMemory.Ptr<float>(r.V) + bi * r.V.stride(0)),
                r.K.size(2), r.K.stride(1), r.V.stride(1))).ToArray()).ToArray();
            int items = (int)(b * h), rep = (int)(h / kvHeads);
            KernelPool.For(items, 1, (int)Math.Max(1, (1L << 15) / Math.Max(1, total * d)), (i0, i1) =>
            {
                // Pooled: a decode step runs this per layer, and garbage here is a collection per few tokens.
                var scores = System.Buffers.ArrayPool<float>.Shared.Rent((int)total);
                try
                {
                    fixed (float* sc = scores)
                        for (int item = i0; item < i1; item++)
                            Attend(isa, fold, (float*)qp + item * d, (float*)op + item * d, segs[item / h], item % h / rep, (int)d, scale, sc);
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
