using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenCvSharp;

namespace RealtimeAssistant.Model.Imaging;

/// <summary>
/// Pillow's Image.resize for 8-bit images, bit for bit: Hugging Face's slow image processors
/// resize through PIL, so a checkpoint's pixels are only reproduced by the same arithmetic.
/// A separable convolution whose support widens with the downscale factor (antialiasing),
/// coefficients normalised in double then fixed to 22 fractional bits, a horizontal pass
/// rounded to 8 bits, then a vertical pass (Pillow's Resample.c, 8 bpc path).
/// </summary>
public static class PilResample
{
    const int PrecisionBits = 32 - 8 - 2;

    /// <summary>PIL's resampling filters, numbered as preprocessor_config.json's "resample" holds them.</summary>
    public enum Filter { Nearest = 0, Lanczos = 1, Bilinear = 2, Bicubic = 3, Box = 4, Hamming = 5 }

    public static Filter Parse(int value, string source) => value switch
    {
        >= 1 and <= 5 => (Filter)value,
        0 => throw new UserError($"{source}: resample 0 (nearest) is not supported"),
        _ => throw new UserError($"{source}: resample must be one of PIL's filters 0..5, got {value}"),
    };

    /// <summary>An 8-bit image (any channel count and order) resized to <paramref name="width"/>×<paramref name="height"/>; the same size returns a copy, as PIL does.</summary>
    public static unsafe Mat Resize(Mat src, int width, int height, Filter filter)
    {
        if (src.Depth() != MatType.CV_8U) throw new ArgumentException("PilResample needs an 8-bit image");
        if (width < 1 || height < 1) throw new ArgumentException($"target size {width}x{height}");
        int ch = src.Channels();
        using var contiguous = src.IsContinuous() ? null : src.Clone();
        var input = contiguous ?? src;
        var dst = new Mat(height, width, MatType.CV_8UC(ch));
        if (src.Cols == width && src.Rows == height) { input.CopyTo(dst); return dst; }
        // Read from and written to the Mats' own memory: a camera frame is megabytes.
        Resize((byte*)input.Data, src.Cols, src.Rows, ch, width, height, filter, (byte*)dst.Data);
        return dst;
    }

    static unsafe void Resize(byte* input, int srcWidth, int srcHeight, int ch, int width, int height, Filter filter, byte* output)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"target size {width}x{height}");
        var horiz = Coefficients(srcWidth, width, filter);
        var vert = Coefficients(srcHeight, height, filter);
        if (width == srcWidth) { Vertical(input, 0, width, ch, height, vert, output); return; }
        if (height == srcHeight) { Horizontal(input, srcWidth, ch, 0, srcHeight, width, horiz, output); return; }
        // Only the rows the vertical pass reads are resampled, into scratch reused from frame to
        // frame (a stream resizes every frame: a 480² frame to 64² needs 92 KB, a large object).
        int first = vert.Bounds[0], last = vert.Bounds[2 * (height - 1)] + vert.Bounds[2 * (height - 1) + 1];
        var across = ArrayPool<byte>.Shared.Rent((last - first) * width * ch);
        try
        {
            fixed (byte* h = across)
            {
                Horizontal(input, srcWidth, ch, first, last - first, width, horiz, h);
                Vertical(h, first, width, ch, height, vert, output);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(across); }
    }

    sealed record Coeffs(int KSize, int[] Bounds, int[] K);

    static (Func<double, double> Fn, double Support) Kernel(Filter f) => f switch
    {
        Filter.Box => (x => x > -0.5 && x <= 0.5 ? 1.0 : 0.0, 0.5),
        Filter.Bilinear => (x => { x = Math.Abs(x); return x < 1.0 ? 1.0 - x : 0.0; }, 1.0),
        Filter.Hamming => (x =>
        {
            x = Math.Abs(x);
            if (x == 0.0) return 1.0;
            if (x >= 1.0) return 0.0;
            x *= Math.PI;
            return Math.Sin(x) / x * (0.54 + 0.46 * Math.Cos(x));
        }, 1.0),
        Filter.Bicubic => (x =>
        {
            const double a = -0.5;
            x = Math.Abs(x);
            if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
            return 0.0;
        }, 2.0),
        Filter.Lanczos => (x => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0, 3.0),
        _ => throw new UserError($"PIL filter {f} is not supported"),
    };

    static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    static readonly ConcurrentDictionary<(int In, int Out, Filter Filter), Coeffs> Cached = new();

    /// <summary>A pass's coefficients, computed once for each size pair (a stream's frames share theirs); never changed after.</summary>
    static Coeffs Coefficients(int inSize, int outSize, Filter filter)
    {
        if (Cached.TryGetValue((inSize, outSize, filter), out var c)) return c;
        if (Cached.Count >= 64) Cached.Clear(); // sizes that keep changing (image folders) do not grow it without bound
        var (fn, support) = Kernel(filter);
        return Cached[(inSize, outSize, filter)] = Coefficients(inSize, outSize, fn, support);
    }

    /// <summary>Per output pixel: the first input pixel, how many, and their fixed-point weights (ksize per pixel).</summary>
    static Coeffs Coefficients(int inSize, int outSize, Func<double, double> filter, double baseSupport)
    {
        double scale = (double)inSize / outSize, filterScale = Math.Max(scale, 1.0);
        double support = baseSupport * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var kk = new int[outSize * ksize];
        var w = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterScale;
            int xmin = Math.Max(0, (int)(center - support + 0.5)); // C's truncating cast, as Pillow rounds
            int xmax = Math.Min(inSize, (int)(center + support + 0.5)) - xmin;
            for (int x = 0; x < xmax; x++)
            {
                w[x] = filter((x + xmin - center + 0.5) * ss);
                ww += w[x];
            }
            for (int x = 0; x < xmax; x++)
            {
                double k = ww != 0.0 ? w[x] / ww : w[x];
                kk[xx * ksize + x] = k < 0 ? (int)(-0.5 + k * (1 << PrecisionBits)) : (int)(0.5 + k * (1 << PrecisionBits));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return new Coeffs(ksize, bounds, kk);
    }

    static byte Clip8(int v)
    {
        v >>= PrecisionBits; // arithmetic shift: floor, as Pillow's lookup table indexes
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    /// <summary>Multiply-adds a pass takes before its rows are split over threads: below it a thread handoff costs more than it saves (a 480² frame to 64² took 2.3 ms on one thread, 6.4 split over two).</summary>
    internal static long ParallelWork { get; set; } = 8_000_000;

    static void Rows(int count, long work, Action<int, int> body)
    {
        if (work < ParallelWork || Environment.ProcessorCount == 1) { body(0, count); return; }
        int parts = Math.Min(Environment.ProcessorCount, count);
        Parallel.For(0, parts, i => body((int)((long)count * i / parts), (int)((long)count * (i + 1) / parts)));
    }

    static unsafe void Horizontal(byte* src, int inW, int ch, int firstRow, int rows, int outW, Coeffs c, byte* dst)
    {
        const int half = 1 << (PrecisionBits - 1);
        nint sp = (nint)src, dp = (nint)dst;
        byte* end = src + (long)(firstRow + rows) * inW * ch;
        Rows(rows, (long)rows * outW * c.KSize * ch, (y0, y1) =>
        {
            fixed (int* k = c.K, bounds = c.Bounds)
                for (int y = y0; y < y1; y++)
                {
                    byte* inRow = (byte*)sp + (long)(y + firstRow) * inW * ch, outRow = (byte*)dp + (long)y * outW * ch;
                    for (int xx = 0; xx < outW; xx++)
                    {
                        int n = bounds[2 * xx + 1];
                        byte* p = inRow + bounds[2 * xx] * ch;
                        int* w = k + xx * c.KSize;
                        byte* o = outRow + xx * ch;
                        if (ch == 3 && Sse41.IsSupported && p + 3 * n + 1 <= end)
                        {
                            // A pixel's 3 bytes (and the next one's first, weighted into a lane left unused) widened to int32 lanes.
                            var acc = Vector128.Create(half);
                            for (int x = 0; x < n; x++, p += 3) acc += Sse41.ConvertToVector128Int32(p) * Vector128.Create(w[x]);
                            o[0] = Clip8(acc.GetElement(0)); o[1] = Clip8(acc.GetElement(1)); o[2] = Clip8(acc.GetElement(2));
                            continue;
                        }
                        for (int q = 0; q < ch; q++)
                        {
                            int a = half;
                            for (int x = 0; x < n; x++) a += p[x * ch + q] * w[x];
                            o[q] = Clip8(a);
                        }
                    }
                }
        });
    }

    /// <param name="firstRow">The source row <paramref name="src"/> starts at (the horizontal pass resampled only the rows this one reads).</param>
    static unsafe void Vertical(byte* src, int firstRow, int w, int ch, int outH, Coeffs c, byte* dst)
    {
        int stride = w * ch;
        nint sp = (nint)src, dp = (nint)dst;
        Rows(outH, (long)outH * stride * c.KSize, (y0, y1) =>
        {
            var acc = ArrayPool<int>.Shared.Rent(stride);
            try
            {
                fixed (int* a = acc)
                    for (int yy = y0; yy < y1; yy++)
                    {
                        // Row by row over contiguous memory: each tap adds one source row to the accumulators.
                        int ymin = c.Bounds[2 * yy] - firstRow, n = c.Bounds[2 * yy + 1], k0 = yy * c.KSize;
                        new Span<int>(a, stride).Fill(1 << (PrecisionBits - 1));
                        for (int y = 0; y < n; y++)
                        {
                            int w0 = c.K[k0 + y];
                            byte* row = (byte*)sp + (long)(ymin + y) * stride;
                            int i = 0;
                            if (Sse41.IsSupported)
                            {
                                var wv = Vector128.Create(w0);
                                for (; i + 4 <= stride; i += 4) (Vector128.Load(a + i) + Sse41.ConvertToVector128Int32(row + i) * wv).Store(a + i);
                            }
                            for (; i < stride; i++) a[i] += row[i] * w0;
                        }
                        byte* o = (byte*)dp + (long)yy * stride;
                        for (int i = 0; i < stride; i++) o[i] = Clip8(a[i]);
                    }
            }
            finally { ArrayPool<int>.Shared.Return(acc); }
        });
    }
}
