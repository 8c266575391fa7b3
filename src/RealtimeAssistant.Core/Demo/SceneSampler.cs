namespace RealtimeAssistant.Demo;

/// <summary>Draws random scenes and backdrops. All randomness comes from the Random passed in.</summary>
public static class SceneSampler
{
    public static Scene Sample(Random rng, int minObjects = 1, int maxObjects = 3, bool plain = false)
    {
        int count = rng.Next(minObjects, maxObjects + 1);
        var cells = Enumerable.Range(0, 9).OrderBy(_ => rng.Next()).Take(count).ToList();
        var objects = new List<SceneObject>();
        foreach (var cell in cells)
            objects.Add(SampleObject(rng, cell, objects));
        return new Scene(objects, SampleBackdrop(rng, plain));
    }

    /// <summary>A random object inside <paramref name="cell"/>, unlike (colour, shape) of the others.</summary>
    public static SceneObject SampleObject(Random rng, int cell, IReadOnlyCollection<SceneObject> others)
    {
        DemoColor color; Shape shape;
        do
        {
            color = DemoColors.All[rng.Next(DemoColors.All.Length)];
            shape = Shapes.All[rng.Next(Shapes.All.Length)];
        } while (others.Any(o => o.Color == color && o.Shape == shape));

        bool big = rng.Next(2) == 0;
        var probe = new SceneObject(shape, color, big, 0, 0, Motion.Still);
        // Jitter keeps the whole shape inside its cell, so cells never share an object.
        double room = Math.Max(0, Grid.CellSize / 2 - probe.Extent) * 0.9;
        var (cx, cy) = Grid.Centre(cell);
        return probe with
        {
            X = cx + (rng.NextDouble() * 2 - 1) * room,
            Y = cy + (rng.NextDouble() * 2 - 1) * room,
            Motion = Motions.All[rng.Next(Motions.All.Length)],
            Angle = (rng.NextDouble() * 2 - 1) * 12,
        };
    }

    /// <summary>A dark, low-saturation backdrop. Plain ones (flat or gradient, no noise) compress well in video.</summary>
    public static Backdrop SampleBackdrop(Random rng, bool plain = false)
    {
        var kinds = plain
            ? new[] { BackdropKind.Flat, BackdropKind.VerticalGradient, BackdropKind.HorizontalGradient }
            : Enum.GetValues<BackdropKind>();
        var kind = kinds[rng.Next(kinds.Length)];
        var c1 = DarkGrey(rng, rng.Next(20, 91));
        var c2 = DarkGrey(rng, Math.Clamp(Level(c1) + rng.Next(-35, 36), 10, 110));
        double brightness = plain ? 1.0 : 0.8 + rng.NextDouble() * 0.35;
        double noise = plain ? 0 : rng.NextDouble() * 8;
        Occluder? bar = !plain && rng.NextDouble() < 0.3 ? SampleOccluder(rng) : null;
        return new Backdrop(kind, c1, c2, 0.08 + rng.NextDouble() * 0.17, rng.Next(2) == 0, brightness, noise, bar);
    }

    // A thin grey bar: thin enough that any object it crosses stays mostly visible.
    private static Occluder SampleOccluder(Random rng)
    {
        byte grey = (byte)rng.Next(110, 151);
        double t = 0.04 + rng.NextDouble() * 0.02;
        double a = rng.NextDouble(), b = rng.NextDouble();
        return rng.Next(3) switch
        {
            0 => new Occluder(0, a, 1, a, t, grey),
            1 => new Occluder(a, 0, a, 1, t, grey),
            _ => new Occluder(0, a, 1, b, t, grey),
        };
    }

    private static (byte, byte, byte) DarkGrey(Random rng, int level) =>
        (Tint(rng, level), Tint(rng, level), Tint(rng, level));

    private static byte Tint(Random rng, int level) => (byte)Math.Clamp(level + rng.Next(-12, 13), 0, 255);

    private static int Level((byte B, byte G, byte R) c) => (c.B + c.G + c.R) / 3;
}
