using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>Adds camera-like noise: a triangular distribution (sum of two uniforms) per channel.</summary>
internal static class SensorNoise
{
    public static unsafe void Add(Mat img, double sigma, int seed)
    {
        var rng = new XorShift(seed ^ 0x2545F491);
        // Sum of two uniforms on [-a, a] has std a·sqrt(2/3): pick a for the requested sigma.
        int a = Math.Max(1, (int)Math.Round(sigma * 1.2247));
        int span = 2 * a + 1;
        int n = img.Cols * 3, rows = img.Rows;
        long step = img.Step();
        byte* data = img.DataPointer;
        for (int y = 0; y < rows; y++)
        {
            byte* row = data + y * step;
            for (int i = 0; i < n; i++)
            {
                uint r = rng.Next();
                int d = (int)((r & 0xFFFF) % span) + (int)((r >> 16) % span) - 2 * a;
                int v = row[i] + d;
                row[i] = (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}
