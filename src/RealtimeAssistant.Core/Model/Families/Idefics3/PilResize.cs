namespace RealtimeAssistant.Model.Families.Idefics3;

/// <summary>
/// An 8-bit image resized exactly as Pillow's Image.resize does it (Resample.c): a separable
/// convolution whose kernel widens with the downscale factor (so shrinking averages, as OpenCV's
/// Lanczos and cubic do not), coefficients in 22-bit fixed point, the horizontal pass first over
/// only the rows the vertical pass reads, each pass rounded and clipped to 8 bits. Hugging Face's
/// slow image processors resize through PIL, so this reproduces their pixels byte for byte.
/// </summary>
public static class PilResize
{
    const int PrecisionBits = 32 - 8 - 2;

    /// <summary>The resampling filters of PIL's Image.resize (Image.Resampling values: LANCZOS 1, BILINEAR 2, BICUBIC 3).</summary>
    public enum Filter { Lanczos = 1, Bilinear = 2, Bicubic = 3 }

    /// <summary>Interleaved 8-bit pixels [height, width, channels] → [outHeight, outWidth, channels].</summary>
    public static byte[] Resize(byte[] src, int width, int height, int channels, int outWidth, int outHeight, Filter filter)
    {
        if (width < 1 || height < 1 || outWidth < 1 || outHeight < 1)
            throw new ArgumentException($"cannot resize {width}×{height} to {outWidth}×{outHeight}");
        if (src.Length != width * height * channels) throw new ArgumentException("pixel buffer does not match its size");
        bool horizontal = outWidth != width, vertical = outHeight != height;
        if (!horizontal && !vertical) return (byte[])src.Clone();
        var (hBounds, hCoeffs, hK) = Coefficients(width, outWidth, filter);
        var (vBounds, vCoeffs, vK) = Coefficients(height, outHeight, filter);
        byte[] image = src;
        int rows = height;
        if (horizontal)
        {
            // Only the source rows the vertical pass reads go through the horizontal pass.
            int first = vBounds[0], last = vBounds[outHeight * 2 - 2] + vBounds[outHeight * 2 - 1];
            if (vertical)
                for (int i = 0; i < outHeight; i++) vBounds[i * 2] -= first;
            else (first, last) = (0, height);
            rows = last - first;
            image = Horizontal(image, width, channels, first, rows, outWidth, hBounds, hCoeffs, hK);
        }
        if (vertical) image = Vertical(image, horizontal ? outWidth : width, channels, outHeight, vBounds, vCoeffs, vK);
        return image;
    }

    static double Support(Filter f) => f switch
    {
        Filter.Bilinear => 1.0,
        Filter.Bicubic => 2.0,
        Filter.Lanczos => 3.0,
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    static double Kernel(Filter f, double x)
    {
        switch (f)
        {
            case Filter.Bilinear:
                x = Math.Abs(x);
                return x < 1.0 ? 1.0 - x : 0.0;
            case Filter.Bicubic:
            {
                const double a = -0.5;
                x = Math.Abs(x);
                if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                return 0.0;
            }
            default:
                return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
        }
    }

    static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>Per output pixel: the first source pixel and how many it reads (bounds), and their fixed-point weights (ksize per pixel).</summary>
    static (int[] Bounds, int[] Coeffs, int KSize) Coefficients(int inSize, int outSize, Filter filter)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = Support(filter) * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var coeffs = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ss = 1.0 / filterScale, ww = 0.0;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            Array.Clear(k);
            for (int x = 0; x < xmax; x++)
            {
                double w = Kernel(filter, (x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
            {
                double w = ww != 0.0 ? k[x] / ww : k[x];
                coeffs[xx * ksize + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, coeffs, ksize);
    }

    static byte Clip8(int v) => v >= (1 << PrecisionBits << 8) ? (byte)255 : v <= 0 ? (byte)0 : (byte)(v >> PrecisionBits);

    /// <summary>
    /// The horizontal pass as a vertical one: the rows [firstRow, firstRow + rows) transposed (a
    /// source column becomes a row of interleaved pixels), resampled along the new rows, and
    /// transposed back. The integer sums are the same as Pillow's, in SIMD-friendly order.
    /// </summary>
    static byte[] Horizontal(byte[] src, int width, int channels, int firstRow, int rows, int outWidth, int[] bounds, int[] coeffs, int ksize)
    {
        var transposed = Transpose(src, firstRow, rows, width, channels);           // [width, rows, ch]
        var resampled = Vertical(transposed, rows, channels, outWidth, bounds, coeffs, ksize); // [outWidth, rows, ch]
        return Transpose(resampled, 0, outWidth, rows, channels);                   // [rows, outWidth, ch]
    }

    /// <summary>Rows [first, first + rows) of an interleaved [*, width, ch] image, transposed to [width, rows, ch] (OpenCV's blocked transpose).</summary>
    static byte[] Transpose(byte[] src, int first, int rows, int width, int channels)
    {
        var type = OpenCvSharp.MatType.CV_8UC(channels);
        using var whole = OpenCvSharp.Mat.FromPixelData(src.Length / (width * channels), width, type, src);
        using var part = whole.RowRange(first, first + rows);
        using var t = new OpenCvSharp.Mat();
        OpenCvSharp.Cv2.Transpose(part, t);
        var dst = new byte[rows * width * channels];
        System.Runtime.InteropServices.Marshal.Copy(t.Data, dst, 0, dst.Length);
        return dst;
    }

    /// <summary>Pillow's vertical pass: each output row a weighted sum of source rows, accumulated a vector of pixels at a time.</summary>
    static byte[] Vertical(byte[] src, int width, int channels, int outHeight, int[] bounds, int[] coeffs, int ksize)
    {
        int stride = width * channels;
        var dst = new byte[outHeight * stride];
        Parallel.For(0, outHeight, () => new int[stride], (yy, _, acc) =>
        {
            int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], kAt = yy * ksize;
            Array.Fill(acc, 1 << (PrecisionBits - 1));
            int lanes = System.Numerics.Vector<byte>.Count, ints = System.Numerics.Vector<int>.Count;
            for (int y = 0; y < ymax; y++)
            {
                int k = coeffs[kAt + y], row = (y + ymin) * stride, i = 0;
                var kv = new System.Numerics.Vector<int>(k);
                for (; i <= stride - lanes; i += lanes)
                {
                    var b = new System.Numerics.Vector<byte>(src, row + i);
                    System.Numerics.Vector.Widen(b, out var lo, out var hi);
                    System.Numerics.Vector.Widen(lo, out var w0, out var w1);
                    System.Numerics.Vector.Widen(hi, out var w2, out var w3);
                    Accumulate(acc, i, w0, kv);
                    Accumulate(acc, i + ints, w1, kv);
                    Accumulate(acc, i + 2 * ints, w2, kv);
                    Accumulate(acc, i + 3 * ints, w3, kv);
                }
                for (; i < stride; i++) acc[i] += src[row + i] * k;
            }
            int o = yy * stride;
            for (int i = 0; i < stride; i++) dst[o + i] = Clip8(acc[i]);
            return acc;
        }, _ => { });
        return dst;
    }

    static void Accumulate(int[] acc, int at, System.Numerics.Vector<uint> pixels, System.Numerics.Vector<int> k)
    {
        var sum = new System.Numerics.Vector<int>(acc, at) + System.Numerics.Vector.AsVectorInt32(pixels) * k;
        sum.CopyTo(acc, at);
    }
}
