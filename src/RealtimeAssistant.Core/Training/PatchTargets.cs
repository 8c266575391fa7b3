using RealtimeAssistant.Demo;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Training;

/// <summary>
/// Dense per-patch labels from the scene graph, for the vision tower's auxiliary loss: which
/// shape and colour covers each patch (or background), and where that object's centre and edge
/// lie relative to the patch. A patch belongs to an object when its centre falls inside the
/// object's extent plus a margin, so even the smallest object owns at least one patch.
/// </summary>
public sealed class PatchTargets : IDisposable
{
    public const int Background = 0;
    public static int ShapeClasses => Shapes.All.Length + 1;
    public static int ColourClasses => DemoColors.All.Length + 1;
    public const int GeometryDims = 3; // centre dx, dy in patches; radius in patches

    public required Tensor Shape { get; init; }     // [N·P] long, 0 = background
    public required Tensor Colour { get; init; }    // [N·P] long, 0 = background
    public required Tensor Geometry { get; init; }  // [N·P, 3] float
    public required Tensor OnObject { get; init; }  // [N·P] float, 1 where an object owns the patch

    // Half a patch diagonal at the demo resolution would over-claim; a quarter patch is enough.
    const double MarginPatches = 0.25;

    /// <param name="scenes">The scene graph drawn in each image, in batch order.</param>
    /// <param name="grid">Patches per side.</param>
    public static PatchTargets Build(IReadOnlyList<Scene> scenes, int grid, Device device)
    {
        int p = grid * grid, n = scenes.Count;
        var shape = new long[n * p];
        var colour = new long[n * p];
        var geometry = new float[n * p * GeometryDims];
        var on = new float[n * p];
        double cell = 1.0 / grid;
        for (int s = 0; s < n; s++)
            for (int row = 0; row < grid; row++)
                for (int col = 0; col < grid; col++)
                {
                    double px = (col + 0.5) * cell, py = (row + 0.5) * cell;
                    SceneObject? owner = null;
                    double best = double.MaxValue;
                    foreach (var o in scenes[s].Objects)
                    {
                        double d = Math.Sqrt((o.X - px) * (o.X - px) + (o.Y - py) * (o.Y - py));
                        if (d <= o.Extent + MarginPatches * cell && d < best) { best = d; owner = o; }
                    }
                    if (owner is null) continue;
                    int i = s * p + row * grid + col;
                    shape[i] = (int)owner.Shape + 1;
                    colour[i] = (int)owner.Color + 1;
                    on[i] = 1;
                    geometry[i * 3] = (float)((owner.X - px) / cell);
                    geometry[i * 3 + 1] = (float)((owner.Y - py) / cell);
                    geometry[i * 3 + 2] = (float)(owner.Radius / cell);
                }
        return new PatchTargets
        {
            Shape = torch.tensor(shape, device: device),
            Colour = torch.tensor(colour, device: device),
            Geometry = torch.tensor(geometry, new long[] { n * p, GeometryDims }, device: device),
            OnObject = torch.tensor(on, device: device),
        };
    }

    public void Dispose() { Shape.Dispose(); Colour.Dispose(); Geometry.Dispose(); OnObject.Dispose(); }
}
