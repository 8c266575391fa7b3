using System.Text.Json;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.LlavaOneVision;

/// <summary>preprocessor_config.json of LlavaOnevisionImageProcessor (or its video processor's file), with the class defaults.</summary>
public sealed record OneVisionProcessorConfig
{
    public int Height { get; init; } = 384;
    public int Width { get; init; } = 384;
    public float[] Mean { get; init; } = { 0.48145466f, 0.4578275f, 0.40821073f };
    public float[] Std { get; init; } = { 0.26862954f, 0.26130258f, 0.27577711f };
    public float RescaleFactor { get; init; } = 1f / 255f;
    public bool DoRescale { get; init; } = true;
    public bool DoNormalize { get; init; } = true;
    public PilResample.Filter Resample { get; init; } = PilResample.Filter.Bicubic;
    /// <summary>The processor's own image_grid_pinpoints (null: none in the file).</summary>
    public (int H, int W)[]? Pinpoints { get; init; }

    /// <summary>Reads <paramref name="file"/> in the folder; the class defaults when it is absent.</summary>
    public static OneVisionProcessorConfig Load(string dir, string file = "preprocessor_config.json")
    {
        var path = Path.Combine(dir, file);
        if (!File.Exists(path)) return new OneVisionProcessorConfig();
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new UserError($"{path} is not a JSON object"); }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
        var d = new OneVisionProcessorConfig();
        int h = d.Height, w = d.Width;
        switch (root["size"])
        {
            case null: break;
            case JsonObject o when Json.Int(o, "height", path) is { } hh && Json.Int(o, "width", path) is { } ww: (h, w) = (hh, ww); break;
            case JsonObject o when Json.Int(o, "shortest_edge", path) is { } s: (h, w) = (s, s); break; // the processor's size_tuple
            case var other: throw new UserError($"{path}: size must hold height and width (or shortest_edge), got {other.ToJsonString()}");
        }
        if (h < 1 || w < 1) throw new UserError($"{path}: size must be positive");
        float[] Arr(string k, float[] def)
        {
            if (root[k] is null) return def;
            if (root[k] is JsonArray a && a.Count == 3 && a.All(x => x is JsonValue v && v.TryGetValue<double>(out _)))
                return a.Select(x => (float)x!.GetValue<double>()).ToArray();
            if (root[k] is JsonValue one && one.TryGetValue<double>(out var single)) return new[] { (float)single, (float)single, (float)single };
            throw new UserError($"{path}: {k} must be three numbers");
        }
        var std = Arr("image_std", d.Std);
        if (std.Any(x => x == 0)) throw new UserError($"{path}: image_std must not be 0");
        return new OneVisionProcessorConfig
        {
            Height = h, Width = w,
            Mean = Arr("image_mean", d.Mean), Std = std,
            RescaleFactor = (float)(Json.Dbl(root, "rescale_factor", path) ?? 1.0 / 255),
            DoRescale = Json.Bool(root, "do_rescale", path) ?? true,
            DoNormalize = Json.Bool(root, "do_normalize", path) ?? true,
            Resample = Json.Int(root, "resample", path) is { } r ? PilResample.Parse(r, path) : PilResample.Filter.Bicubic,
            Pinpoints = OneVisionConfig.ParsePinpoints(root["image_grid_pinpoints"], path),
        };
    }
}

/// <summary>How an image was laid out for the tower.</summary>
public enum OneVisionLayout
{
    /// <summary>One image alone in its prompt: the base tile (the image squashed to a square) and the pinpoint's crops.</summary>
    AnyRes,
    /// <summary>One of several images in a prompt: padded to a square (the mean colour) and taken whole, one tile.</summary>
    Single,
    /// <summary>A video frame: squashed to one tile; the tower's grid is pooled 2× afterwards.</summary>
    VideoFrame,
}

/// <summary>Tiles [N, 3, S, S] of one image on the model's device, its size and its layout.</summary>
public sealed class OneVisionPixels : IPreparedImage
{
    public required Tensor Tiles { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required OneVisionLayout Layout { get; init; }
    public void Dispose() => Tiles.Dispose();
}

/// <summary>
/// LlavaOnevisionImageProcessor and its video processor (the slow, PIL path transformers 4.50 loads):
/// resize with PIL's filter, pad, cut into tiles, rescale and normalise. The byte tiles go to the
/// device in one upload and the float maths runs there.
/// </summary>
public sealed class OneVisionProcessor : IDisposable
{
    readonly OneVisionProcessorConfig _image, _video;
    readonly (int H, int W)[] _pinpoints;
    readonly Device _device;
    readonly ScalarType _dtype;
    readonly Tensor _mean, _std, _videoMean, _videoStd;
    public int TileSize { get; }

    public OneVisionProcessor(OneVisionProcessorConfig image, OneVisionProcessorConfig video, (int H, int W)[] pinpoints, int tileSize, Device device, ScalarType dtype)
    {
        if (image.Height != tileSize || image.Width != tileSize)
            throw new UserError($"preprocessor_config.json: size {image.Height}x{image.Width} is not the vision tower's image_size {tileSize}");
        if (video.Height != tileSize || video.Width != tileSize)
            throw new UserError($"the video processor's size {video.Height}x{video.Width} is not the vision tower's image_size {tileSize}");
        (_image, _video, _pinpoints, TileSize, _device, _dtype) = (image, video, pinpoints, tileSize, device, dtype);
        (_mean, _std) = Stats(image);
        (_videoMean, _videoStd) = Stats(video);
    }

    (Tensor, Tensor) Stats(OneVisionProcessorConfig c) =>
        (torch.tensor(c.Mean, device: _device).view(1, 3, 1, 1).DetachFromDisposeScope(),
         torch.tensor(c.Std, device: _device).view(1, 3, 1, 1).DetachFromDisposeScope());

    /// <summary>A BGR image as the tower's tiles in the given layout.</summary>
    public OneVisionPixels Process(Mat bgr, OneVisionLayout layout)
    {
        if (bgr.Empty()) throw new UserError("empty image");
        if (bgr.Type() != MatType.CV_8UC3) throw new UserError($"expected an 8-bit BGR image, got {bgr.Type()}");
        using var rgb = bgr.CvtColor(ColorConversionCodes.BGR2RGB);
        var tiles = layout switch
        {
            OneVisionLayout.AnyRes => AnyResTiles(rgb),
            OneVisionLayout.Single => new List<Mat> { SquareTile(rgb) },
            _ => new List<Mat> { PilResample.Resize(rgb, TileSize, TileSize, _video.Resample) },
        };
        try { return new OneVisionPixels { Tiles = ToTensor(tiles, layout), Height = rgb.Rows, Width = rgb.Cols, Layout = layout }; }
        finally { foreach (var t in tiles) t.Dispose(); }
    }

    /// <summary>
    /// get_image_patches: the base (the whole image resized to one tile), then the pinpoint's crops
    /// row by row. The fitted image sits in a canvas of the whole pinpoint, the odd padding pixel
    /// after it, as LLaVA's own code and later transformers do (4.50 padded both sides by the
    /// floor and stretched the short edge tiles; see the tests).
    /// </summary>
    public List<Mat> AnyResTiles(Mat rgb)
    {
        var best = AnyRes.SelectBestResolution(rgb.Rows, rgb.Cols, _pinpoints);
        var fitted = AnyRes.FitInto(rgb.Rows, rgb.Cols, best);
        var (top, left) = AnyRes.PadOffsets(fitted, best);
        var tiles = new List<Mat> { PilResample.Resize(rgb, TileSize, TileSize, _image.Resample) };
        using var resized = PilResample.Resize(rgb, fitted.W, fitted.H, _image.Resample);
        using var padded = new Mat(best.H, best.W, MatType.CV_8UC3, OpenCvSharp.Scalar.All(0));
        using (var roi = new Mat(padded, new Rect(left, top, fitted.W, fitted.H))) resized.CopyTo(roi);
        for (int y = 0; y < best.H; y += TileSize)
            for (int x = 0; x < best.W; x += TileSize)
                using (var crop = new Mat(padded, new Rect(x, y, TileSize, TileSize)))
                    tiles.Add(crop.Clone());
        return tiles;
    }

    /// <summary>pad_to_square with the mean colour (int(m · 255)), then resized to one tile.</summary>
    public Mat SquareTile(Mat rgb)
    {
        int side = Math.Max(rgb.Rows, rgb.Cols);
        var fill = new OpenCvSharp.Scalar((int)(_image.Mean[0] * 255.0), (int)(_image.Mean[1] * 255.0), (int)(_image.Mean[2] * 255.0));
        using var square = new Mat(side, side, MatType.CV_8UC3, fill);
        var (top, left) = ((side - rgb.Rows) / 2, (side - rgb.Cols) / 2);
        using (var roi = new Mat(square, new Rect(left, top, rgb.Cols, rgb.Rows))) rgb.CopyTo(roi);
        return PilResample.Resize(square, TileSize, TileSize, _image.Resample);
    }

    /// <summary>RGB tiles of the tower's size → [N, 3, S, S] rescaled and normalised with the image (or, for frames, the video) processor's settings.</summary>
    public Tensor ToTensor(IReadOnlyList<Mat> tiles, OneVisionLayout layout)
    {
        bool video = layout == OneVisionLayout.VideoFrame;
        return ToTensor(tiles, video ? _video : _image, video ? _videoMean : _mean, video ? _videoStd : _std);
    }

    Tensor ToTensor(IReadOnlyList<Mat> tiles, OneVisionProcessorConfig c, Tensor mean, Tensor std)
    {
        using var scope = torch.NewDisposeScope();
        int s = TileSize;
        for (int i = 0; i < tiles.Count; i++)
            if (tiles[i].Rows != s || tiles[i].Cols != s || tiles[i].Type() != MatType.CV_8UC3) throw new ArgumentException($"tile {i} is not {s}x{s} RGB");
        var nhwc = Imaging.PixelTensor.FromMats(tiles).to(_device);
        var x = nhwc.permute(0, 3, 1, 2).to_type(ScalarType.Float32);
        if (c.DoRescale) x = x.TimesNumber(c.RescaleFactor);
        if (c.DoNormalize) x = (x - mean) / std;
        return x.to_type(_dtype).contiguous().MoveToOuterDisposeScope();
    }

    public void Dispose() { _mean.Dispose(); _std.Dispose(); _videoMean.Dispose(); _videoStd.Dispose(); }
}
