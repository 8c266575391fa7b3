namespace RealtimeAssistant.Demo;

/// <summary>A scene graph: the objects and how the picture around them looks.</summary>
public sealed record Scene(IReadOnlyList<SceneObject> Objects, Backdrop Backdrop)
{
    /// <summary>The random scene for a seed: 1–3 objects, one per grid cell.</summary>
    public static Scene FromSeed(int seed) => SceneSampler.Sample(new Random(seed));

    /// <summary>Every object moved by <paramref name="steps"/> motion steps (mid-motion renders).</summary>
    public Scene Advanced(double steps) => this with { Objects = Objects.Select(o => o.Advanced(steps)).ToList() };

    /// <summary>Objects in reading order (by cell, then left to right, top to bottom).</summary>
    public IEnumerable<SceneObject> InReadingOrder() => Objects.OrderBy(o => o.Cell).ThenBy(o => o.Y).ThenBy(o => o.X);

    public SceneObject? Find(DemoColor color, Shape shape) =>
        Objects.FirstOrDefault(o => o.Color == color && o.Shape == shape);

    /// <summary>Value equality over the object list too (records compare lists by reference).</summary>
    public bool SameAs(Scene other) => Backdrop == other.Backdrop && Objects.SequenceEqual(other.Objects);
}
