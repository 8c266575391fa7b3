namespace RealtimeAssistant.Demo;

/// <summary>
/// One object of a scene graph. X, Y are its centre in normalised image coordinates; the grid
/// cell is always derived from them, so moved objects report where they really are.
/// Scale multiplies the size (clips grow and shrink objects); Angle is a small render-only tilt.
/// </summary>
public sealed record SceneObject(
    Shape Shape, DemoColor Color, bool Big, double X, double Y, Motion Motion,
    double Scale = 1.0, double Angle = 0)
{
    /// <summary>Base radius (normalised): big objects span ~70% of a cell, small ones ~54%.</summary>
    public const double BigRadius = 0.117, SmallRadius = 0.09;

    /// <summary>Translation per motion step, in normalised units (a quarter of a cell).</summary>
    public const double Step = Grid.CellSize / 4;

    /// <summary>Relative size change per motion step.</summary>
    public const double GrowthStep = 0.25;

    public double Radius => (Big ? BigRadius : SmallRadius) * Scale;

    /// <summary>Half-width of the drawn shape: stars and triangles reach a bit beyond the radius.</summary>
    public double Extent => Radius * 1.15;

    public int Cell => Grid.CellOf(X, Y);

    public string Position => Grid.Name(Cell);

    /// <summary>"red circle": the words that identify an object (a scene never repeats a pair).</summary>
    public string Name => $"{Color.Word()} {Shape.Word()}";

    public bool InFrame => X >= 0 && X < 1 && Y >= 0 && Y < 1;

    /// <summary>This object after <paramref name="steps"/> motion steps (fractions allowed).</summary>
    public SceneObject Advanced(double steps)
    {
        var (dx, dy) = Motion.Direction();
        return this with
        {
            X = X + dx * Step * steps,
            Y = Y + dy * Step * steps,
            Scale = Math.Max(0.2, Scale * (1 + Motion.Growth() * GrowthStep * steps)),
        };
    }
}
