using OpenCvSharp;
using RealtimeAssistant.Demo;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Training;

/// <summary>
/// Dense per-patch labels from the scene graph, for the vision tower's auxiliary loss: which
/// shape and colour covers each patch (or background), and where that object's centre and edge
/// lie relative to the patch, and how that object moves (read from the decoder, which sees the
/// frames together; see <see cref="DecoderProbe"/>). A patch belongs to the object covering most of its area (at least
/// 10% of it), measured on the object drawn alone at the model's resolution.
/// </summary>
public sealed class PatchTargets : IDisposable
{
    public const int Background = 0;
    public static int ShapeClasses => Shapes.All.Length + 1;
    public static int ColourClasses => DemoColors.All.Length + 1;
    // Centre dx, dy from the patch and radius (in patches), and the centre's absolute x, y (−1..1
    // across the image, so the regression does not outweigh the class losses early on). The
    // absolute centre lets the decoder compare an object across frames by matching what it is,
    // not where its patches are: motion is that difference (DecoderProbe).
    public const int GeometryDims = 5;

    public required Tensor Shape { get; init; }     // [N·P] long, 0 = background
    public required Tensor Colour { get; init; }    // [N·P] long, 0 = background
    public required Tensor Geometry { get; init; }  // [N·P, 3] float
    public required Tensor OnObject { get; init; }  // [N·P] float, 1 where an object owns the patch
    public required Tensor Motion { get; init; }    // [N·P] long, the owner's Motion, <see cref="NoMotion"/> on background

    /// <summary>The motion label of a background patch: cross-entropy ignores it.</summary>
    public const long NoMotion = -100;

    /// <summary>Least fraction of a patch's pixels an object must cover to own it.</summary>
    const double MinCoverage = 0.1;
    static readonly Backdrop Black = Backdrop.Plain with { Color1 = (0, 0, 0), Color2 = (0, 0, 0) };

    /// <param name="scenes">The scene graph drawn in each image, in batch order.</param>
    /// <param name="grid">Patches per side.</param>
    /// <param name="imageSize">Pixels per side the model sees; coverage is measured at this size.</param>
    public static PatchTargets Build(IReadOnlyList<Scene> scenes, int grid, Device device, int imageSize = 64)
    {
        int p = grid * grid, n = scenes.Count;
        var shape = new long[n * p];
        var colour = new long[n * p];
        var geometry = new float[n * p * GeometryDims];
        var on = new float[n * p];
        var motion = Enumerable.Repeat(NoMotion, n * p).ToArray();
        double cell = 1.0 / grid;
        for (int s = 0; s < n; s++)
        {
            var best = new double[p];
            foreach (var o in scenes[s].Objects)
            {
                var cover = Coverage(o, grid, imageSize);
                int top = Array.IndexOf(cover, cover.Max());
                for (int i = 0; i < p; i++)
                {
                    // The object's best patch is always its own, so even the smallest object owns one.
                    bool owns = cover[i] > 0 && (cover[i] >= MinCoverage || i == top);
                    if (!owns || cover[i] <= best[i]) continue;
                    best[i] = cover[i];
                    int j = s * p + i, row = i / grid, col = i % grid;
                    shape[j] = (int)o.Shape + 1;
                    colour[j] = (int)o.Color + 1;
                    on[j] = 1;
                    motion[j] = (int)o.Motion;
                    int g = j * GeometryDims;
                    geometry[g] = (float)((o.X - (col + 0.5) * cell) / cell);
                    geometry[g + 1] = (float)((o.Y - (row + 0.5) * cell) / cell);
                    geometry[g + 2] = (float)(o.Radius / cell);
                    geometry[g + 3] = (float)(2 * o.X - 1);
                    geometry[g + 4] = (float)(2 * o.Y - 1);
                }
            }
        }
        return new PatchTargets
        {
            Shape = torch.tensor(shape, device: device),
            Colour = torch.tensor(colour, device: device),
            Geometry = torch.tensor(geometry, new long[] { n * p, GeometryDims }, device: device),
            OnObject = torch.tensor(on, device: device),
            Motion = torch.tensor(motion, device: device),
        };
    }

    /// <summary>Fraction of each patch's pixels the object covers, drawn alone on black.</summary>
    static double[] Coverage(SceneObject o, int grid, int imageSize)
    {
        using var img = SceneRenderer.Render(new Scene([o], Black), imageSize, imageSize);
        using var grey = img.CvtColor(ColorConversionCodes.BGR2GRAY);
        // Anti-aliased edges count by how much of the pixel the object covers.
        using var f = new Mat();
        grey.ConvertTo(f, MatType.CV_32F, 1.0 / Math.Max(1, MaxOf(grey))); // the brightest pixel is fully covered
        using var small = f.Resize(new OpenCvSharp.Size(grid, grid), 0, 0, InterpolationFlags.Area);
        var cover = new double[grid * grid];
        for (int r = 0; r < grid; r++)
            for (int c = 0; c < grid; c++) cover[r * grid + c] = small.At<float>(r, c);
        return cover;
    }

    static double MaxOf(Mat m) { m.MinMaxLoc(out double _, out double max); return max; }

    public void Dispose() { Shape.Dispose(); Colour.Dispose(); Geometry.Dispose(); OnObject.Dispose(); Motion.Dispose(); }
}
