using System.Runtime.InteropServices;
using OpenCvSharp;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

/// <summary>
/// GL tests run one at a time: contexts are per-thread and GLFW is process-wide, and serialising
/// them keeps the 2-core CI machine from thrashing llvmpipe.
/// </summary>
[CollectionDefinition("GL", DisableParallelization = true)]
public sealed class GlCollection { }

internal static class GlTestSupport
{
    /// <summary>A headless context, or a failure that says which Debian packages are missing.</summary>
    public static EglHeadlessContext Headless(int w, int h)
    {
        try
        {
            return new EglHeadlessContext(w, h);
        }
        catch (UserError e)
        {
            throw new InvalidOperationException(
                $"Rendering tests need EGL with Mesa: apt-get install -y {EglHeadlessContext.DebianPackages} ({e.Message})", e);
        }
    }

    /// <summary>
    /// A frame no two regions of which look alike: red rises left to right, green top to bottom,
    /// blue in 16-pixel checks. A vertical flip or a shift shows up at once.
    /// </summary>
    public static Mat Pattern(int w, int h)
    {
        var mat = new Mat(h, w, MatType.CV_8UC3);
        for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            mat.Set(y, x, new Vec3b((byte)(((x / 16 + y / 16) % 2) * 200), (byte)(y * 255 / Math.Max(1, h - 1)), (byte)(x * 255 / Math.Max(1, w - 1))));
        return mat;
    }

    public static Rect ToRect(RectF r) =>
        new((int)MathF.Floor(r.X), (int)MathF.Floor(r.Y), (int)MathF.Ceiling(r.Width), (int)MathF.Ceiling(r.Height));

    /// <summary>Mean absolute difference per channel value over a region.</summary>
    public static double MeanAbsDiff(Mat a, Mat b, Rect region)
    {
        using var diff = new Mat();
        Cv2.Absdiff(new Mat(a, region), new Mat(b, region), diff);
        Scalar s = Cv2.Mean(diff);
        return (s.Val0 + s.Val1 + s.Val2) / 3;
    }

    /// <summary>Pixels in the region that differ by more than <paramref name="threshold"/> in any channel.</summary>
    public static int CountDiffering(Mat a, Mat b, Rect region, int threshold = 24)
    {
        using var diff = new Mat();
        Cv2.Absdiff(new Mat(a, region), new Mat(b, region), diff);
        // Threshold each channel, then any channel over it makes the grey value non-zero.
        using var over = new Mat();
        Cv2.Threshold(diff, over, threshold, 255, ThresholdTypes.Binary);
        using var any = new Mat();
        Cv2.CvtColor(over, any, ColorConversionCodes.BGR2GRAY);
        return Cv2.CountNonZero(any);
    }

    /// <summary>Pixels in the region whose every channel is at least <paramref name="min"/>: white text (the test pattern never gets there).</summary>
    public static int CountWhiteish(Mat img, Rect region, int min = 230)
    {
        using var mask = new Mat();
        Cv2.InRange(new Mat(img, region), new Scalar(min, min, min), new Scalar(255, 255, 255), mask);
        return Cv2.CountNonZero(mask);
    }

    public static HudStats SampleHud() => new()
    {
        Stages = new Dictionary<string, (double, double)>
        {
            ["capture"] = (1.2, 1.1), ["preprocess"] = (0.4, 0.4), ["vision"] = (21.0, 18.5),
            ["prefill"] = (40.0, 35.0), ["decode"] = (12.0, 11.0), ["render"] = (2.2, 2.0),
        },
        Fps = 29.7, CaptionHz = 3.2, LatencyP50Ms = 420, LatencyP95Ms = 610, DroppedFrames = 3, BudgetMs = 33.3,
        FrameTimesMs = Enumerable.Range(0, 150).Select(i => 25.0 + 15 * Math.Sin(i / 7.0)).ToArray(),
    };

    public static string TempPng(string name) =>
        Path.Combine(Path.GetTempPath(), "ra-render-tests", $"{name}-{Environment.ProcessId}.png");
}

/// <summary>
/// Sets an environment variable for both .NET and native code: .NET on Unix keeps its own copy,
/// so Environment.SetEnvironmentVariable alone is invisible to GLFW's getenv("DISPLAY").
/// </summary>
internal static class ProcessEnv
{
    // DllImport rather than LibraryImport: this project does not allow unsafe code.
    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "unsetenv")]
    private static extern int UnsetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

    public static void Set(string name, string? value)
    {
        Environment.SetEnvironmentVariable(name, value);
        if (value is null) UnsetEnv(name); else SetEnv(name, value, 1);
    }
}
