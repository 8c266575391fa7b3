namespace RealtimeAssistant.Demo;

/// <summary>
/// The 3×3 grid that positions are named on. Cells are numbered in reading order 0..8; points are
/// normalised image coordinates in [0, 1] (x right, y down).
/// </summary>
public static class Grid
{
    public static readonly string[] Names =
        ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"];

    public const double CellSize = 1.0 / 3;

    /// <summary>The cell holding a point; points outside the image clamp to the nearest cell.</summary>
    public static int CellOf(double x, double y) => Clamp(y) * 3 + Clamp(x);

    public static (double X, double Y) Centre(int cell) => ((cell % 3 + 0.5) * CellSize, (cell / 3 + 0.5) * CellSize);

    public static string Name(int cell) => Names[cell];

    private static int Clamp(double v) => Math.Clamp((int)Math.Floor(v * 3), 0, 2);
}
