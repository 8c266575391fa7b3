using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>The vision tower's config (CLIPVisionConfig or SiglipVisionConfig, HF defaults).</summary>
public sealed record VisionConfig
{
    public string ModelType { get; init; } = "clip_vision_model";
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int NumChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 224;
    public int PatchSize { get; init; } = 32;
    public string HiddenAct { get; init; } = "quick_gelu";
    public double LayerNormEps { get; init; } = 1e-5;

    public bool IsSiglip => ModelType == "siglip_vision_model";
    public int PatchesPerSide => ImageSize / PatchSize;
    public int NumPatches => PatchesPerSide * PatchesPerSide;
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>The decoder's config (LlamaConfig or Qwen2Config, HF defaults).</summary>
public sealed record TextConfig
{
    public string ModelType { get; init; } = "llama";
    public int VocabSize { get; init; } = 32000;
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    public int NumKeyValueHeads { get; init; } = 32;
    public int? HeadDimOverride { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    public bool AttentionBias { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    /// <summary>Qwen2 always has q/k/v biases; LLaMA only with attention_bias.</summary>
    public bool QkvBias => ModelType == "qwen2" || AttentionBias;
}

/// <summary>config.json of a LlavaForConditionalGeneration checkpoint.</summary>
public sealed record LlavaConfig
{
    public static readonly string[] SupportedVisionTypes = { "clip_vision_model", "siglip_vision_model" };
    public static readonly string[] SupportedTextTypes = { "llama", "qwen2" };

    public VisionConfig Vision { get; init; } = new();
    public TextConfig Text { get; init; } = new();
    public int ImageTokenIndex { get; init; } = 32000;
    /// <summary>Hidden-state indices taken from the vision tower (negative counts from the end).</summary>
    public int[] VisionFeatureLayers { get; init; } = { -2 };
    public string VisionFeatureSelectStrategy { get; init; } = "default";
    public string ProjectorHiddenAct { get; init; } = "gelu";
    public bool ProjectorBias { get; init; } = true;
    public string TorchDtype { get; init; } = "float32";

    /// <summary>Visual tokens one image becomes after feature selection.</summary>
    public int ImageTokens => Vision.NumPatches + (VisionFeatureSelectStrategy == "full" && !Vision.IsSiglip ? 1 : 0);

    public static LlavaConfig Load(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new UserError($"no config.json in {modelDir}");
        return Parse(JsonFile.Read(path, "config.json"), path);
    }

    public static LlavaConfig Parse(JsonNode root, string source = "config.json")
    {
        if (root is not JsonObject) throw new UserError($"{source} is not a JSON object");
        var modelType = Str(root, "model_type");
        if (modelType != null && modelType != "llava")
            throw new UserError($"{source}: unsupported model_type '{modelType}' (supported: llava, with vision towers {string.Join(", ", SupportedVisionTypes)} and decoders {string.Join(", ", SupportedTextTypes)})");
        var v = Section(source, root, "vision_config");
        var t = Section(source, root, "text_config");
        var vType = Str(v, "model_type") ?? "clip_vision_model";
        if (!SupportedVisionTypes.Contains(vType))
            throw new UserError($"{source}: unsupported vision model_type '{vType}' (supported: {string.Join(", ", SupportedVisionTypes)})");
        var tType = Str(t, "model_type") ?? "llama";
        if (!SupportedTextTypes.Contains(tType))
            throw new UserError($"{source}: unsupported text model_type '{tType}' (supported: {string.Join(", ", SupportedTextTypes)})");

        var siglip = vType == "siglip_vision_model";
        var vision = new VisionConfig
        {
            ModelType = vType,
            HiddenSize = Int(source, v, "hidden_size") ?? 768,
            IntermediateSize = Int(source, v, "intermediate_size") ?? 3072,
            NumHiddenLayers = Int(source, v, "num_hidden_layers") ?? 12,
            NumAttentionHeads = Int(source, v, "num_attention_heads") ?? 12,
            NumChannels = Int(source, v, "num_channels") ?? 3,
            ImageSize = Int(source, v, "image_size") ?? 224,
            PatchSize = Int(source, v, "patch_size") ?? (siglip ? 16 : 32),
            HiddenAct = Str(v, "hidden_act") ?? (siglip ? "gelu_pytorch_tanh" : "quick_gelu"),
            LayerNormEps = Dbl(v, "layer_norm_eps") ?? (siglip ? 1e-6 : 1e-5),
        };
        var qwen = tType == "qwen2";
        var heads = Int(source, t, "num_attention_heads") ?? 32;
        var text = new TextConfig
        {
            ModelType = tType,
            VocabSize = Int(source, t, "vocab_size") ?? (qwen ? 151936 : 32000),
            HiddenSize = Int(source, t, "hidden_size") ?? 4096,
            IntermediateSize = Int(source, t, "intermediate_size") ?? (qwen ? 22016 : 11008),
            NumHiddenLayers = Int(source, t, "num_hidden_layers") ?? 32,
            NumAttentionHeads = heads,
            NumKeyValueHeads = Int(source, t, "num_key_value_heads") ?? heads,
            HeadDimOverride = Int(source, t, "head_dim"),
            RmsNormEps = Dbl(t, "rms_norm_eps") ?? 1e-6,
            RopeTheta = Dbl(t, "rope_theta") ?? 10000,
            MaxPositionEmbeddings = Int(source, t, "max_position_embeddings") ?? (qwen ? 32768 : 2048),
            TieWordEmbeddings = Bool(t, "tie_word_embeddings") ?? Bool(root, "tie_word_embeddings") ?? false,
            AttentionBias = Bool(t, "attention_bias") ?? false,
            HiddenAct = Str(t, "hidden_act") ?? "silu",
            BosTokenId = Int(source, t, "bos_token_id"),
            EosTokenId = Int(source, t, "eos_token_id"),
        };
        Check(source, vision.HiddenSize, 1, 1 << 16, "vision_config.hidden_size");
        Check(source, vision.IntermediateSize, 1, 1 << 18, "vision_config.intermediate_size");
        Check(source, vision.NumHiddenLayers, 1, 1024, "vision_config.num_hidden_layers");
        Check(source, vision.NumAttentionHeads, 1, vision.HiddenSize, "vision_config.num_attention_heads");
        Check(source, vision.NumChannels, 1, 16, "vision_config.num_channels");
        Check(source, vision.ImageSize, 1, 16384, "vision_config.image_size");
        Check(source, vision.PatchSize, 1, vision.ImageSize, "vision_config.patch_size");
        if (vision.HiddenSize % vision.NumAttentionHeads != 0)
            throw new UserError($"{source}: vision hidden_size {vision.HiddenSize} is not divisible by num_attention_heads {vision.NumAttentionHeads}");
        Check(source, text.VocabSize, 1, 10_000_000, "text_config.vocab_size");
        Check(source, text.HiddenSize, 1, 1 << 17, "text_config.hidden_size");
        Check(source, text.IntermediateSize, 1, 1 << 19, "text_config.intermediate_size");
        Check(source, text.NumHiddenLayers, 1, 1024, "text_config.num_hidden_layers");
        Check(source, text.NumAttentionHeads, 1, text.HiddenSize, "text_config.num_attention_heads");
        Check(source, text.NumKeyValueHeads, 1, text.NumAttentionHeads, "text_config.num_key_value_heads");
        if (text.HeadDimOverride is { } hd) Check(source, hd, 1, 1 << 12, "text_config.head_dim");
        Check(source, text.MaxPositionEmbeddings, 1, 1 << 24, "text_config.max_position_embeddings");
        foreach (var (value, key) in new[] { (vision.LayerNormEps, "vision_config.layer_norm_eps"), (text.RmsNormEps, "text_config.rms_norm_eps"), (text.RopeTheta, "text_config.rope_theta") })
            if (!(value > 0) || double.IsInfinity(value)) throw new UserError($"{source}: {key} must be a positive number, got {value}");
        if (text.BosTokenId is < 0 || text.EosTokenId is < 0) throw new UserError($"{source}: token ids must be ≥ 0");

        if (text.HiddenSize % text.NumAttentionHeads != 0 && text.HeadDimOverride == null)
            throw new UserError($"{source}: hidden_size {text.HiddenSize} is not divisible by num_attention_heads {text.NumAttentionHeads}");
        if (text.NumAttentionHeads % text.NumKeyValueHeads != 0)
            throw new UserError($"{source}: num_attention_heads {text.NumAttentionHeads} is not a multiple of num_key_value_heads {text.NumKeyValueHeads}");
        if (vision.ImageSize % vision.PatchSize != 0)
            throw new UserError($"{source}: image_size {vision.ImageSize} is not a multiple of patch_size {vision.PatchSize}");

        int[] layers = root["vision_feature_layer"] switch
        {
            JsonArray arr when arr.Count is > 0 and <= 64 => arr.Select(x => x is JsonValue xv && xv.TryGetValue<int>(out var l) ? l
                : throw new UserError($"{source}: vision_feature_layer holds {x?.ToJsonString() ?? "null"}, not a layer index")).ToArray(),
            JsonValue val when val.TryGetValue<int>(out var l) => new[] { l },
            null => new[] { -2 },
            var other => throw new UserError($"{source}: vision_feature_layer must be a layer index or a list of them, got {other.ToJsonString()}"),
        };
        foreach (var l in layers)
            if (l < -(vision.NumHiddenLayers + 1) || l > vision.NumHiddenLayers)
                throw new UserError($"{source}: vision_feature_layer {l} is outside the tower's {vision.NumHiddenLayers} layers");
        var strategy = Str(root, "vision_feature_select_strategy") ?? "default";
        if (strategy is not ("default" or "full"))
            throw new UserError($"{source}: vision_feature_select_strategy '{strategy}' is not supported (default, full)");
        var imageToken = Int(source, root, "image_token_index") ?? Int(source, root, "image_token_id") ?? 32000;
        if (imageToken < 0) throw new UserError($"{source}: image_token_index must be ≥ 0, got {imageToken}");
        return new LlavaConfig
        {
            Vision = vision,
            Text = text,
            ImageTokenIndex = imageToken,
            VisionFeatureLayers = layers,
            VisionFeatureSelectStrategy = strategy,
            ProjectorHiddenAct = Str(root, "projector_hidden_act") ?? "gelu",
            ProjectorBias = Bool(root, "multimodal_projector_bias") ?? true,
            TorchDtype = Str(root, "torch_dtype") ?? Str(t, "torch_dtype") ?? "float32",
        };
    }

    /// <summary>Serialises in the llava-hf layout (used by the demo model and the tests).</summary>
    public JsonObject ToJson() => new()
    {
        ["architectures"] = new JsonArray("LlavaForConditionalGeneration"),
        ["model_type"] = "llava",
        ["image_token_index"] = ImageTokenIndex,
        ["vision_feature_layer"] = VisionFeatureLayers.Length == 1 ? VisionFeatureLayers[0] : new JsonArray(VisionFeatureLayers.Select(x => (JsonNode)x).ToArray()),
        ["vision_feature_select_strategy"] = VisionFeatureSelectStrategy,
        ["projector_hidden_act"] = ProjectorHiddenAct,
        ["multimodal_projector_bias"] = ProjectorBias,
        ["torch_dtype"] = TorchDtype,
        ["vision_config"] = new JsonObject
        {
            ["model_type"] = Vision.ModelType,
            ["hidden_size"] = Vision.HiddenSize,
            ["intermediate_size"] = Vision.IntermediateSize,
            ["num_hidden_layers"] = Vision.NumHiddenLayers,
            ["num_attention_heads"] = Vision.NumAttentionHeads,
            ["num_channels"] = Vision.NumChannels,
            ["image_size"] = Vision.ImageSize,
            ["patch_size"] = Vision.PatchSize,
            ["hidden_act"] = Vision.HiddenAct,
            ["layer_norm_eps"] = Vision.LayerNormEps,
        },
        ["text_config"] = new JsonObject
        {
            ["model_type"] = Text.ModelType,
            ["vocab_size"] = Text.VocabSize,
            ["hidden_size"] = Text.HiddenSize,
            ["intermediate_size"] = Text.IntermediateSize,
            ["num_hidden_layers"] = Text.NumHiddenLayers,
            ["num_attention_heads"] = Text.NumAttentionHeads,
            ["num_key_value_heads"] = Text.NumKeyValueHeads,
            ["rms_norm_eps"] = Text.RmsNormEps,
            ["rope_theta"] = Text.RopeTheta,
            ["max_position_embeddings"] = Text.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = Text.TieWordEmbeddings,
            ["hidden_act"] = Text.HiddenAct,
            ["bos_token_id"] = Text.BosTokenId,
            ["eos_token_id"] = Text.EosTokenId,
        },
    };

    static JsonNode Section(string source, JsonNode root, string key) => root[key] switch
    {
        null => new JsonObject(),
        JsonObject o => o,
        var other => throw new UserError($"{source}: {key} must be an object, got {other.ToJsonString()[..Math.Min(40, other.ToJsonString().Length)]}"),
    };

    static void Check(string source, int value, int min, int max, string key)
    {
        if (value < min || value > max) throw new UserError($"{source}: {key} must be {min}..{max}, got {value}");
    }

    static string? Str(JsonNode n, string k) => n[k] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
    static bool? Bool(JsonNode n, string k) => n[k] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;
    /// <summary>A whole number (4096 or 4096.0); null when absent; a UserError when it is something else.</summary>
    static int? Int(string source, JsonNode n, string k)
    {
        switch (n[k])
        {
            case null: return null;
            case JsonValue v when v.TryGetValue<int>(out var i): return i;
            case JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue: return (int)d;
            case var other: throw new UserError($"{source}: {k} must be a whole number, got {Clip(other.ToJsonString())}");
        }
    }
    static double? Dbl(JsonNode n, string k) => n[k] is JsonValue v && v.TryGetValue<double>(out var d) ? d : null;
    static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";
}

/// <summary>preprocessor_config.json: resize, centre crop and normalisation for the vision tower.</summary>
public sealed record PreprocessorConfig
{
    public int ResizeShortestEdge { get; init; }
    public int ResizeHeight { get; init; }
    public int ResizeWidth { get; init; }
    public bool DoCenterCrop { get; init; }
    public int CropHeight { get; init; }
    public int CropWidth { get; init; }
    public float[] Mean { get; init; } = { 0.48145466f, 0.4578275f, 0.40821073f };
    public float[] Std { get; init; } = { 0.26862954f, 0.26130258f, 0.27577711f };
    public float RescaleFactor { get; init; } = 1f / 255f;

    /// <summary>The config implied by the vision tower alone (no preprocessor_config.json).</summary>
    public static PreprocessorConfig Default(VisionConfig v) => v.IsSiglip
        ? new() { ResizeHeight = v.ImageSize, ResizeWidth = v.ImageSize, Mean = new[] { .5f, .5f, .5f }, Std = new[] { .5f, .5f, .5f } }
        : new() { ResizeShortestEdge = v.ImageSize, DoCenterCrop = true, CropHeight = v.ImageSize, CropWidth = v.ImageSize };

    /// <summary>Largest resize or crop edge a preprocessor config may ask for (a frame is never bigger).</summary>
    public const int MaxEdge = 8192;

    public static PreprocessorConfig Load(string modelDir, VisionConfig vision)
    {
        var path = Path.Combine(modelDir, "preprocessor_config.json");
        if (!File.Exists(path)) return Default(vision);
        if (JsonFile.Read(path, "preprocessor_config.json") is not JsonObject root) throw new UserError($"{path} is not a JSON object");
        int Edge(JsonNode? node, string key, int fallback) => node switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<int>(out var i) && i is >= 0 and <= MaxEdge => i,
            JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= 0 and <= MaxEdge => (int)d,
            _ => throw new UserError($"{path}: {key} must be a size 0..{MaxEdge}, got {Clip(node.ToJsonString())}"),
        };
        var d = Default(vision);
        int shortest = 0, h = 0, w = 0;
        switch (root["size"])
        {
            case JsonObject o:
                shortest = Edge(o["shortest_edge"], "size.shortest_edge", 0);
                h = Edge(o["height"], "size.height", 0);
                w = Edge(o["width"], "size.width", 0);
                break;
            case JsonValue val: shortest = Edge(val, "size", 0); break;
        }
        if (shortest == 0 && h == 0) { shortest = d.ResizeShortestEdge; h = d.ResizeHeight; w = d.ResizeWidth; }
        if (shortest == 0 && (h == 0 || w == 0)) throw new UserError($"{path}: size needs shortest_edge, or both height and width");
        int ch = vision.ImageSize, cw = vision.ImageSize;
        switch (root["crop_size"])
        {
            case JsonObject o: ch = Edge(o["height"], "crop_size.height", ch); cw = Edge(o["width"], "crop_size.width", cw); break;
            case JsonValue val: ch = cw = Edge(val, "crop_size", ch); break;
        }
        var crop = root["do_center_crop"] switch
        {
            null => root["crop_size"] != null,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            var other => throw new UserError($"{path}: do_center_crop must be true or false, got {Clip(other.ToJsonString())}"),
        };
        if (crop && (ch < 1 || cw < 1)) throw new UserError($"{path}: crop_size must be at least 1×1");
        float[] Arr(string k, float[] def, bool positive)
        {
            if (root[k] is null) return def;
            if (root[k] is not JsonArray a || a.Count != vision.NumChannels)
                throw new UserError($"{path}: {k} must be a list of {vision.NumChannels} numbers, one per channel");
            return a.Select(x => x is JsonValue v && v.TryGetValue<double>(out var f) && double.IsFinite(f) && (!positive || f > 0) && Math.Abs(f) < 1e6 ? (float)f
                : throw new UserError($"{path}: {k} holds {Clip(x?.ToJsonString() ?? "null")}, not a {(positive ? "positive " : "")}number")).ToArray();
        }
        var rescale = root["rescale_factor"] switch
        {
            null => 1f / 255f,
            JsonValue v when v.TryGetValue<double>(out var f) && double.IsFinite(f) && Math.Abs(f) < 1e6 => (float)f,
            var other => throw new UserError($"{path}: rescale_factor must be a number, got {Clip(other.ToJsonString())}"),
        };
        return new PreprocessorConfig
        {
            ResizeShortestEdge = shortest,
            ResizeHeight = h,
            ResizeWidth = w,
            DoCenterCrop = crop,
            CropHeight = ch,
            CropWidth = cw,
            Mean = Arr("image_mean", d.Mean, positive: false),
            Std = Arr("image_std", d.Std, positive: true),
            RescaleFactor = rescale,
        };
    }

    static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";

    public JsonObject ToJson() => new()
    {
        ["image_processor_type"] = ResizeShortestEdge > 0 ? "CLIPImageProcessor" : "SiglipImageProcessor",
        ["do_resize"] = true,
        ["size"] = ResizeShortestEdge > 0 ? new JsonObject { ["shortest_edge"] = ResizeShortestEdge } : new JsonObject { ["height"] = ResizeHeight, ["width"] = ResizeWidth },
        ["do_center_crop"] = DoCenterCrop,
        ["crop_size"] = new JsonObject { ["height"] = CropHeight, ["width"] = CropWidth },
        ["do_rescale"] = true,
        ["rescale_factor"] = RescaleFactor,
        ["do_normalize"] = true,
        ["image_mean"] = new JsonArray(Mean.Select(x => (JsonNode)x).ToArray()),
        ["image_std"] = new JsonArray(Std.Select(x => (JsonNode)x).ToArray()),
    };
}
