using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Model.Families.Idefics3;

/// <summary>
/// config.json of an Idefics3ForConditionalGeneration or SmolVLMForConditionalGeneration
/// checkpoint: a SigLIP-style vision tower (variable resolution), the pixel-shuffle connector and
/// a LLaMA decoder. Both model types share every key; defaults are HF's class defaults.
/// </summary>
public sealed record Idefics3Config
{
    public static readonly string[] ModelTypes = { "idefics3", "smolvlm" };

    public required string ModelType { get; init; }
    public required VisionConfig Vision { get; init; }
    public required TextConfig Text { get; init; }
    /// <summary>Each side of the patch grid shrinks by this factor in the pixel shuffle; the channels grow by its square.</summary>
    public int ScaleFactor { get; init; } = 2;
    public int ImageTokenId { get; init; } = 128257;
    public string TorchDtype { get; init; } = "float32";

    public static Idefics3Config Parse(JsonNode root, string source)
    {
        if (root is not JsonObject) throw new UserError($"{source} is not a JSON object");
        var modelType = Json.Str(root, "model_type", source) ?? throw new UserError($"{source}: model_type is missing");
        if (!ModelTypes.Contains(modelType))
            throw new UserError($"{source}: model_type '{modelType}' is not one of {string.Join(", ", ModelTypes)}");
        JsonObject? Section(string key) => root[key] switch
        {
            null => null,
            JsonObject o => o,
            var other => throw new UserError($"{source}: {key} must be an object, got {other.GetValueKind()}"),
        };
        var v = Section("vision_config") ?? new JsonObject();
        var t = Section("text_config");
        var tType = (t is null ? null : Json.Str(t, "model_type", source)) ?? "llama";
        if (tType != "llama")
            throw new UserError($"{source}: text_config model_type '{tType}' is not supported for {modelType} (supported: llama)");
        var vision = ParseVision(v, Json.Str(v, "model_type", source) ?? $"{modelType}_vision", source);
        // With no text_config at all HF builds LlamaConfig(rms_norm_eps=1e-5); a given one keeps LlamaConfig's defaults.
        var text = t is null ? TextConfig.Parse(new JsonObject(), root, tType, source) with { RmsNormEps = 1e-5 } : TextConfig.Parse(t, root, tType, source);
        var c = new Idefics3Config
        {
            ModelType = modelType,
            Vision = vision,
            Text = text,
            ScaleFactor = Json.Int(root, "scale_factor", source) ?? 2,
            ImageTokenId = Json.Int(root, "image_token_id", source) ?? 128257,
            TorchDtype = Json.Str(root, "torch_dtype", source) ?? (t is null ? null : Json.Str(t, "torch_dtype", source)) ?? "float32",
        };
        if (c.ScaleFactor < 1) throw new UserError($"{source}: scale_factor must be ≥ 1, got {c.ScaleFactor}");
        if (c.ImageTokenId < 0) throw new UserError($"{source}: image_token_id must be ≥ 0, got {c.ImageTokenId}");
        return c;
    }

    /// <summary>Idefics3VisionConfig / SmolVLMVisionConfig: SigLIP-so400m-like defaults, which hub files partly omit (SmolVLM2's has no layer count: 12).</summary>
    static VisionConfig ParseVision(JsonObject v, string type, string source)
    {
        var filled = (JsonObject)v.DeepClone();
        foreach (var (key, value) in new (string, JsonNode)[]
        {
            ("hidden_size", 1152), ("intermediate_size", 3072), ("num_hidden_layers", 12), ("num_attention_heads", 16),
            ("image_size", 224), ("patch_size", 32), ("hidden_act", "gelu_pytorch_tanh"), ("layer_norm_eps", 1e-6),
        })
            if (filled[key] is null) filled[key] = value;
        var c = VisionConfig.Parse(filled, type, source); // the shared range checks
        if (c.NumChannels != 3) throw new UserError($"{source}: vision_config.num_channels must be 3 (RGB), got {c.NumChannels}");
        Activations.Get(c.HiddenAct);
        return c;
    }
}

/// <summary>
/// preprocessor_config.json (Idefics3ImageProcessor / SmolVLMImageProcessor) and processor_config.json's
/// image_seq_len: the longest-edge resize, the tile size (max_image_size) and the normalisation.
/// </summary>
public sealed record Idefics3ProcessorConfig
{
    public bool DoResize { get; init; } = true;
    /// <summary>size.longest_edge: the image's longest edge is scaled to this (up or down) first.</summary>
    public int LongestEdge { get; init; } = 4 * 364;
    /// <summary>max_image_size.longest_edge: the side of every tile and of the global image.</summary>
    public int TileSize { get; init; } = 364;
    public bool DoImageSplitting { get; init; } = true;
    public Imaging.PilResample.Filter Resample { get; init; } = Imaging.PilResample.Filter.Lanczos;
    public bool DoRescale { get; init; } = true;
    public double RescaleFactor { get; init; } = 1.0 / 255;
    public bool DoNormalize { get; init; } = true;
    public float[] Mean { get; init; } = { 0.5f, 0.5f, 0.5f };
    public float[] Std { get; init; } = { 0.5f, 0.5f, 0.5f };
    /// <summary>SmolVLM2's video_sampling.video_size.longest_edge (null: none given).</summary>
    public int? VideoLongestEdge { get; init; }
    /// <summary>The image-token count of one tile (processor_config.json; HF's processor default 169).</summary>
    public int ImageSeqLen { get; init; } = 169;
    /// <summary>The cap after the longest-edge resize: SmolVLM 4096, Idefics3 1820 (which also refuses a larger longest_edge).</summary>
    public int UpperBound { get; init; } = 4096;
    const int MaxTile = 4096;

    public static Idefics3ProcessorConfig Load(string dir, string modelType)
    {
        var path = Path.Combine(dir, "preprocessor_config.json");
        var c = new Idefics3ProcessorConfig { UpperBound = modelType == "idefics3" ? 1820 : 4096 };
        if (File.Exists(path))
        {
            var root = ReadObject(path);
            int? Edge(string key) => root[key] switch
            {
                null => null,
                JsonObject o => Json.Int(o, "longest_edge", path) ?? throw new UserError($"{path}: {key} needs longest_edge"),
                var other => throw new UserError($"{path}: {key} must be an object with longest_edge, got {other.ToJsonString()}"),
            };
            float[]? Floats(string key) => root[key] switch
            {
                null => null,
                JsonArray a when a.Count == 3 && a.All(x => x is JsonValue jv && jv.TryGetValue<double>(out _)) => a.Select(x => (float)x!.GetValue<double>()).ToArray(),
                JsonValue jv when jv.TryGetValue<double>(out var d) => new[] { (float)d, (float)d, (float)d },
                var other => throw new UserError($"{path}: {key} must be 3 numbers, got {other.ToJsonString()}"),
            };
            int resample = Json.Int(root, "resample", path) ?? 1;
            if (!Enum.IsDefined(typeof(Imaging.PilResample.Filter), resample))
                throw new UserError($"{path}: resample {resample} is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC)");
            int? video = root["video_sampling"] is JsonObject vs && vs["video_size"] is JsonObject size ? Json.Int(size, "longest_edge", path) : null;
            c = c with
            {
                DoResize = Json.Bool(root, "do_resize", path) ?? true,
                LongestEdge = Edge("size") ?? c.LongestEdge,
                TileSize = Edge("max_image_size") ?? c.TileSize,
                DoImageSplitting = Json.Bool(root, "do_image_splitting", path) ?? true,
                Resample = (Imaging.PilResample.Filter)resample,
                DoRescale = Json.Bool(root, "do_rescale", path) ?? true,
                RescaleFactor = Json.Dbl(root, "rescale_factor", path) ?? 1.0 / 255,
                DoNormalize = Json.Bool(root, "do_normalize", path) ?? true,
                Mean = Floats("image_mean") ?? c.Mean,
                Std = Floats("image_std") ?? c.Std,
                VideoLongestEdge = video,
            };
        }
        var processor = Path.Combine(dir, "processor_config.json");
        if (File.Exists(processor) && Json.Int(ReadObject(processor), "image_seq_len", processor) is { } seq)
        {
            if (seq < 1) throw new UserError($"{processor}: image_seq_len must be ≥ 1, got {seq}");
            c = c with { ImageSeqLen = seq };
        }
        if (c.LongestEdge < 1 || c.TileSize < 1 || c.VideoLongestEdge is < 1)
            throw new UserError($"{path}: sizes must be positive (size {c.LongestEdge}, max_image_size {c.TileSize}, video_size {c.VideoLongestEdge})");
        if (c.TileSize > MaxTile) throw new UserError($"{path}: max_image_size.longest_edge {c.TileSize} is over {MaxTile} (HF's largest image)");
        if (c.Std.Any(s => s == 0 || !float.IsFinite(s)) || c.Mean.Any(m => !float.IsFinite(m)) || !(c.RescaleFactor > 0) || double.IsInfinity(c.RescaleFactor))
            throw new UserError($"{path}: image_mean, image_std and rescale_factor must be finite, the std and factor non-zero");
        if (c.DoResize && c.LongestEdge > c.UpperBound)
            throw new UserError($"{path}: size.longest_edge {c.LongestEdge} is larger than {modelType}'s limit {c.UpperBound}");
        return c;
    }

    static JsonObject ReadObject(string path) =>
        JsonFile.Read(path, Path.GetFileName(path)) as JsonObject ?? throw new UserError($"{path} is not a JSON object");
}
