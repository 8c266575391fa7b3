namespace RealtimeAssistant.Model;

/// <summary>
/// Pillow's <c>Image.resize</c> for 8-bit images (no <c>reducing_gap</c>), bit for bit: the HF
/// "slow" image processors resize through PIL, so a family whose pixel values must match HF's
/// resizes here rather than in OpenCV (whose bicubic uses a = −0.75 and no antialiasing).
/// Pillow's algorithm: separable passes (horizontal, then vertical), each output sample a
/// weighted sum over a support that widens with the downscale factor (antialiasing), weights
/// normalised to 1 then rounded to 22-bit fixed point, and the result clipped to 0..255 after
/// each pass.
/// </summary>
public static class PillowResample
{
    public enum Filter { Box, Bilinear, Hamming, Bicubic, Lanczos }

    const int PrecisionBits = 32 - 8 - 2;

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
        Filter.Bicubic => (Bicubic, 2.0),
        Filter.Lanczos => (x => x > -3.0 && x < 3.0 ? Sinc(x) * Sinc(x / 3.0) : 0.0, 3.0),
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    static double Bicubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>PIL's resample filter numbers (PIL.Image.Resampling), as preprocessor configs give them.</summary>
    public static Filter FromPil(int resample, string source) => resample switch
    {
        1 => Filter.Lanczos,
        2 => Filter.Bilinear,
        3 => Filter.Bicubic,
        4 => Filter.Box,
        5 => Filter.Hamming,
        _ => throw new UserError($"{source}: resample {resample} is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"),
    };

    /// <summary>
    /// Per output sample: the first input index, how many inputs it reads, and their fixed-point
    /// weights (ksize per sample), as Pillow's precompute_coeffs + normalize_coeffs_8bpc.
    /// </summary>
    static (int[] Bounds, int[] Weights, int KSize) Coefficients(int inSize, int outSize, Filter filter)
    {
        var (fn, baseSupport) = Kernel(filter);
        double scale = (double)inSize / outSize, filterScale = Math.Max(scale, 1.0);
        double support = baseSupport * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale, ss = 1.0 / filterScale, ww = 0;
            int xmin = (int)(center - support + 0.5); // C's truncating cast, as Pillow
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++) { k[x] = fn((x + xmin - center + 0.5) * ss); ww += k[x]; }
            for (int x = 0; x < xmax; x++)
            {
                double w = ww != 0.0 ? k[x] / ww : k[x];
                weights[xx * ksize + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, weights, ksize);
    }

    static byte Clip8(long v) => v >= (1L << PrecisionBits << 8) ? (byte)255 : v <= 0 ? (byte)0 : (byte)(v >> PrecisionBits);

    /// <summary>
    /// Resizes interleaved 8-bit pixels (<paramref name="channels"/> per pixel, rows top to bottom)
    /// from <paramref name="width"/>×<paramref name="height"/> to <paramref name="outWidth"/>×<paramref name="outHeight"/>.
    /// The same size returns a copy, as PIL does.
    /// </summary>
    public static byte[] Resize(byte[] pixels, int width, int height, int channels, int outWidth, int outHeight, Filter filter)
    {
        if (width < 1 || height < 1 || outWidth < 1 || outHeight < 1 || channels < 1)
            throw new ArgumentException($"cannot resize {width}×{height} to {outWidth}×{outHeight}");
        if (pixels.Length != (long)width * height * channels) throw new ArgumentException("pixel buffer size does not match the image");
        if (width == outWidth && height == outHeight) return (byte[])pixels.Clone();
        var src = pixels;
        int w = width, h = height;
        var (vBounds, vWeights, vK) = Coefficients(height, outHeight, filter);
        if (outWidth != width)
        {
            // Only the rows the vertical pass reads are resampled horizontally (Pillow's ybox).
            int first = vBounds[0], last = vBounds[outHeight * 2 - 2] + vBounds[outHeight * 2 - 1];
            if (outHeight == height) (first, last) = (0, height);
            var (hBounds, hWeights, hK) = Coefficients(width, outWidth, filter);
            var tmp = new byte[(long)outWidth * (last - first) * channels];
            Parallel.For(first, last, y =>
            {
                int row = y * w * channels, outRow = (y - first) * outWidth * channels;
                for (int xx = 0; xx < outWidth; xx++)
                {
                    int xmin = hBounds[xx * 2], n = hBounds[xx * 2 + 1], kAt = xx * hK;
                    for (int c = 0; c < channels; c++)
                    {
                        long ss = 1L << (PrecisionBits - 1);
                        for (int x = 0; x < n; x++) ss += src[row + (x + xmin) * channels + c] * (long)hWeights[kAt + x];
                        tmp[outRow + xx * channels + c] = Clip8(ss);
                    }
                }
            });
            if (outHeight != height) for (int i = 0; i < outHeight; i++) vBounds[i * 2] -= first;
            src = tmp; w = outWidth; h = last - first;
        }
        if (outHeight == height) return src;
        var dst = new byte[(long)w * outHeight * channels];
        int stride = w * channels;
        Parallel.For(0, outHeight, yy =>
        {
            int ymin = vBounds[yy * 2], n = vBounds[yy * 2 + 1], kAt = yy * vK, outRow = yy * stride;
            for (int i = 0; i < stride; i++)
            {
                long ss = 1L << (PrecisionBits - 1);
                for (int y = 0; y < n; y++) ss += src[(y + ymin) * stride + i] * (long)vWeights[kAt + y];
                dst[outRow + i] = Clip8(ss);
            }
        });
        return dst;
    }
}
