using OpenCvSharp;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// Everything one output frame shows. A plain record the app fills each frame; the renderer keeps
/// no reference to it after <see cref="OverlayRenderer.Render"/> returns.
/// </summary>
public sealed record OverlayState
{
    /// <summary>BGR 8UC3 (or BGRA 8UC4) of any size, letterboxed to the output. Null draws black.</summary>
    public Mat? Video { get; init; }

    /// <summary>The streaming caption so far; wrapped, and scrolled to its last lines when long.</summary>
    public string Caption { get; init; } = "";

    public bool ShowHud { get; init; }
    public HudStats? Hud { get; init; }

    public bool ShowHeatmap { get; init; }

    /// <summary>Row-major GridW×GridH values in 0..1 (1 = visual token kept), over the video's area.</summary>
    public float[]? KeptGrid { get; init; }
    public int GridW { get; init; }
    public int GridH { get; init; }

    /// <summary>One line at the top right, e.g. "camera lost – retrying in 2s"; null or empty hides it.</summary>
    public string? Status { get; init; }

    /// <summary>Converts a kept-token mask to the float grid <see cref="KeptGrid"/> wants.</summary>
    public static float[] GridFromMask(ReadOnlySpan<bool> kept)
    {
        var grid = new float[kept.Length];
        for (int i = 0; i < kept.Length; i++) grid[i] = kept[i] ? 1f : 0f;
        return grid;
    }
}
