using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>
/// y = x·Wᵀ (+ b) for a few rows of x (a decode step: one), over weights in float32, bfloat16,
/// float16 or q8. A decode step reads every weight once, so these kernels stream the weights at memory speed
/// and never pack or copy them. libtorch's matmul for one row reaches 17–20 GB/s on this
/// machine; these, 35–45 (docs/BENCHMARKS.md).
/// Layouts: x [rows, n] float32, y [rows, m] float32, W [m, n] row-major. q8: int8 [m, n32] (n32 =
/// n rounded up to 32, zero-padded) and one float32 scale per block of 32 [m, n32/32].
/// </summary>
public static unsafe class Gemv
{
    /// <summary>Rows of x up to which a product takes these kernels (each weight row is then reused from L1).</summary>
    public const int MaxRows = 8;

    /// <summary>
    /// Inputs from which a row of x (float32) no longer sits in L1 beside the weights streaming
    /// past (16 KB): a decode step over float32 or half weights then reads it for four weight rows
    /// at once. Shorter rows do better one weight row at a time (fewer streams for the prefetcher:
    /// Qwen2's 1,536-wide gate/up took 1.5× as long four rows at a time); q8's x, in int16, gained
    /// nothing (×1.01 on Qwen2-VL-2B's decoder; docs/BENCHMARKS.md). The AVX2 path takes the same
    /// threshold: from 1,024 inputs, Qwen2-VL-2B's step took 1.37× as long there.
    /// </summary>
    const int LongRow = 4096;

    /// <summary>Whether rows of a long x under four rows share each load of x across four weight rows (<see cref="LongRow"/>, the default); false: one weight row at a time (`ra bench engine --long-rows compare`).</summary>
    public static bool SharedX { get => !PerRow.Value; set => PerRow.Value = !value; }

    // Per async flow, as CpuIsa's forced path: a measurement's setting is not a concurrent caller's.
    static readonly AsyncLocal<bool> PerRow = new();

    /// <summary>Whether a product of <paramref name="rows"/> rows over <paramref name="n"/> inputs takes the four-weight-row kernels (read on the calling thread).</summary>
    static bool SharesX(int rows, int n, KernelIsa isa) => rows < 4 && n >= LongRow && isa != KernelIsa.Scalar && SharedX;

    /// <summary>Weights a thread's share should hold at least: below this a handoff costs more than it saves.</summary>
    const int MinWeightsPerThread = 1 << 16;

    public static void F32(float* x, int rows, int n, float* w, int m, float* bias, float* y)
    {
        var isa = CpuIsa.Current;
        bool sharedX = SharesX(rows, n, isa);
        nint xp = (nint)x, wp = (nint)w, bp = (nint)bias, yp = (nint)y;
        KernelPool.For(m, 4, Math.Max(1, MinWeightsPerThread / Math.Max(1, n)), (o0, o1) =>
        {
            float* xx = (float*)xp, ww = (float*)wp, bb = (float*)bp, yy = (float*)yp;
            int o = o0;
            // Under four rows of a long x, four weight rows share each load of x (LongRow, as in Halves).
            if (sharedX)
                for (; o + 4 <= o1; o += 4)
                    for (int r = 0; r < rows; r++)
                    {
                        if (isa == KernelIsa.Avx512) DotF32x4WAvx512(xx + (long)r * n, ww + (long)o * n, n, bb == null ? null : bb + o, yy + (long)r * m + o);
                        else DotF32x4WAvx2(xx + (long)r * n, ww + (long)o * n, n, bb == null ? null : bb + o, yy + (long)r * m + o);
                    }
            // Four rows or more: blocks of four x rows against two weight rows, as in Halves.
            if (isa == KernelIsa.Avx512 && rows >= 4)
                for (; o + 2 <= o1; o += 2)
                {
                    float* row = ww + (long)o * n;
                    float b0 = bb == null ? 0 : bb[o], b1 = bb == null ? 0 : bb[o + 1];
                    int r = 0;
                    for (; r + 4 <= rows; r += 4) Dot4x2F32Avx512(xx + (long)r * n, row, n, b0, b1, yy + (long)r * m + o, m);
                    for (; r < rows; r++)
                    {
                        yy[(long)r * m + o] = b0 + DotF32Avx512(xx + (long)r * n, row, n);
                        yy[(long)r * m + o + 1] = b1 + DotF32Avx512(xx + (long)r * n, row + n, n);
                    }
                }
            for (; o < o1; o++)
            {
                float* row = ww + (long)o * n;
                float b0 = bb == null ? 0 : bb[o];
                int r = 0;
                // Four rows at a time share each load of the weights (several rows: a verify pass, a pruned read's text).
                if (isa == KernelIsa.Avx512) for (; r + 4 <= rows; r += 4) Dot4F32Avx512(xx + (long)r * n, row, n, b0, yy + (long)r * m + o, m);
                else if (isa == KernelIsa.Avx2) for (; r + 4 <= rows; r += 4) Dot4F32Avx2(xx + (long)r * n, row, n, b0, yy + (long)r * m + o, m);
                for (; r < rows; r++)
                    yy[(long)r * m + o] = b0 + isa switch
                    {
                        KernelIsa.Avx512 => DotF32Avx512(xx + (long)r * n, row, n),
                        KernelIsa.Avx2 => DotF32Avx2(xx + (long)r * n, row, n),
                        _ => DotF32Scalar(xx + (long)r * n, row, n),
                    };
            }
        });
    }

    /// <summary>bfloat16 weights, widened in registers by a shift (<see cref="Bf16Widening"/>).</summary>
    public static void Bf16(float* x, int rows, int n, ushort* w, int m, float* bias, float* y) => Halves<Bf16Widening>(x, rows, n, w, m, bias, y);

    /// <summary>float16 weights, widened exactly in registers (<see cref="F16Widening"/>).</summary>
    public static void F16(float* x, int rows, int n, ushort* w, int m, float* bias, float* y) => Halves<F16Widening>(x, rows, n, w, m, bias, y);

    static void Halves<TW>(float* x, int rows, int n, ushort* w, int m, float* bias, float* y) where TW : struct, IHalfWidening
    {
        var isa = CpuIsa.Current;
        bool sharedX = SharesX(rows, n, isa);
        nint xp = (nint)x, wp = (nint)w, bp = (nint)bias, yp = (nint)y;
        KernelPool.For(m, 4, Math.Max(1, MinWeightsPerThread / Math.Max(1, n)), (o0, o1) =>
        {
            float* xx = (float*)xp, bb = (float*)bp, yy = (float*)yp;
            ushort* ww = (ushort*)wp;
            int o = o0;
            // Under four rows of a long x (a decode step's down product), four weight rows share
            // each load of x instead: x, past L1, is read from L2 once for four rows, not for each.
            if (sharedX)
                for (; o + 4 <= o1; o += 4)
                    for (int r = 0; r < rows; r++)
                    {
                        if (isa == KernelIsa.Avx512) DotHalves4WAvx512<TW>(xx + (long)r * n, ww + (long)o * n, n, bb == null ? null : bb + o, yy + (long)r * m + o);
                        else DotHalves4WAvx2<TW>(xx + (long)r * n, ww + (long)o * n, n, bb == null ? null : bb + o, yy + (long)r * m + o);
                    }
            // Four rows or more (a verify pass, batched streams): blocks of four x rows against two
            // weight rows at a time, whose sixteen sums stay in registers (AVX-512's 32 of them).
            if (isa == KernelIsa.Avx512 && rows >= 4)
                for (; o + 2 <= o1; o += 2)
                {
                    ushort* row = ww + (long)o * n;
                    float b0 = bb == null ? 0 : bb[o], b1 = bb == null ? 0 : bb[o + 1];
                    int r = 0;
                    for (; r + 4 <= rows; r += 4) Dot4x2HalvesAvx512<TW>(xx + (long)r * n, row, n, b0, b1, yy + (long)r * m + o, m);
                    for (; r < rows; r++)
                    {
                        yy[(long)r * m + o] = b0 + DotHalvesAvx512<TW>(xx + (long)r * n, row, n);
                        yy[(long)r * m + o + 1] = b1 + DotHalvesAvx512<TW>(xx + (long)r * n, row + n, n);
                    }
                }
            for (; o < o1; o++)
            {
                ushort* row = ww + (long)o * n;
                float b0 = bb == null ? 0 : bb[o];
                int r = 0;
                if (isa == KernelIsa.Avx512) for (; r + 4 <= rows; r += 4) Dot4HalvesAvx512<TW>(xx + (long)r * n, row, n, b0, yy + (long)r * m + o, m);
                else if (isa == KernelIsa.Avx2) for (; r + 4 <= rows; r += 4) Dot4HalvesAvx2<TW>(xx + (long)r * n, row, n, b0, yy + (long)r * m + o, m);
                for (; r < rows; r++)
                    yy[(long)r * m + o] = b0 + isa switch
                    {
                        KernelIsa.Avx512 => DotHalvesAvx512<TW>(xx + (long)r * n, row, n),
                        KernelIsa.Avx2 => DotHalvesAvx2<TW>(xx + (long)r * n, row, n),
                        _ => DotHalvesScalar<TW>(xx + (long)r * n, row, n),
                    };
            }
        });
    }

    /// <summary>
    /// q8 weights: each x row is first put in int16 per block of 32 (a scale per block, max |x| →
    /// 32767: a relative error near 1e-5, far under the weights' own), so a block's dot product
    /// is exact integer arithmetic (vpmaddwd) and one float multiply-add by both blocks' scales.
    /// </summary>
    public static void Q8(float* x, int rows, int n, sbyte* q, float* scales, int m, float* bias, float* y)
    {
        int blocks = (n + 31) / 32, n32 = blocks * 32;
        var isa = CpuIsa.Current;
        var scratch = Scratch.Get(rows * (n32 * 2 + blocks * 4));
        short* xq = (short*)scratch;
        float* xs = (float*)(scratch + rows * n32 * 2);
        for (int r = 0; r < rows; r++) QuantizeRow(x + (long)r * n, n, blocks, xq + (long)r * n32, xs + (long)r * blocks);
        nint qp = (nint)q, sp = (nint)scales, bp = (nint)bias, yp = (nint)y, xqp = (nint)xq, xsp = (nint)xs;
        KernelPool.For(m, 4, Math.Max(1, MinWeightsPerThread / Math.Max(1, n)), (o0, o1) =>
        {
            sbyte* qq = (sbyte*)qp;
            float* ss = (float*)sp, bb = (float*)bp, yy = (float*)yp, xss = (float*)xsp;
            short* xqq = (short*)xqp;
            for (int o = o0; o < o1; o++)
            {
                sbyte* row = qq + (long)o * n32;
                float* rs = ss + (long)o * blocks;
                float b0 = bb == null ? 0 : bb[o];
                int r0 = 0;
                if (isa == KernelIsa.Avx512)
                    for (; r0 + 4 <= rows; r0 += 4) Dot4Q8Avx512(xqq + (long)r0 * n32, n32, xss + (long)r0 * blocks, row, rs, blocks, b0, yy + (long)r0 * m + o, m);
                else if (isa == KernelIsa.Avx2)
                    for (; r0 + 4 <= rows; r0 += 4) Dot4Q8Avx2(xqq + (long)r0 * n32, n32, xss + (long)r0 * blocks, row, rs, blocks, b0, yy + (long)r0 * m + o, m);
                for (int r = r0; r < rows; r++)
                {
                    short* xr = xqq + (long)r * n32;
                    float* xsr = xss + (long)r * blocks;
                    yy[(long)r * m + o] = b0 + isa switch
                    {
                        KernelIsa.Avx512 => DotQ8Avx512(xr, xsr, row, rs, blocks),
                        KernelIsa.Avx2 => DotQ8Avx2(xr, xsr, row, rs, blocks),
                        _ => DotQ8Scalar(xr, xsr, row, rs, blocks),
                    };
                }
            }
        });
    }

    /// <summary>x [n] → int16 blocks of 32 (zero-padded to n32) and a scale per block: x ≈ xq·scale.</summary>
    internal static void QuantizeRow(float* x, int n, int blocks, short* xq, float* scale)
    {
        for (int b = 0; b < blocks; b++)
        {
            int k0 = b * 32, len = Math.Min(32, n - k0);
            float max = 0;
            for (int k = 0; k < len; k++) max = MathF.Max(max, MathF.Abs(x[k0 + k]));
            float d = max / 32767f, inv = max == 0 ? 0 : 32767f / max;
            scale[b] = d;
            for (int k = 0; k < len; k++) xq[k0 + k] = (short)MathF.Round(x[k0 + k] * inv);
            for (int k = len; k < 32; k++) xq[k0 + k] = 0;
        }
    }

    // ---- float32 ----

    static float DotF32Scalar(float* a, float* b, int n)
    {
        float s = 0;
        for (int k = 0; k < n; k++) s += a[k] * b[k];
        return s;
    }

    static float DotF32Avx2(float* a, float* b, int n)
    {
        var s0 = Vector256<float>.Zero; var s1 = s0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            s0 = Fma.MultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), s0);
            s1 = Fma.MultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(b + k + 8), s1);
        }
        float s = Vector256.Sum(s0 + s1);
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    /// <summary>
    /// <see cref="DotF32Avx2"/> for four rows of x (n floats apart) against one weight row, each
    /// row summed in the same order as alone, so a row's result is the same bits; y[i·m] ← b0 + x_i·w.
    /// </summary>
    static void Dot4F32Avx2(float* x, float* w, int n, float b0, float* y, int m)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        var a0 = Vector256<float>.Zero; var a1 = a0; var b0v = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            var w0 = Vector256.Load(w + k);
            var w1 = Vector256.Load(w + k + 8);
            a0 = Fma.MultiplyAdd(Vector256.Load(x + k), w0, a0); a1 = Fma.MultiplyAdd(Vector256.Load(x + k + 8), w1, a1);
            b0v = Fma.MultiplyAdd(Vector256.Load(x1 + k), w0, b0v); b1 = Fma.MultiplyAdd(Vector256.Load(x1 + k + 8), w1, b1);
            c0 = Fma.MultiplyAdd(Vector256.Load(x2 + k), w0, c0); c1 = Fma.MultiplyAdd(Vector256.Load(x2 + k + 8), w1, c1);
            d0 = Fma.MultiplyAdd(Vector256.Load(x3 + k), w0, d0); d1 = Fma.MultiplyAdd(Vector256.Load(x3 + k + 8), w1, d1);
        }
        float sa = Vector256.Sum(a0 + a1), sb = Vector256.Sum(b0v + b1), sc = Vector256.Sum(c0 + c1), sd = Vector256.Sum(d0 + d1);
        for (; k < n; k++) { sa += x[k] * w[k]; sb += x1[k] * w[k]; sc += x2[k] * w[k]; sd += x3[k] * w[k]; }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
    }

    /// <summary><see cref="DotF32Avx512"/> for four rows of x, as <see cref="Dot4F32Avx2"/>.</summary>
    static void Dot4F32Avx512(float* x, float* w, int n, float b0, float* y, int m)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        var a0 = Vector512<float>.Zero; var a1 = a0; var b0v = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var w0 = Vector512.Load(w + k);
            var w1 = Vector512.Load(w + k + 16);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k), w0, a0); a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k + 16), w1, a1);
            b0v = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + k), w0, b0v); b1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + k + 16), w1, b1);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + k), w0, c0); c1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + k + 16), w1, c1);
            d0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + k), w0, d0); d1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + k + 16), w1, d1);
        }
        for (; k + 16 <= n; k += 16)
        {
            var w0 = Vector512.Load(w + k);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k), w0, a0);
            b0v = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + k), w0, b0v);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + k), w0, c0);
            d0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + k), w0, d0);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0v + b1), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        for (; k < n; k++) { sa += x[k] * w[k]; sb += x1[k] * w[k]; sc += x2[k] * w[k]; sd += x3[k] * w[k]; }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
    }

    /// <summary><see cref="DotF32Avx512"/> for four rows of x against two weight rows (n floats apart), as <see cref="Dot4x2HalvesAvx512"/>.</summary>
    static void Dot4x2F32Avx512(float* x, float* w, int n, float b0, float b1, float* y, int m)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        float* v = w + n;
        var z = Vector512<float>.Zero;
        Vector512<float> a0 = z, a1 = z, b0a = z, b0b = z, c0 = z, c1 = z, d0 = z, d1 = z; // weight row 0, x rows 0–3
        Vector512<float> e0 = z, e1 = z, f0 = z, f1 = z, g0 = z, g1 = z, h0 = z, h1 = z;   // weight row 1
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var wl = Vector512.Load(w + k); var wh = Vector512.Load(w + k + 16);
            var vl = Vector512.Load(v + k); var vh = Vector512.Load(v + k + 16);
            var xl = Vector512.Load(x + k); var xh = Vector512.Load(x + k + 16);
            a0 = Avx512F.FusedMultiplyAdd(xl, wl, a0); a1 = Avx512F.FusedMultiplyAdd(xh, wh, a1);
            e0 = Avx512F.FusedMultiplyAdd(xl, vl, e0); e1 = Avx512F.FusedMultiplyAdd(xh, vh, e1);
            xl = Vector512.Load(x1 + k); xh = Vector512.Load(x1 + k + 16);
            b0a = Avx512F.FusedMultiplyAdd(xl, wl, b0a); b0b = Avx512F.FusedMultiplyAdd(xh, wh, b0b);
            f0 = Avx512F.FusedMultiplyAdd(xl, vl, f0); f1 = Avx512F.FusedMultiplyAdd(xh, vh, f1);
            xl = Vector512.Load(x2 + k); xh = Vector512.Load(x2 + k + 16);
            c0 = Avx512F.FusedMultiplyAdd(xl, wl, c0); c1 = Avx512F.FusedMultiplyAdd(xh, wh, c1);
            g0 = Avx512F.FusedMultiplyAdd(xl, vl, g0); g1 = Avx512F.FusedMultiplyAdd(xh, vh, g1);
            xl = Vector512.Load(x3 + k); xh = Vector512.Load(x3 + k + 16);
            d0 = Avx512F.FusedMultiplyAdd(xl, wl, d0); d1 = Avx512F.FusedMultiplyAdd(xh, wh, d1);
            h0 = Avx512F.FusedMultiplyAdd(xl, vl, h0); h1 = Avx512F.FusedMultiplyAdd(xh, vh, h1);
        }
        for (; k + 16 <= n; k += 16)
        {
            var wl = Vector512.Load(w + k); var vl = Vector512.Load(v + k);
            var xl = Vector512.Load(x + k); a0 = Avx512F.FusedMultiplyAdd(xl, wl, a0); e0 = Avx512F.FusedMultiplyAdd(xl, vl, e0);
            xl = Vector512.Load(x1 + k); b0a = Avx512F.FusedMultiplyAdd(xl, wl, b0a); f0 = Avx512F.FusedMultiplyAdd(xl, vl, f0);
            xl = Vector512.Load(x2 + k); c0 = Avx512F.FusedMultiplyAdd(xl, wl, c0); g0 = Avx512F.FusedMultiplyAdd(xl, vl, g0);
            xl = Vector512.Load(x3 + k); d0 = Avx512F.FusedMultiplyAdd(xl, wl, d0); h0 = Avx512F.FusedMultiplyAdd(xl, vl, h0);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0a + b0b), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        float ta = Vector512.Sum(e0 + e1), tb = Vector512.Sum(f0 + f1), tc = Vector512.Sum(g0 + g1), td = Vector512.Sum(h0 + h1);
        for (; k < n; k++)
        {
            float wk = w[k], vk = v[k];
            sa += x[k] * wk; sb += x1[k] * wk; sc += x2[k] * wk; sd += x3[k] * wk;
            ta += x[k] * vk; tb += x1[k] * vk; tc += x2[k] * vk; td += x3[k] * vk;
        }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
        y[1] = b1 + ta; y[m + 1] = b1 + tb; y[2L * m + 1] = b1 + tc; y[3L * m + 1] = b1 + td;
    }

    /// <summary>
    /// <see cref="DotF32Avx512"/> of one row of x against four weight rows (n floats apart),
    /// sharing each load of x; each weight row summed in the same order as alone, so its result
    /// is the same bits. y[i] ← bias[i] + x·w_i.
    /// </summary>
    static void DotF32x4WAvx512(float* x, float* w, int n, float* bias, float* y)
    {
        float* w1 = w + n, w2 = w1 + n, w3 = w2 + n;
        var a0 = Vector512<float>.Zero; var a1 = a0; var b0 = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var lo = Vector512.Load(x + k);
            var hi = Vector512.Load(x + k + 16);
            a0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w + k), a0); a1 = Avx512F.FusedMultiplyAdd(hi, Vector512.Load(w + k + 16), a1);
            b0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w1 + k), b0); b1 = Avx512F.FusedMultiplyAdd(hi, Vector512.Load(w1 + k + 16), b1);
            c0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w2 + k), c0); c1 = Avx512F.FusedMultiplyAdd(hi, Vector512.Load(w2 + k + 16), c1);
            d0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w3 + k), d0); d1 = Avx512F.FusedMultiplyAdd(hi, Vector512.Load(w3 + k + 16), d1);
        }
        for (; k + 16 <= n; k += 16)
        {
            var lo = Vector512.Load(x + k);
            a0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w + k), a0);
            b0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w1 + k), b0);
            c0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w2 + k), c0);
            d0 = Avx512F.FusedMultiplyAdd(lo, Vector512.Load(w3 + k), d0);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0 + b1), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        for (; k < n; k++) { float xk = x[k]; sa += xk * w[k]; sb += xk * w1[k]; sc += xk * w2[k]; sd += xk * w3[k]; }
        Store4(bias, y, sa, sb, sc, sd);
    }

    /// <summary><see cref="DotF32x4WAvx512"/> on AVX2: <see cref="DotF32Avx2"/> of one row of x against four weight rows, each summed as alone.</summary>
    static void DotF32x4WAvx2(float* x, float* w, int n, float* bias, float* y)
    {
        float* w1 = w + n, w2 = w1 + n, w3 = w2 + n;
        var a0 = Vector256<float>.Zero; var a1 = a0; var b0 = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            var lo = Vector256.Load(x + k);
            var hi = Vector256.Load(x + k + 8);
            a0 = Fma.MultiplyAdd(lo, Vector256.Load(w + k), a0); a1 = Fma.MultiplyAdd(hi, Vector256.Load(w + k + 8), a1);
            b0 = Fma.MultiplyAdd(lo, Vector256.Load(w1 + k), b0); b1 = Fma.MultiplyAdd(hi, Vector256.Load(w1 + k + 8), b1);
            c0 = Fma.MultiplyAdd(lo, Vector256.Load(w2 + k), c0); c1 = Fma.MultiplyAdd(hi, Vector256.Load(w2 + k + 8), c1);
            d0 = Fma.MultiplyAdd(lo, Vector256.Load(w3 + k), d0); d1 = Fma.MultiplyAdd(hi, Vector256.Load(w3 + k + 8), d1);
        }
        float sa = Vector256.Sum(a0 + a1), sb = Vector256.Sum(b0 + b1), sc = Vector256.Sum(c0 + c1), sd = Vector256.Sum(d0 + d1);
        for (; k < n; k++) { float xk = x[k]; sa += xk * w[k]; sb += xk * w1[k]; sc += xk * w2[k]; sd += xk * w3[k]; }
        Store4(bias, y, sa, sb, sc, sd);
    }

    /// <summary>y[i] ← bias[i] + s_i (0 + s_i without a bias, as the one-row kernels' callers add it).</summary>
    static void Store4(float* bias, float* y, float sa, float sb, float sc, float sd)
    {
        if (bias == null) { y[0] = 0 + sa; y[1] = 0 + sb; y[2] = 0 + sc; y[3] = 0 + sd; }
        else { y[0] = bias[0] + sa; y[1] = bias[1] + sb; y[2] = bias[2] + sc; y[3] = bias[3] + sd; }
    }

    static float DotF32Avx512(float* a, float* b, int n)
    {
        var s0 = Vector512<float>.Zero; var s1 = s0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + k + 16), Vector512.Load(b + k + 16), s1);
        }
        for (; k + 16 <= n; k += 16) s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), s0);
        float s = Vector512.Sum(s0 + s1);
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    // ---- 16-bit floats: each weight widened to float32 in registers, then FMAs as float32's ----

    /// <summary>How a 16-bit float widens to float32: one, eight (AVX2) or sixteen (AVX-512) at a time.</summary>
    internal interface IHalfWidening
    {
        static abstract float One(ushort v);
        static abstract Vector256<float> Eight(Vector128<ushort> v);
        static abstract Vector512<float> Sixteen(Vector256<ushort> v);
    }

    /// <summary>bfloat16 is the upper half of a float32, so widening is a shift.</summary>
    internal struct Bf16Widening : IHalfWidening
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float One(ushort v) => BitConverter.Int32BitsToSingle(v << 16);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Eight(Vector128<ushort> v) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(v), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Sixteen(Vector256<ushort> v) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(v), 16).AsSingle();
    }

    /// <summary>
    /// float16, exactly, in integer lanes (.NET has no F16C intrinsics). Sign-extended to 32 bits
    /// and shifted up 13, a half's sign lands on float32's sign and its exponent and mantissa on
    /// the low exponent bits and the top of the mantissa; the mask clears the sign's copies
    /// between. That float32 is the half's value × 2⁻¹¹², subnormals and zeros included, so one
    /// multiply by 2¹¹² rebiases it exactly (subnormal float32 inputs count: the kernels run with
    /// denormals on, as .NET and libtorch leave them). Infinities and NaNs would come out finite;
    /// f16 weights are checked finite when stored (WeightMatrix.Convert).
    /// </summary>
    internal struct F16Widening : IHalfWidening
    {
        const uint Mask = 0x8FFF_E000;
        const float Rebias = 5.192296858534828e33f; // 2^112

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float One(ushort v) => (float)BitConverter.UInt16BitsToHalf(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Eight(Vector128<ushort> v) =>
            (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(v.AsInt16()), 13).AsUInt32() & Vector256.Create(Mask)).AsSingle() * Vector256.Create(Rebias);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Sixteen(Vector256<ushort> v) =>
            (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(v.AsInt16()), 13).AsUInt32() & Vector512.Create(Mask)).AsSingle() * Vector512.Create(Rebias);
    }

    /// <summary>dst[i] = the float32 value of float16 src[i], for i &lt; count, split over the kernel threads.</summary>
    public static void WidenF16(ushort* src, float* dst, long count) => Widen<F16Widening>(src, dst, count);

    /// <summary>dst[i] = the float32 value of bfloat16 src[i], for i &lt; count, split over the kernel threads.</summary>
    public static void WidenBf16(ushort* src, float* dst, long count) => Widen<Bf16Widening>(src, dst, count);

    static void Widen<TW>(ushort* src, float* dst, long count) where TW : struct, IHalfWidening
    {
        var isa = CpuIsa.Current;
        nint sp = (nint)src, dp = (nint)dst;
        const int Chunk = 4096;
        int chunks = (int)((count + Chunk - 1) / Chunk);
        KernelPool.For(chunks, 1, 16, (c0, c1) =>
        {
            ushort* ss = (ushort*)sp;
            float* dd = (float*)dp;
            long i = (long)c0 * Chunk, end = Math.Min(count, (long)c1 * Chunk);
            if (isa == KernelIsa.Avx512) for (; i + 16 <= end; i += 16) TW.Sixteen(Vector256.Load(ss + i)).Store(dd + i);
            else if (isa == KernelIsa.Avx2) for (; i + 8 <= end; i += 8) TW.Eight(Vector128.Load(ss + i)).Store(dd + i);
            for (; i < end; i++) dd[i] = TW.One(ss[i]);
        });
    }

    static float DotHalvesScalar<TW>(float* x, ushort* w, int n) where TW : struct, IHalfWidening
    {
        float s = 0;
        for (int k = 0; k < n; k++) s += x[k] * TW.One(w[k]);
        return s;
    }

    static float DotHalvesAvx2<TW>(float* x, ushort* w, int n) where TW : struct, IHalfWidening
    {
        var s0 = Vector256<float>.Zero; var s1 = s0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            s0 = Fma.MultiplyAdd(Vector256.Load(x + k), TW.Eight(Vector128.Load(w + k)), s0);
            s1 = Fma.MultiplyAdd(Vector256.Load(x + k + 8), TW.Eight(Vector128.Load(w + k + 8)), s1);
        }
        float s = Vector256.Sum(s0 + s1);
        for (; k < n; k++) s += x[k] * TW.One(w[k]);
        return s;
    }

    static float DotHalvesAvx512<TW>(float* x, ushort* w, int n) where TW : struct, IHalfWidening
    {
        var s0 = Vector512<float>.Zero; var s1 = s0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k), TW.Sixteen(Vector256.Load(w + k)), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k + 16), TW.Sixteen(Vector256.Load(w + k + 16)), s1);
        }
        float s = Vector512.Sum(s0 + s1);
        for (; k < n; k++) s += x[k] * TW.One(w[k]);
        return s;
    }

    /// <summary>
    /// <see cref="DotHalvesAvx512"/> of one row of x against four weight rows (n halves apart),
    /// sharing each load of x; each weight row summed in the same order as alone, so its result
    /// is the same bits. y[i] ← bias[i] + x·w_i.
    /// </summary>
    static void DotHalves4WAvx512<TW>(float* x, ushort* w, int n, float* bias, float* y) where TW : struct, IHalfWidening
    {
        ushort* w1 = w + n, w2 = w1 + n, w3 = w2 + n;
        var a0 = Vector512<float>.Zero; var a1 = a0; var b0 = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var lo = Vector512.Load(x + k);
            var hi = Vector512.Load(x + k + 16);
            a0 = Avx512F.FusedMultiplyAdd(lo, TW.Sixteen(Vector256.Load(w + k)), a0); a1 = Avx512F.FusedMultiplyAdd(hi, TW.Sixteen(Vector256.Load(w + k + 16)), a1);
            b0 = Avx512F.FusedMultiplyAdd(lo, TW.Sixteen(Vector256.Load(w1 + k)), b0); b1 = Avx512F.FusedMultiplyAdd(hi, TW.Sixteen(Vector256.Load(w1 + k + 16)), b1);
            c0 = Avx512F.FusedMultiplyAdd(lo, TW.Sixteen(Vector256.Load(w2 + k)), c0); c1 = Avx512F.FusedMultiplyAdd(hi, TW.Sixteen(Vector256.Load(w2 + k + 16)), c1);
            d0 = Avx512F.FusedMultiplyAdd(lo, TW.Sixteen(Vector256.Load(w3 + k)), d0); d1 = Avx512F.FusedMultiplyAdd(hi, TW.Sixteen(Vector256.Load(w3 + k + 16)), d1);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0 + b1), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        for (; k < n; k++)
        {
            float xk = x[k];
            sa += xk * TW.One(w[k]); sb += xk * TW.One(w1[k]); sc += xk * TW.One(w2[k]); sd += xk * TW.One(w3[k]);
        }
        Store4(bias, y, sa, sb, sc, sd);
    }

    /// <summary><see cref="DotHalves4WAvx512"/> on AVX2: <see cref="DotHalvesAvx2"/> of one row of x against four weight rows, each summed as alone.</summary>
    static void DotHalves4WAvx2<TW>(float* x, ushort* w, int n, float* bias, float* y) where TW : struct, IHalfWidening
    {
        ushort* w1 = w + n, w2 = w1 + n, w3 = w2 + n;
        var a0 = Vector256<float>.Zero; var a1 = a0; var b0 = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            var lo = Vector256.Load(x + k);
            var hi = Vector256.Load(x + k + 8);
            a0 = Fma.MultiplyAdd(lo, TW.Eight(Vector128.Load(w + k)), a0); a1 = Fma.MultiplyAdd(hi, TW.Eight(Vector128.Load(w + k + 8)), a1);
            b0 = Fma.MultiplyAdd(lo, TW.Eight(Vector128.Load(w1 + k)), b0); b1 = Fma.MultiplyAdd(hi, TW.Eight(Vector128.Load(w1 + k + 8)), b1);
            c0 = Fma.MultiplyAdd(lo, TW.Eight(Vector128.Load(w2 + k)), c0); c1 = Fma.MultiplyAdd(hi, TW.Eight(Vector128.Load(w2 + k + 8)), c1);
            d0 = Fma.MultiplyAdd(lo, TW.Eight(Vector128.Load(w3 + k)), d0); d1 = Fma.MultiplyAdd(hi, TW.Eight(Vector128.Load(w3 + k + 8)), d1);
        }
        float sa = Vector256.Sum(a0 + a1), sb = Vector256.Sum(b0 + b1), sc = Vector256.Sum(c0 + c1), sd = Vector256.Sum(d0 + d1);
        for (; k < n; k++)
        {
            float xk = x[k];
            sa += xk * TW.One(w[k]); sb += xk * TW.One(w1[k]); sc += xk * TW.One(w2[k]); sd += xk * TW.One(w3[k]);
        }
        Store4(bias, y, sa, sb, sc, sd);
    }

    /// <summary><see cref="DotHalvesAvx512"/> for four rows of x sharing each widened weight load, each row summed as alone (<see cref="Dot4F32Avx2"/>).</summary>
    static void Dot4HalvesAvx512<TW>(float* x, ushort* w, int n, float b0, float* y, int m) where TW : struct, IHalfWidening
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        var a0 = Vector512<float>.Zero; var a1 = a0; var b0v = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var lo = TW.Sixteen(Vector256.Load(w + k));
            var hi = TW.Sixteen(Vector256.Load(w + k + 16));
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k), lo, a0); a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + k + 16), hi, a1);
            b0v = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + k), lo, b0v); b1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + k + 16), hi, b1);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + k), lo, c0); c1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + k + 16), hi, c1);
            d0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + k), lo, d0); d1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + k + 16), hi, d1);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0v + b1), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        for (; k < n; k++)
        {
            float wk = TW.One(w[k]);
            sa += x[k] * wk; sb += x1[k] * wk; sc += x2[k] * wk; sd += x3[k] * wk;
        }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
    }

    /// <summary>
    /// <see cref="DotHalvesAvx512"/> for four rows of x against two weight rows (n halves apart):
    /// each widened weight load serves four rows and each x load two weight rows, every pair
    /// summed as alone. y[i·m] ← b0 + x_i·w₀, y[i·m + 1] ← b1 + x_i·w₁.
    /// </summary>
    static void Dot4x2HalvesAvx512<TW>(float* x, ushort* w, int n, float b0, float b1, float* y, int m) where TW : struct, IHalfWidening
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        ushort* v = w + n;
        var z = Vector512<float>.Zero;
        Vector512<float> a0 = z, a1 = z, b0a = z, b0b = z, c0 = z, c1 = z, d0 = z, d1 = z; // weight row 0, x rows 0–3
        Vector512<float> e0 = z, e1 = z, f0 = z, f1 = z, g0 = z, g1 = z, h0 = z, h1 = z;   // weight row 1
        int k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var wl = TW.Sixteen(Vector256.Load(w + k));
            var wh = TW.Sixteen(Vector256.Load(w + k + 16));
            var vl = TW.Sixteen(Vector256.Load(v + k));
            var vh = TW.Sixteen(Vector256.Load(v + k + 16));
            var xl = Vector512.Load(x + k); var xh = Vector512.Load(x + k + 16);
            a0 = Avx512F.FusedMultiplyAdd(xl, wl, a0); a1 = Avx512F.FusedMultiplyAdd(xh, wh, a1);
            e0 = Avx512F.FusedMultiplyAdd(xl, vl, e0); e1 = Avx512F.FusedMultiplyAdd(xh, vh, e1);
            xl = Vector512.Load(x1 + k); xh = Vector512.Load(x1 + k + 16);
            b0a = Avx512F.FusedMultiplyAdd(xl, wl, b0a); b0b = Avx512F.FusedMultiplyAdd(xh, wh, b0b);
            f0 = Avx512F.FusedMultiplyAdd(xl, vl, f0); f1 = Avx512F.FusedMultiplyAdd(xh, vh, f1);
            xl = Vector512.Load(x2 + k); xh = Vector512.Load(x2 + k + 16);
            c0 = Avx512F.FusedMultiplyAdd(xl, wl, c0); c1 = Avx512F.FusedMultiplyAdd(xh, wh, c1);
            g0 = Avx512F.FusedMultiplyAdd(xl, vl, g0); g1 = Avx512F.FusedMultiplyAdd(xh, vh, g1);
            xl = Vector512.Load(x3 + k); xh = Vector512.Load(x3 + k + 16);
            d0 = Avx512F.FusedMultiplyAdd(xl, wl, d0); d1 = Avx512F.FusedMultiplyAdd(xh, wh, d1);
            h0 = Avx512F.FusedMultiplyAdd(xl, vl, h0); h1 = Avx512F.FusedMultiplyAdd(xh, vh, h1);
        }
        float sa = Vector512.Sum(a0 + a1), sb = Vector512.Sum(b0a + b0b), sc = Vector512.Sum(c0 + c1), sd = Vector512.Sum(d0 + d1);
        float ta = Vector512.Sum(e0 + e1), tb = Vector512.Sum(f0 + f1), tc = Vector512.Sum(g0 + g1), td = Vector512.Sum(h0 + h1);
        for (; k < n; k++)
        {
            float wk = TW.One(w[k]), vk = TW.One(v[k]);
            sa += x[k] * wk; sb += x1[k] * wk; sc += x2[k] * wk; sd += x3[k] * wk;
            ta += x[k] * vk; tb += x1[k] * vk; tc += x2[k] * vk; td += x3[k] * vk;
        }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
        y[1] = b1 + ta; y[m + 1] = b1 + tb; y[2L * m + 1] = b1 + tc; y[3L * m + 1] = b1 + td;
    }

    /// <summary><see cref="DotHalvesAvx2"/> for four rows of x sharing each widened weight load, each row summed as alone (<see cref="Dot4F32Avx2"/>).</summary>
    static void Dot4HalvesAvx2<TW>(float* x, ushort* w, int n, float b0, float* y, int m) where TW : struct, IHalfWidening
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        var a0 = Vector256<float>.Zero; var a1 = a0; var b0v = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            var lo = TW.Eight(Vector128.Load(w + k));
            var hi = TW.Eight(Vector128.Load(w + k + 8));
            a0 = Fma.MultiplyAdd(Vector256.Load(x + k), lo, a0); a1 = Fma.MultiplyAdd(Vector256.Load(x + k + 8), hi, a1);
            b0v = Fma.MultiplyAdd(Vector256.Load(x1 + k), lo, b0v); b1 = Fma.MultiplyAdd(Vector256.Load(x1 + k + 8), hi, b1);
            c0 = Fma.MultiplyAdd(Vector256.Load(x2 + k), lo, c0); c1 = Fma.MultiplyAdd(Vector256.Load(x2 + k + 8), hi, c1);
            d0 = Fma.MultiplyAdd(Vector256.Load(x3 + k), lo, d0); d1 = Fma.MultiplyAdd(Vector256.Load(x3 + k + 8), hi, d1);
        }
        float sa = Vector256.Sum(a0 + a1), sb = Vector256.Sum(b0v + b1), sc = Vector256.Sum(c0 + c1), sd = Vector256.Sum(d0 + d1);
        for (; k < n; k++)
        {
            float wk = TW.One(w[k]);
            sa += x[k] * wk; sb += x1[k] * wk; sc += x2[k] * wk; sd += x3[k] * wk;
        }
        y[0] = b0 + sa; y[m] = b0 + sb; y[2L * m] = b0 + sc; y[3L * m] = b0 + sd;
    }

    // ---- q8: Σ_b wscale_b · xscale_b · Σ_k q_k·xq_k ----

    static float DotQ8Scalar(short* xq, float* xs, sbyte* q, float* ws, int blocks)
    {
        float s = 0;
        for (int b = 0; b < blocks; b++)
        {
            int acc = 0;
            for (int k = 0; k < 32; k++) acc += q[b * 32 + k] * xq[b * 32 + k];
            s += ws[b] * xs[b] * acc;
        }
        return s;
    }

    static float DotQ8Avx2(short* xq, float* xs, sbyte* q, float* ws, int blocks)
    {
        var s0 = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            var p0 = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load(q + b * 32)), Vector256.Load(xq + b * 32));
            var p1 = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load(q + b * 32 + 16)), Vector256.Load(xq + b * 32 + 16));
            s0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(p0, p1)), Vector256.Create(ws[b] * xs[b]), s0);
        }
        return Vector256.Sum(s0);
    }

    static float DotQ8Avx512(short* xq, float* xs, sbyte* q, float* ws, int blocks)
    {
        var s0 = Vector512<float>.Zero; var s1 = s0;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32)), Vector512.Load(xq + b * 32));
            var p1 = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32 + 32)), Vector512.Load(xq + b * 32 + 32));
            s0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p0), Vector512.Create(ws[b] * xs[b]), s0);
            s1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p1), Vector512.Create(ws[b + 1] * xs[b + 1]), s1);
        }
        if (b < blocks)
        {
            var p0 = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32)), Vector512.Load(xq + b * 32));
            s0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p0), Vector512.Create(ws[b] * xs[b]), s0);
        }
        return Vector512.Sum(s0 + s1);
    }

    /// <summary><see cref="DotQ8Avx2"/> for four rows (as <see cref="Dot4Q8Avx512"/>), each weight block widened once for the four.</summary>
    static void Dot4Q8Avx2(short* xq, int xStride, float* xs, sbyte* q, float* ws, int blocks, float b0, float* y, int m)
    {
        short* x1 = xq + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* s1p = xs + blocks, s2p = s1p + blocks, s3p = s2p + blocks;
        var a = Vector256<float>.Zero; var b = a; var c = a; var d = a;
        for (int k = 0; k < blocks; k++)
        {
            var w0 = Avx2.ConvertToVector256Int16(Vector128.Load(q + k * 32));
            var w1 = Avx2.ConvertToVector256Int16(Vector128.Load(q + k * 32 + 16));
            float u = ws[k];
            a = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(w0, Vector256.Load(xq + k * 32)), Avx2.MultiplyAddAdjacent(w1, Vector256.Load(xq + k * 32 + 16)))), Vector256.Create(u * xs[k]), a);
            b = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(w0, Vector256.Load(x1 + k * 32)), Avx2.MultiplyAddAdjacent(w1, Vector256.Load(x1 + k * 32 + 16)))), Vector256.Create(u * s1p[k]), b);
            c = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(w0, Vector256.Load(x2 + k * 32)), Avx2.MultiplyAddAdjacent(w1, Vector256.Load(x2 + k * 32 + 16)))), Vector256.Create(u * s2p[k]), c);
            d = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(w0, Vector256.Load(x3 + k * 32)), Avx2.MultiplyAddAdjacent(w1, Vector256.Load(x3 + k * 32 + 16)))), Vector256.Create(u * s3p[k]), d);
        }
        y[0] = b0 + Vector256.Sum(a); y[m] = b0 + Vector256.Sum(b); y[2L * m] = b0 + Vector256.Sum(c); y[3L * m] = b0 + Vector256.Sum(d);
    }

    /// <summary>
    /// <see cref="DotQ8Avx512"/> for four rows (their int16 blocks <paramref name="xStride"/> apart, their
    /// scales <paramref name="blocks"/> apart) sharing each widened weight block, each row summed as alone.
    /// </summary>
    static void Dot4Q8Avx512(short* xq, int xStride, float* xs, sbyte* q, float* ws, int blocks, float b0, float* y, int m)
    {
        short* x1 = xq + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* s1p = xs + blocks, s2p = s1p + blocks, s3p = s2p + blocks;
        var a0 = Vector512<float>.Zero; var a1 = a0; var b0v = a0; var b1 = a0; var c0 = a0; var c1 = a0; var d0 = a0; var d1 = a0;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32));
            var w1 = Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32 + 32));
            float u0 = ws[b], u1 = ws[b + 1];
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(xq + b * 32))), Vector512.Create(u0 * xs[b]), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w1, Vector512.Load(xq + b * 32 + 32))), Vector512.Create(u1 * xs[b + 1]), a1);
            b0v = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x1 + b * 32))), Vector512.Create(u0 * s1p[b]), b0v);
            b1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w1, Vector512.Load(x1 + b * 32 + 32))), Vector512.Create(u1 * s1p[b + 1]), b1);
            c0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x2 + b * 32))), Vector512.Create(u0 * s2p[b]), c0);
            c1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w1, Vector512.Load(x2 + b * 32 + 32))), Vector512.Create(u1 * s2p[b + 1]), c1);
            d0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x3 + b * 32))), Vector512.Create(u0 * s3p[b]), d0);
            d1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w1, Vector512.Load(x3 + b * 32 + 32))), Vector512.Create(u1 * s3p[b + 1]), d1);
        }
        if (b < blocks)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(q + b * 32));
            float u0 = ws[b];
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(xq + b * 32))), Vector512.Create(u0 * xs[b]), a0);
            b0v = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x1 + b * 32))), Vector512.Create(u0 * s1p[b]), b0v);
            c0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x2 + b * 32))), Vector512.Create(u0 * s2p[b]), c0);
            d0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w0, Vector512.Load(x3 + b * 32))), Vector512.Create(u0 * s3p[b]), d0);
        }
        y[0] = b0 + Vector512.Sum(a0 + a1); y[m] = b0 + Vector512.Sum(b0v + b1); y[2L * m] = b0 + Vector512.Sum(c0 + c1); y[3L * m] = b0 + Vector512.Sum(d0 + d1);
    }

    /// <summary>A per-thread native buffer for a call's converted activations, grown on demand.</summary>
    static class Scratch
    {
        [ThreadStatic] static byte* _buffer;
        [ThreadStatic] static int _size;

        public static byte* Get(int bytes)
        {
            if (bytes > _size)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _size = Math.Max(bytes, 4096);
                _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)_size, 64);
            }
            return _buffer;
        }
    }
}
