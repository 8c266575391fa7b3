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
    public static Mat Resize(Mat src, int width, int height, Filter filter)
    {
        if (src.Depth() != MatType.CV_8U) throw new ArgumentException("PilResample needs an 8-bit image");
        int ch = src.Channels();
        using var contiguous = src.IsContinuous() ? null : src.Clone();
        var input = contiguous ?? src;
        var inBytes = new byte[input.Rows * input.Cols * ch];
        System.Runtime.InteropServices.Marshal.Copy(input.Data, inBytes, 0, inBytes.Length);
        var cur = Resize(inBytes, src.Cols, src.Rows, ch, width, height, filter);
        var dst = new Mat(height, width, MatType.CV_8UC(ch));
        System.Runtime.InteropServices.Marshal.Copy(cur, 0, dst.Data, cur.Length);
        return dst;
    }

    /// <summary>Interleaved 8-bit pixels (<paramref name="channels"/> per pixel, row-major) resized; the same size returns a copy.</summary>
    public static byte[] Resize(byte[] inBytes, int srcWidth, int srcHeight, int ch, int width, int height, Filter filter)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"target size {width}x{height}");
        if (inBytes.Length != srcWidth * srcHeight * ch) throw new ArgumentException($"{inBytes.Length} bytes for a {srcWidth}x{srcHeight}x{ch} image");
        if (srcWidth == width && srcHeight == height) return (byte[])inBytes.Clone();
        var (fn, support) = Kernel(filter);
        var horiz = Coefficients(srcWidth, width, fn, support);
        var vert = Coefficients(srcHeight, height, fn, support);

        byte[] cur = inBytes;
        int curW = srcWidth, curH = srcHeight;
        if (width != srcWidth)
        {
            // Only the rows the vertical pass reads are resampled.
            int first = vert.Bounds[0], last = vert.Bounds[2 * (height - 1)] + vert.Bounds[2 * (height - 1) + 1];
            cur = Horizontal(inBytes, curW, ch, first, last - first, width, horiz);
            curH = last - first;
            curW = width;
            for (int i = 0; i < height; i++) vert.Bounds[2 * i] -= first;
        }
        if (height != srcHeight) cur = Vertical(cur, curW, ch, height, vert);
        return cur;
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

    static byte[] Horizontal(byte[] src, int inW, int ch, int firstRow, int rows, int outW, Coeffs c)
    {
        var dst = new byte[rows * outW * ch];
        const int half = 1 << (PrecisionBits - 1);
        Parallel.For(0, rows, y =>
        {
            int inRow = (y + firstRow) * inW * ch, outRow = y * outW * ch;
            var k = c.K;
            for (int xx = 0; xx < outW; xx++)
            {
                int xmin = c.Bounds[2 * xx], n = c.Bounds[2 * xx + 1], k0 = xx * c.KSize, p = inRow + xmin * ch, o = outRow + xx * ch;
                if (ch == 3)
                {
                    int a0 = half, a1 = half, a2 = half;
                    for (int x = 0; x < n; x++, p += 3)
                    {
                        int w = k[k0 + x];
                        a0 += src[p] * w; a1 += src[p + 1] * w; a2 += src[p + 2] * w;
                    }
                    (dst[o], dst[o + 1], dst[o + 2]) = (Clip8(a0), Clip8(a1), Clip8(a2));
                    continue;
                }
                for (int q = 0; q < ch; q++)
                {
                    int a = half;
                    for (int x = 0; x < n; x++) a += src[p + x * ch + q] * k[k0 + x];
                    dst[o + q] = Clip8(a);
                }
            }
        });
        return dst;
    }

    static byte[] Vertical(byte[] src, int w, int ch, int outH, Coeffs c)
    {
        var dst = new byte[outH * w * ch];
        int stride = w * ch;
        Parallel.For(0, outH, () => new int[stride], (yy, _, acc) =>
        {
            // Row by row over contiguous memory: each tap adds one source row to the accumulators.
            int ymin = c.Bounds[2 * yy], n = c.Bounds[2 * yy + 1], k0 = yy * c.KSize;
            Array.Fill(acc, 1 << (PrecisionBits - 1));
            for (int y = 0; y < n; y++)
            {
                int w0 = c.K[k0 + y], row = (ymin + y) * stride;
                for (int i = 0; i < stride; i++) acc[i] += src[row + i] * w0;
            }
            int o = yy * stride;
            for (int i = 0; i < stride; i++) dst[o + i] = Clip8(acc[i]);
            return acc;
        }, _ => { });
        return dst;
    }
}
