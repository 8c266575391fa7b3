using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// The kept-visual-token grid as a one-texel-per-token float texture, stretched over the video with
/// nearest filtering so each token is a crisp cell. Grids are tiny (≤ 24×24), so re-uploading each
/// frame costs less than checking whether it changed.
/// </summary>
internal sealed unsafe class HeatmapLayer : IDisposable
{
    private readonly Texture2D _grid;

    public HeatmapLayer(GL gl) => _grid = new Texture2D(gl, smooth: false);

    public float Opacity { get; set; } = 0.45f;

    /// <summary>Uploads the grid; false when there is nothing to draw.</summary>
    public bool Upload(float[]? grid, int gridW, int gridH)
    {
        if (grid is null || gridW <= 0 || gridH <= 0) return false;
        if (grid.Length < gridW * gridH)
            throw new ArgumentException($"KeptGrid has {grid.Length} values, fewer than GridW×GridH = {gridW}×{gridH}");
        fixed (float* p = grid)
            _grid.Upload(gridW, gridH, InternalFormat.R32f, PixelFormat.Red, PixelType.Float, p, gridW, 4);
        return true;
    }

    public void Bind() => _grid.Bind();

    public void Dispose() => _grid.Dispose();
}
