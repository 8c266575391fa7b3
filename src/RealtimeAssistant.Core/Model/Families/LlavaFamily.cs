using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// LlavaForConditionalGeneration (llava-hf): a CLIP or SigLIP tower, the MLP projector and a
/// LLaMA or Qwen2 decoder. One image is <see cref="LlavaConfig.ImageTokens"/> copies of the image
/// token, at ordinary positions. The demo model is this family too.
/// </summary>
public sealed class LlavaFamily : IVisionLanguageModel
{
    readonly ImagePreprocessor _pre;
    public LlavaModel Model { get; }
    public LlavaConfig Config => Model.Config;
    public string ModelType => "llava";
    public LanguageModel Language => Model.language_model;
    public TextConfig Text => Model.Config.Text;
    public Device Device { get; }
    public ScalarType DType { get; }
    public string ImageMarker { get; }

    public LlavaFamily(LlavaModel model, PreprocessorConfig preprocessor, string imageMarker, Device device, ScalarType dtype)
    {
        Model = model;
        Device = device; DType = dtype;
        ImageMarker = imageMarker;
        _pre = new ImagePreprocessor(preprocessor, device, dtype);
    }

    public static IVisionLanguageModel Load(FamilyLoadContext c)
    {
        var cfg = LlavaConfig.Parse(c.Config, Path.Combine(c.Directory, "config.json"));
        var pre = PreprocessorConfig.Load(c.Directory, cfg.Vision);
        var marker = c.Tokenizer.IdToTokenOrNull(cfg.ImageTokenIndex) ?? "<image>";
        var model = new LlavaModel(cfg, c.Spec);
        try
        {
            LoadWeights(model, c.Weights, c.Compact);
            model.eval();
            return new LlavaFamily(model, pre, marker, c.Spec.Device, c.Spec.DType);
        }
        catch { model.Dispose(); throw; }
    }

    sealed class Pixels(Tensor t) : IPreparedImage
    {
        public Tensor Tensor { get; } = t;
        public void Dispose() => Tensor.Dispose();
    }

    public IPreparedImage Prepare(Mat bgr, ImageUse use)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        return new Pixels(_pre.Process(bgr).DetachFromDisposeScope());
    }

    public IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var pixels = images.Count == 1 ? ((Pixels)images[0]).Tensor : torch.cat(images.Select(i => ((Pixels)i).Tensor).ToArray(), 0);
        var feats = Model.EncodeImages(pixels); // [B, N, D]
        int n = (int)feats.size(1), side = Config.Vision.PatchesPerSide;
        var ids = Enumerable.Repeat(Config.ImageTokenIndex, n).ToArray();
        var slots = Enumerable.Range(0, n).ToArray();
        return Enumerable.Range(0, images.Count).Select(b => new EncodedImage
        {
            Features = feats[b].DetachFromDisposeScope(), TokenIds = ids, FeatureSlots = slots, GridH = side, GridW = side,
        }).ToList();
    }

    public int RunLength(Mat bgr, ImageUse use) => Config.ImageTokens;

    public nn.Module Module => Model;

    public (long Vision, long Decoder) ParameterCounts =>
        (Compaction.Parameters(Model.vision_tower, Model.multi_modal_projector), Compaction.Parameters(Model.language_model));

    /// <summary>Reads every parameter from the checkpoint (either naming generation); lists missing and unexpected tensors on mismatch.</summary>
    public static void LoadWeights(LlavaModel model, SafeTensorsReader weights, WeightFormat? compact = null) =>
        CheckpointLoader.Load(model, weights, CheckpointNames.ToModel, m => CheckpointNames.IsIgnorable(m, model.Config), compact);

    /// <summary>Writes the model as a llava-hf folder (weights + config); the tokenizer and preprocessor are the caller's.</summary>
    public static void Save(LlavaModel model, string dir, CheckpointNames.Generation generation = CheckpointNames.Generation.Old,
        long? maxShardBytes = null, JsonObject? extraConfig = null)
    {
        System.IO.Directory.CreateDirectory(dir);
        var tensors = model.named_parameters().Select(p => (CheckpointNames.ToCheckpoint(p.name, generation), (Tensor)p.parameter)).ToList();
        if (maxShardBytes is { } max) SafeTensorsWriter.WriteSharded(dir, tensors, max);
        else SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        var json = model.Config.ToJson();
        if (extraConfig != null) foreach (var (k, v) in extraConfig) json[k] = v?.DeepClone();
        File.WriteAllText(Path.Combine(dir, "config.json"), json.ToJsonString(new() { WriteIndented = true }));
    }

    public void Dispose() { _pre.Dispose(); Model.Dispose(); }
}
