using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Training;
using TorchSharp;
using Xunit;

namespace RealtimeAssistant.Tests.Training;

public class PatchTargetsTests
{
    [Fact]
    public void LabelsAgreeWithTheRenderedPixels()
    {
        const int size = 64, grid = 8, patch = size / grid;
        for (int seed = 0; seed < 30; seed++)
        {
            var scene = Scene.FromSeed(seed) with { Backdrop = SceneSampler.SampleBackdrop(new Random(seed), plain: true) };
            using var img = SceneRenderer.Render(scene, size, size);
            using var backdrop = SceneRenderer.Render(scene with { Objects = [] }, size, size);
            using var t = PatchTargets.Build(new[] { scene }, grid, torch.CPU);
            var shapes = t.Shape.data<long>().ToArray();
            var colours = t.Colour.data<long>().ToArray();
            var geometry = t.Geometry.data<float>().ToArray();
            var motions = t.Motion.data<long>().ToArray();
            var owned = new HashSet<DemoColor>();
            for (int i = 0; i < grid * grid; i++)
            {
                if (colours[i] == PatchTargets.Background) { Assert.Equal(0, shapes[i]); Assert.Equal(PatchTargets.NoMotion, motions[i]); continue; }
                var colour = DemoColors.All[colours[i] - 1];
                var obj = scene.Objects.Single(o => o.Color == colour && (int)o.Shape + 1 == shapes[i]);
                owned.Add(colour);
                int row = i / grid, col = i % grid;
                // The patch shows the object somewhere: a pixel at least half-way from the backdrop to its colour…
                Assert.True(HasColour(img, backdrop, col * patch, row * patch, patch, colour), $"seed {seed}: patch {i} labelled {colour} shows no {colour} pixel");
                // …and its geometry points from the patch centre to the object's centre.
                int g = i * PatchTargets.GeometryDims;
                Assert.Equal(obj.X * grid - (col + 0.5), geometry[g], 3);
                Assert.Equal(obj.Y * grid - (row + 0.5), geometry[g + 1], 3);
                Assert.Equal(2 * obj.X - 1, geometry[g + 3], 1e-4); // and where that centre is in the image (−1..1)
                Assert.Equal(2 * obj.Y - 1, geometry[g + 4], 1e-4);
                Assert.Equal((long)obj.Motion, motions[i]);
            }
            Assert.Equal(scene.Objects.Select(o => o.Color).ToHashSet(), owned); // every object owns a patch
        }
    }

    static bool HasColour(Mat img, Mat backdrop, int x0, int y0, int n, DemoColor c)
    {
        var (b, g, r) = c.Bgr();
        int Distance(Vec3b p) => Math.Abs(p.Item0 - b) + Math.Abs(p.Item1 - g) + Math.Abs(p.Item2 - r);
        for (int y = y0; y < y0 + n; y++)
            for (int x = x0; x < x0 + n; x++)
                if (Distance(img.At<Vec3b>(y, x)) < 0.5 * Distance(backdrop.At<Vec3b>(y, x))) return true;
        return false;
    }
}
