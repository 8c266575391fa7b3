namespace RealtimeAssistant.Model.Imaging;

/// <summary>The resampling filters of PIL's Image.resize (Image.Resampling values: LANCZOS 1, BILINEAR 2, BICUBIC 3).</summary>
public enum PilFilter { Lanczos = 1, Bilinear = 2, Bicubic = 3 }

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

    /// <summary>Interleaved 8-bit pixels [height, width, channels] → [outHeight, outWidth, channels].</summary>
    public static byte[] Resize(byte[] src, int width, int height, int channels, int outWidth, int outHeight, PilFilter filter)
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

    static double Support(PilFilter f) => f switch
    {
        PilFilter.Bilinear => 1.0,
        PilFilter.Bicubic => 2.0,
        PilFilter.Lanczos => 3.0,
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    static double Kernel(PilFilter f, double x)
    {
        switch (f)
        {
            case PilFilter.Bilinear:
                x = Math.Abs(x);
                return x < 1.0 ? 1.0 - x : 0.0;
            case PilFilter.Bicubic:
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
    static (int[] Bounds, int[] Coeffs, int KSize) Coefficients(int inSize, int outSize, PilFilter filter)
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

    static byte[] Horizontal(byte[] src, int width, int channels, int firstRow, int rows, int outWidth, int[] bounds, int[] coeffs, int ksize)
    {
        var dst = new byte[rows * outWidth * channels];
        Parallel.For(0, rows, yy =>
        {
            int srcRow = (yy + firstRow) * width * channels, dstRow = yy * outWidth * channels;
            for (int xx = 0; xx < outWidth; xx++)
            {
                int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], kAt = xx * ksize;
                for (int c = 0; c < channels; c++)
                {
                    int ss = 1 << (PrecisionBits - 1);
                    for (int x = 0; x < xmax; x++)
                        ss += src[srcRow + (x + xmin) * channels + c] * coeffs[kAt + x];
                    dst[dstRow + xx * channels + c] = Clip8(ss);
                }
            }
        });
        return dst;
    }

    static byte[] Vertical(byte[] src, int width, int channels, int outHeight, int[] bounds, int[] coeffs, int ksize)
    {
        int stride = width * channels;
        var dst = new byte[outHeight * stride];
        Parallel.For(0, outHeight, yy =>
        {
            int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], kAt = yy * ksize, dstRow = yy * stride;
            for (int i = 0; i < stride; i++)
            {
                int ss = 1 << (PrecisionBits - 1);
                for (int y = 0; y < ymax; y++)
                    ss += src[(y + ymin) * stride + i] * coeffs[kAt + y];
                dst[dstRow + i] = Clip8(ss);
            }
        });
        return dst;
    }
}
