using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.LlavaOneVision;

/// <summary>
/// LLaVA-OneVision (llava_onevision): a SigLIP tower, LLaVA's projector and a Qwen2 decoder at
/// ordinary positions. A still alone in its prompt is anyres (base tile + the best pinpoint's
/// crops, unpadded, anyres_max_N, an image_newline per row); one of several is one padded tile
/// and a newline; a video frame is one tile pooled 2× (⌈27/2⌉² = 196 tokens at 384 px) and a
/// newline: a one-frame video, the unit a stream reads.
/// </summary>
public sealed class LlavaOneVisionFamily : IVisionLanguageModel
{
    readonly OneVisionProcessor _processor;
    public OneVisionModel Model { get; }
    public OneVisionConfig Config => Model.Config;
    public OneVisionProcessor Processor => _processor;
    public string ModelType => "llava_onevision";
    public LanguageModel Language => Model.language_model;
    public TextConfig Text => Config.Text;
    public Device Device { get; }
    public ScalarType DType { get; }
    public string ImageMarker { get; }

    LlavaOneVisionFamily(OneVisionModel model, OneVisionProcessor processor, string marker, Device device, ScalarType dtype)
    {
        (Model, _processor, ImageMarker, Device, DType) = (model, processor, marker, device, dtype);
    }

    public static IVisionLanguageModel Load(FamilyLoadContext c)
    {
        var source = Path.Combine(c.Directory, "config.json");
        var cfg = OneVisionConfig.Parse(c.Config, source);
        var image = OneVisionProcessorConfig.Load(c.Directory);
        var video = File.Exists(Path.Combine(c.Directory, "video_preprocessor_config.json"))
            ? OneVisionProcessorConfig.Load(c.Directory, "video_preprocessor_config.json") : image;
        // The processor tiles by its pinpoints and the model regroups the tiles by the config's: they must agree.
        if (image.Pinpoints is { } pp && !pp.SequenceEqual(cfg.Pinpoints))
            throw new UserError($"{Path.Combine(c.Directory, "preprocessor_config.json")}: image_grid_pinpoints differ from config.json's");
        var marker = c.Tokenizer.IdToTokenOrNull(cfg.ImageTokenIndex) ?? "<image>";
        var processor = new OneVisionProcessor(image, video, cfg.Pinpoints, cfg.TileSize, c.Spec.Device, c.Spec.DType);
        var model = new OneVisionModel(cfg, c.Spec);
        try
        {
            LoadWeights(model, c.Weights, c.Compact);
            model.eval();
            return new LlavaOneVisionFamily(model, processor, marker, c.Spec.Device, c.Spec.DType);
        }
        catch { model.Dispose(); processor.Dispose(); throw; }
    }

    /// <summary>Every parameter from the checkpoint (either naming generation); missing and unexpected tensors listed on mismatch.</summary>
    public static void LoadWeights(OneVisionModel model, SafeTensorsReader weights, WeightFormat? compact = null) =>
        CheckpointLoader.Load(model, weights, CheckpointNames.ToModel, m => CheckpointNames.IsIgnorable(m, model.Config.Llava), compact);

    public IPreparedImage Prepare(Mat bgr, ImageUse use)
    {
        using var _ = torch.inference_mode();
        return _processor.Process(bgr, use switch
        {
            ImageUse.VideoFrame => OneVisionLayout.VideoFrame,
            ImageUse.OneOfSeveral => OneVisionLayout.Single,
            _ => OneVisionLayout.AnyRes,
        });
    }

    public IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var pixels = images.Select(i => i as OneVisionPixels ?? throw new ArgumentException("not an image this model prepared")).ToList();
        // Every tile of every image through the tower at once: they all have the tower's size.
        var all = pixels.Count == 1 ? pixels[0].Tiles : torch.cat(pixels.Select(p => p.Tiles).ToArray(), 0);
        var features = Model.TileFeatures(all);
        var result = new List<EncodedImage>(pixels.Count);
        long at = 0;
        foreach (var p in pixels)
        {
            long n = p.Tiles.size(0);
            var own = features.narrow(0, at, n);
            at += n;
            result.Add(p.Layout switch
            {
                OneVisionLayout.AnyRes => AnyResImage(own, p),
                OneVisionLayout.Single => GridImage(Model.PackSingle(own), Config.TileSide, Config.ImageTokenIndex),
                _ => VideoImage(own),
            });
        }
        return result;
    }

    EncodedImage AnyResImage(Tensor tiles, OneVisionPixels p)
    {
        var (features, h, w) = Model.PackAnyRes(tiles, p.Height, p.Width);
        int baseCount = Config.TileSide * Config.TileSide;
        // The grid's cells in row order; the base tile and the newlines are not cells of the main grid.
        var cells = Enumerable.Repeat(-1, baseCount)
            .Concat(Enumerable.Range(0, h).SelectMany(r => Enumerable.Range(0, w).Select(c => r * w + c).Append(-1)))
            .ToArray();
        return Make(features, Config.ImageTokenIndex, h, w, cells);
    }

    EncodedImage VideoImage(Tensor tile)
    {
        var (features, side) = Model.PackVideoFrame(tile);
        return GridImage(features, side, Config.VideoTokenIndex);
    }

    /// <summary>A square grid's rows then one image_newline.</summary>
    static EncodedImage GridImage(Tensor features, int side, int tokenId) =>
        Make(features, tokenId, side, side, Enumerable.Range(0, side * side).Append(-1).ToArray());

    static EncodedImage Make(Tensor features, int tokenId, int gridH, int gridW, int[] cells)
    {
        int n = (int)features.size(0);
        return new EncodedImage
        {
            Features = features.DetachFromDisposeScope(), TokenIds = Enumerable.Repeat(tokenId, n).ToArray(),
            FeatureSlots = Enumerable.Range(0, n).ToArray(), GridH = gridH, GridW = gridW, GridCell = cells,
        };
    }

    public nn.Module Module => Model;

    public (long Vision, long Decoder) ParameterCounts =>
        (Compaction.Parameters(Model.vision_tower, Model.multi_modal_projector) + Model.image_newline.numel(), Compaction.Parameters(Model.language_model));

    public void Dispose() { _processor.Dispose(); Model.Dispose(); }
}
