using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class SceneTests
{
    [Fact]
    public void SameSeedGivesSameSceneCaptionAndPixels()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var a = Scene.FromSeed(seed);
            var b = Scene.FromSeed(seed);
            Assert.True(a.SameAs(b));
            Assert.Equal(CaptionGrammar.Canonical(a), CaptionGrammar.Canonical(b));
            Assert.Equal(CaptionGrammar.Caption(a, new Random(seed)), CaptionGrammar.Caption(b, new Random(seed)));
            using var ia = SceneRenderer.Render(a, 64, 64, seed);
            using var ib = SceneRenderer.Render(b, 64, 64, seed);
            Assert.Equal(Bytes(ia), Bytes(ib));
        }
    }

    [Fact]
    public void DifferentSeedsGiveDifferentScenesAndPixels()
    {
        var captions = Enumerable.Range(0, 50).Select(s => CaptionGrammar.Canonical(Scene.FromSeed(s))).ToHashSet();
        Assert.True(captions.Count >= 45, $"only {captions.Count} distinct captions in 50 seeds");
        using var a = SceneRenderer.Render(Scene.FromSeed(1), 64, 64, 1);
        using var b = SceneRenderer.Render(Scene.FromSeed(2), 64, 64, 2);
        Assert.NotEqual(Bytes(a), Bytes(b));
    }

    [Fact]
    public void ScenesHaveOneToThreeUniqueObjectsInDistinctCells()
    {
        for (int seed = 0; seed < 500; seed++)
        {
            var s = Scene.FromSeed(seed);
            Assert.InRange(s.Objects.Count, 1, 3);
            Assert.Equal(s.Objects.Count, s.Objects.Select(o => o.Cell).Distinct().Count());
            Assert.Equal(s.Objects.Count, s.Objects.Select(o => o.Name).Distinct().Count());
            foreach (var o in s.Objects)
            {
                // The whole shape sits inside its own cell.
                var (cx, cy) = Grid.Centre(o.Cell);
                Assert.True(Math.Abs(o.X - cx) + o.Extent <= Grid.CellSize / 2 + 1e-9);
                Assert.True(Math.Abs(o.Y - cy) + o.Extent <= Grid.CellSize / 2 + 1e-9);
            }
        }
    }

    [Fact]
    public void GridNamesCellsInReadingOrder()
    {
        Assert.Equal("top left", Grid.Name(Grid.CellOf(0.1, 0.1)));
        Assert.Equal("centre", Grid.Name(Grid.CellOf(0.5, 0.5)));
        Assert.Equal("bottom right", Grid.Name(Grid.CellOf(0.9, 0.99)));
        Assert.Equal("right", Grid.Name(Grid.CellOf(0.7, 0.5)));
    }

    internal static byte[] Bytes(Mat m)
    {
        m.GetArray(out Vec3b[] px);
        return px.SelectMany(p => new[] { p.Item0, p.Item1, p.Item2 }).ToArray();
    }
}
