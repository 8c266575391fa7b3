using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class RendererTests
{
    [Theory]
    [InlineData(64, 64)]
    [InlineData(480, 480)]
    [InlineData(200, 120)]
    public void EveryShapeAndColourShowsAtItsCellCentre(int w, int h)
    {
        foreach (var shape in Shapes.All)
        foreach (var color in DemoColors.All)
        {
            var (cx, cy) = Grid.Centre(2); // top right
            var o = new SceneObject(shape, color, false, cx, cy, Motion.Still);
            using var img = SceneRenderer.Render(new Scene([o], Backdrop.Plain), w, h);
            Assert.Equal(MatType.CV_8UC3, img.Type());
            Assert.Equal(new Size(w, h), img.Size());
            // A ring is hollow: look on the band instead of the centre.
            double px = shape == Shape.Ring ? cx + o.Radius * 0.78 * Math.Min(w, h) / w : cx;
            var v = img.At<Vec3b>((int)(cy * h), (int)(px * w));
            Assert.Equal(color, Nearest(v, 1.0));
        }
    }

    [Fact]
    public void ObjectColoursSurviveBackdropsLightingAndNoiseAt64()
    {
        int checkedObjects = 0;
        for (int seed = 0; seed < 300; seed++)
        {
            var scene = Scene.FromSeed(seed);
            if (scene.Backdrop.Occluder != null) continue; // a bar may cover a centre
            using var img = SceneRenderer.Render(scene, 64, 64, seed);
            foreach (var o in scene.Objects.Where(o => o.Shape != Shape.Ring))
            {
                // Mean over a 3×3 patch, as a model's first layer would see it.
                int x = (int)(o.X * 64), y = (int)(o.Y * 64);
                using var patch = new Mat(img, new Rect(x - 1, y - 1, 3, 3));
                var mean = Cv2.Mean(patch);
                var v = new Vec3b((byte)mean.Val0, (byte)mean.Val1, (byte)mean.Val2);
                Assert.Equal(o.Color, Nearest(v, scene.Backdrop.Brightness));
                checkedObjects++;
            }
        }
        Assert.True(checkedObjects > 300);
    }

    [Fact]
    public void ObjectsFillMostOfTheirCellAndTheRestIsBackdrop()
    {
        var o = new SceneObject(Shape.Square, DemoColor.Red, true, 0.5, 0.5, Motion.Still);
        using var img = SceneRenderer.Render(new Scene([o], Backdrop.Plain), 64, 64);
        int red = 0;
        for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            if (img.At<Vec3b>(y, x).Item2 > 150) red++;
        double cellArea = 64 * 64 / 9.0;
        Assert.InRange(red / cellArea, 0.3, 0.75); // a big square covers roughly half its cell
        Assert.Equal(new Vec3b(40, 40, 40), img.At<Vec3b>(2, 2));
    }

    [Fact]
    public void MidMotionRenderMovesObjectsAlongTheirMotion()
    {
        var o = new SceneObject(Shape.Circle, DemoColor.White, true, 0.5, 0.5, Motion.Right);
        var scene = new Scene([o], Backdrop.Plain);
        using var a = SceneRenderer.Render(scene, 96, 96, 0, 0);
        using var b = SceneRenderer.Render(scene, 96, 96, 0, 1);
        Assert.True(CentroidX(b) - CentroidX(a) > SceneObject.Step * 96 * 0.8);
    }

    [Fact]
    public void TinySizesAreRejectedWithAUserError() =>
        Assert.Throws<UserError>(() => SceneRenderer.Render(Scene.FromSeed(1), 4, 4));

    internal static DemoColor Nearest(Vec3b v, double gain) =>
        DemoColors.All.MinBy(c =>
        {
            var (b, g, r) = c.Bgr();
            double db = v.Item0 - Math.Min(255, b * gain), dg = v.Item1 - Math.Min(255, g * gain), dr = v.Item2 - Math.Min(255, r * gain);
            return db * db + dg * dg + dr * dr;
        });

    private static double CentroidX(Mat img)
    {
        double sum = 0, n = 0;
        int rows = img.Rows, cols = img.Cols;
        for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
            if (img.At<Vec3b>(y, x).Item0 > 128) { sum += x; n++; }
        return sum / n;
    }
}
