using OpenCvSharp;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

[Collection("GL")]
public sealed class HeatmapTests
{
    private const int W = 640, H = 480, Grid = 8;

    [Fact]
    public void Only_the_kept_cell_changes_colour()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);
        var grid = new float[Grid * Grid];
        const int cx = 5, cy = 2;
        grid[cy * Grid + cx] = 1f;

        renderer.Render(new OverlayState { Video = video });
        using Mat plain = renderer.ReadPixels();
        renderer.Render(new OverlayState { Video = video, ShowHeatmap = true, KeptGrid = grid, GridW = Grid, GridH = Grid });
        using Mat heat = renderer.ReadPixels();

        int cellW = W / Grid, cellH = H / Grid;   // 80×60
        for (int y = 0; y < Grid; y++)
        for (int x = 0; x < Grid; x++)
        {
            // Inset by 2 pixels so a cell's edge can't be blamed on its neighbour.
            var cell = new Rect(x * cellW + 2, y * cellH + 2, cellW - 4, cellH - 4);
            double diff = GlTestSupport.MeanAbsDiff(heat, plain, cell);
            if (x == cx && y == cy) Assert.True(diff > 20, $"kept cell changed only {diff:F1}");
            else Assert.True(diff < 0.5, $"cell ({x},{y}) changed {diff:F1}");
        }
    }

    [Fact]
    public void Hidden_heatmap_and_mask_helper()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);
        float[] grid = OverlayState.GridFromMask(Enumerable.Repeat(true, 24 * 24).ToArray());
        Assert.All(grid, v => Assert.Equal(1f, v));

        renderer.Render(new OverlayState { Video = video, ShowHeatmap = false, KeptGrid = grid, GridW = 24, GridH = 24 });
        using Mat frame = renderer.ReadPixels();
        Assert.True(GlTestSupport.MeanAbsDiff(frame, video, new Rect(0, 0, W, H)) < 1.0);
    }

    [Fact]
    public void Short_grid_is_rejected()
    {
        using var ctx = GlTestSupport.Headless(64, 64);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(64, 64);
        var e = Assert.Throws<ArgumentException>(() =>
            renderer.Render(new OverlayState { Video = video, ShowHeatmap = true, KeptGrid = new float[10], GridW = 8, GridH = 8 }));
        Assert.Contains("8×8", e.Message);
    }
}
