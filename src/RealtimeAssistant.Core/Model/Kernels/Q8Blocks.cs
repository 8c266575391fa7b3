using System.Runtime.Intrinsics;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>Turns q8 weights back into float32 or bfloat16 rows (for a matmul over many rows).</summary>
public static unsafe class Q8Blocks
{
    /// <summary>
    /// q [m, n32] int8 and scales [m, n32/32] → out [m, n] (float32, or bfloat16 rounded to
    /// nearest even when <paramref name="bf16"/>). Runs on the kernel threads.
    /// </summary>
    public static void Dequantize(sbyte* q, float* scales, int m, int n, void* output, bool bf16)
    {
        int blocks = (n + 31) / 32, n32 = blocks * 32;
        nint qp = (nint)q, sp = (nint)scales, op = (nint)output;
        KernelPool.For(m, 1, Math.Max(1, (1 << 16) / Math.Max(1, n)), (o0, o1) =>
        {
            float* row = stackalloc float[n32];
            for (int o = o0; o < o1; o++)
            {
                sbyte* qr = (sbyte*)qp + (long)o * n32;
                float* sr = (float*)sp + (long)o * blocks;
                for (int b = 0; b < blocks; b++)
                {
                    var s = Vector256.Create(sr[b]);
                    var (lo, hi) = Vector256.Widen(Vector256.Load(qr + b * 32));
                    var (i0, i1) = Vector256.Widen(lo);
                    var (i2, i3) = Vector256.Widen(hi);
                    float* blockOut = row + b * 32;
                    (Vector256.ConvertToSingle(i0) * s).Store(blockOut);
                    (Vector256.ConvertToSingle(i1) * s).Store(blockOut + 8);
                    (Vector256.ConvertToSingle(i2) * s).Store(blockOut + 16);
                    (Vector256.ConvertToSingle(i3) * s).Store(blockOut + 24);
                }
                if (!bf16) { Buffer.MemoryCopy(row, (float*)op + (long)o * n, n * 4L, n * 4L); continue; }
                ushort* dst = (ushort*)op + (long)o * n;
                int k2 = 0;
                for (; k2 + 8 <= n; k2 += 8)
                {
                    var bits = Vector256.Load((uint*)row + k2);
                    var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256.Create(1u))) >> 16;
                    Vector128.Narrow(rounded.GetLower(), rounded.GetUpper()).Store(dst + k2);
                }
                for (; k2 < n; k2++) dst[k2] = ToBf16(row[k2]);
            }
        });
    }

    /// <summary>The float dtypes <see cref="Quantize"/> reads.</summary>
    public enum Source { F32, BF16, F16 }

    /// <summary>
    /// w [m, n] (float32, bfloat16 or float16, rows contiguous) → q [m, n32] int8 and scales
    /// [m, n32/32], each block of 32 (the last zero-padded) scaled by its largest magnitude / 127
    /// and rounded to nearest even: what <see cref="Q8Matrix.QuantizeWithTorch"/> computes, bit for
    /// bit, in one pass over the weights and without temporaries. Runs on the kernel threads.
    /// Returns false when a weight is an infinity or NaN (no scale can hold it).
    /// </summary>
    public static bool Quantize(void* w, Source source, int m, int n, sbyte* q, float* scales)
    {
        int blocks = (n + 31) / 32, n32 = blocks * 32;
        nint wp = (nint)w, qp = (nint)q, sp = (nint)scales;
        int nonFinite = 0;
        KernelPool.For(m, 1, Math.Max(1, (1 << 16) / Math.Max(1, n)), (o0, o1) =>
        {
            var heap = n32 > 1 << 14 ? new float[n32] : null;
            fixed (float* pinned = heap)
            {
                float* row = pinned;
                if (heap is null) { float* stack = stackalloc float[n32]; row = stack; }
                for (int o = o0; o < o1; o++)
                {
                    Widen((byte*)wp + (long)o * n * (source == Source.F32 ? 4 : 2), source, n, row);
                    for (int k = n; k < n32; k++) row[k] = 0;
                    if (!QuantizeRow(row, blocks, (sbyte*)qp + (long)o * n32, (float*)sp + (long)o * blocks)) Volatile.Write(ref nonFinite, 1);
                }
            }
        });
        return nonFinite == 0;
    }

    static void Widen(byte* src, Source source, int n, float* row)
    {
        int k = 0;
        switch (source)
        {
            case Source.F32:
                Buffer.MemoryCopy(src, row, n * 4L, n * 4L);
                return;
            case Source.BF16:
                var bits = (ushort*)src;
                for (; k + 16 <= n; k += 16)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(bits + k));
                    (lo << 16).AsSingle().Store(row + k);
                    (hi << 16).AsSingle().Store(row + k + 8);
                }
                for (; k < n; k++) row[k] = BitConverter.UInt32BitsToSingle((uint)bits[k] << 16);
                return;
            default:
                var halves = (Half*)src;
                for (; k < n; k++) row[k] = (float)halves[k];
                return;
        }
    }

    /// <summary>Quantizes one row's blocks; false when one of its weights is not finite.</summary>
    static bool QuantizeRow(float* row, int blocks, sbyte* q, float* scales)
    {
        Vector256<float> lowest = Vector256.Create(-127f), highest = Vector256.Create(127f), infinity = Vector256.Create(float.PositiveInfinity);
        bool finite = true;
        for (int b = 0; b < blocks; b++)
        {
            float* x = row + b * 32;
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            var most = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            // A NaN compares false and an infinity is not below itself: either leaves a lane clear.
            finite &= Vector256.LessThanAll(Vector256.Abs(v0), infinity) && Vector256.LessThanAll(Vector256.Abs(v1), infinity)
                && Vector256.LessThanAll(Vector256.Abs(v2), infinity) && Vector256.LessThanAll(Vector256.Abs(v3), infinity);
            float amax = 0;
            for (int i = 0; i < 8; i++) amax = MathF.Max(amax, most.GetElement(i));
            float s = amax / 127f;
            var inv = Vector256.Create(s > 0 ? 1f / s : 0f);
            scales[b] = s;
            // Rounded, clamped and converted as libtorch does; NaN (never in a checkpoint that loads) becomes 0.
            Vector256<int> Level(Vector256<float> v)
            {
                var r = Vector256.Clamp(Vector256.Round(v * inv), lowest, highest);
                return Vector256.ConvertToInt32(Vector256.ConditionalSelect(Vector256.Equals(r, r), r, Vector256<float>.Zero));
            }
            var narrow = Vector256.Narrow(Vector256.Narrow(Level(v0), Level(v1)), Vector256.Narrow(Level(v2), Level(v3)));
            narrow.Store(q + b * 32);
        }
        return finite;
    }

    /// <summary>float32 → bfloat16, round to nearest even (finite inputs; q8 values always are).</summary>
    public static ushort ToBf16(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
}
