using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>
/// Draws a scene graph into a BGR 8UC3 Mat of any size. Deterministic: same scene, size and
/// noise seed give the same pixels. A 64×64 render takes a few tens of microseconds.
/// </summary>
public static class SceneRenderer
{
    /// <param name="steps">Motion steps to advance each object by first (0 = as stored; fractions give mid-motion states).</param>
    public static Mat Render(Scene scene, int width, int height, int noiseSeed = 0, double steps = 0)
    {
        if (width < 8 || height < 8) throw new UserError($"Render size {width}x{height} is too small; use at least 8x8.");
        var img = new Mat(height, width, MatType.CV_8UC3);
        var b = scene.Backdrop;
        BackdropPainter.Paint(img, b, noiseSeed);
        foreach (var o in scene.Objects)
            ShapeDrawer.Draw(img, steps == 0 ? o : o.Advanced(steps), b.Brightness);
        if (b.Occluder is { } bar) DrawBar(img, bar, b.Brightness);
        if (b.NoiseSigma > 0) SensorNoise.Add(img, b.NoiseSigma, noiseSeed);
        return img;
    }

    private static void DrawBar(Mat img, Occluder bar, double gain)
    {
        int w = img.Cols, h = img.Rows;
        double g = Math.Min(255, bar.Grey * gain);
        int thick = Math.Max(1, (int)Math.Round(bar.Thickness * Math.Min(w, h)));
        Cv2.Line(img, new Point(bar.X1 * w, bar.Y1 * h), new Point(bar.X2 * w, bar.Y2 * h),
            new Scalar(g, g, g), thick, LineTypes.AntiAlias);
    }
}
