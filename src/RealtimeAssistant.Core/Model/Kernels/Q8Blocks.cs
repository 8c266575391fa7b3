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

    /// <summary>float32 → bfloat16, round to nearest even (finite inputs; q8 values always are).</summary>
    public static ushort ToBf16(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
}
