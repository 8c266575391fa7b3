using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>Fills a Mat with a backdrop's background, lit by its brightness. Plain loops: cheap at 64×64.</summary>
internal static class BackdropPainter
{
    public static unsafe void Paint(Mat img, Backdrop b, int seed)
    {
        int w = img.Cols, h = img.Rows;
        var c1 = Lit(b.Color1, b.Brightness);
        var c2 = Lit(b.Color2, b.Brightness);
        if (b.Kind == BackdropKind.Flat)
        {
            img.SetTo(new Scalar(c1.B, c1.G, c1.R));
            return;
        }
        double period = Math.Max(2, b.Period * Math.Min(w, h));
        var noise = b.Kind == BackdropKind.Noise ? new ValueNoise(seed, w / period + 2, h / period + 2) : null;
        long step = img.Step();
        byte* data = img.DataPointer;
        for (int y = 0; y < h; y++)
        {
            byte* row = data + y * step;
            for (int x = 0; x < w; x++)
            {
                double t = b.Kind switch
                {
                    BackdropKind.VerticalGradient => y / (double)(h - 1),
                    BackdropKind.HorizontalGradient => x / (double)(w - 1),
                    BackdropKind.Stripes => ((int)((b.Vertical ? x : y) / period) & 1),
                    BackdropKind.Checker => (((int)(x / period) + (int)(y / period)) & 1),
                    _ => noise!.At(x / period, y / period),
                };
                row[3 * x] = (byte)(c1.B + (c2.B - c1.B) * t);
                row[3 * x + 1] = (byte)(c1.G + (c2.G - c1.G) * t);
                row[3 * x + 2] = (byte)(c1.R + (c2.R - c1.R) * t);
            }
        }
    }

    private static (int B, int G, int R) Lit((byte B, byte G, byte R) c, double gain) =>
        ((int)Math.Min(255, c.B * gain), (int)Math.Min(255, c.G * gain), (int)Math.Min(255, c.R * gain));

    /// <summary>Smooth blotches: random values on a coarse lattice, bilinearly interpolated.</summary>
    private sealed class ValueNoise
    {
        private readonly double[] _v;
        private readonly int _w;

        public ValueNoise(int seed, double w, double h)
        {
            _w = (int)w + 2;
            int n = _w * ((int)h + 2);
            _v = new double[n];
            var rng = new XorShift(seed ^ 0x5bd1e995);
            for (int i = 0; i < n; i++) _v[i] = rng.NextDouble();
        }

        public double At(double x, double y)
        {
            int ix = (int)x, iy = (int)y;
            double fx = x - ix, fy = y - iy;
            double a = _v[iy * _w + ix], b = _v[iy * _w + ix + 1];
            double c = _v[(iy + 1) * _w + ix], d = _v[(iy + 1) * _w + ix + 1];
            return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
        }
    }
}
