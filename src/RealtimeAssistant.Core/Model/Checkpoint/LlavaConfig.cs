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

    /// <summary>A CLIP or SigLIP vision config with HF's per-type defaults (a hub config lists only what differs).</summary>
    public static VisionConfig Parse(JsonNode v, string modelType, string source)
    {
        var siglip = modelType == "siglip_vision_model";
        var c = new VisionConfig
        {
            ModelType = modelType,
            HiddenSize = Json.Int(v, "hidden_size", source) ?? 768,
            IntermediateSize = Json.Int(v, "intermediate_size", source) ?? 3072,
            NumHiddenLayers = Json.Int(v, "num_hidden_layers", source) ?? 12,
            NumAttentionHeads = Json.Int(v, "num_attention_heads", source) ?? 12,
            NumChannels = Json.Int(v, "num_channels", source) ?? 3,
            ImageSize = Json.Int(v, "image_size", source) ?? 224,
            PatchSize = Json.Int(v, "patch_size", source) ?? (siglip ? 16 : 32),
            HiddenAct = Json.Str(v, "hidden_act", source) ?? (siglip ? "gelu_pytorch_tanh" : "quick_gelu"),
            LayerNormEps = Json.Dbl(v, "layer_norm_eps", source) ?? (siglip ? 1e-6 : 1e-5),
        };
        LlavaConfig.Check(source, c.HiddenSize, 1, 1 << 16, "vision_config.hidden_size");
        LlavaConfig.Check(source, c.IntermediateSize, 1, 1 << 18, "vision_config.intermediate_size");
        LlavaConfig.Check(source, c.NumHiddenLayers, 1, 1024, "vision_config.num_hidden_layers");
        LlavaConfig.Check(source, c.NumAttentionHeads, 1, c.HiddenSize, "vision_config.num_attention_heads");
        LlavaConfig.Check(source, c.NumChannels, 1, 16, "vision_config.num_channels");
        LlavaConfig.Check(source, c.ImageSize, 1, 16384, "vision_config.image_size");
        LlavaConfig.Check(source, c.PatchSize, 1, c.ImageSize, "vision_config.patch_size");
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            throw new UserError($"{source}: vision hidden_size {c.HiddenSize} is not divisible by num_attention_heads {c.NumAttentionHeads}");
        if (!(c.LayerNormEps > 0) || double.IsInfinity(c.LayerNormEps)) throw new UserError($"{source}: vision_config.layer_norm_eps must be a positive number, got {c.LayerNormEps}");
        return c;
    }
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
    /// <summary>Multimodal RoPE (Qwen2-VL): how many of the head's frequencies take the t, h and w positions; null for ordinary RoPE.</summary>
    public int[]? MropeSection { get; init; }

    public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    /// <summary>Qwen2 (and Qwen2-VL's decoder) always has q/k/v biases; LLaMA only with attention_bias.</summary>
    public bool QkvBias => ModelType is "qwen2" or "qwen2_vl" or "qwen2_5_vl" || AttentionBias;

    /// <summary>
    /// A LLaMA- or Qwen2-style decoder config with HF's per-type defaults. <paramref name="t"/> is the
    /// text config (nested text_config, or the root of a flat config); keys a flat hub config keeps at
    /// the root (tie_word_embeddings, rope_scaling) are looked up in <paramref name="root"/> too.
    /// rope_theta may sit inside rope_parameters, and M-RoPE's mrope_section inside rope_scaling or rope_parameters.
    /// </summary>
    public static TextConfig Parse(JsonNode t, JsonNode root, string modelType, string source)
    {
        var qwen = modelType is "qwen2" or "qwen2_vl" or "qwen2_5_vl";
        var heads = Json.Int(t, "num_attention_heads", source) ?? 32;
        // Only objects are read (a checkpoint's config is untrusted: any other kind is ignored here).
        var ropeParams = (t["rope_parameters"] ?? root["rope_parameters"]) as JsonObject;
        var ropeScaling = (t["rope_scaling"] ?? root["rope_scaling"]) as JsonObject;
        int[]? mrope = null;
        foreach (var node in new[] { ropeScaling, ropeParams })
            if (node?["mrope_section"] is JsonArray arr)
                mrope = arr.Select(x => x is JsonValue jv && jv.TryGetValue<int>(out var n) && n >= 0 ? n : throw new UserError($"{source}: mrope_section must hold whole numbers")).ToArray();
        var c = new TextConfig
        {
            ModelType = modelType,
            VocabSize = Json.Int(t, "vocab_size", source) ?? (qwen ? 151936 : 32000),
            HiddenSize = Json.Int(t, "hidden_size", source) ?? 4096,
            IntermediateSize = Json.Int(t, "intermediate_size", source) ?? (qwen ? 22016 : 11008),
            NumHiddenLayers = Json.Int(t, "num_hidden_layers", source) ?? 32,
            NumAttentionHeads = heads,
            NumKeyValueHeads = Json.Int(t, "num_key_value_heads", source) ?? heads,
            HeadDimOverride = Json.Int(t, "head_dim", source),
            RmsNormEps = Json.Dbl(t, "rms_norm_eps", source) ?? 1e-6,
            RopeTheta = Json.Dbl(t, "rope_theta", source) ?? (ropeParams is null ? null : Json.Dbl(ropeParams, "rope_theta", source)) ?? 10000,
            MaxPositionEmbeddings = Json.Int(t, "max_position_embeddings", source) ?? (qwen ? 32768 : 2048),
            TieWordEmbeddings = Json.Bool(t, "tie_word_embeddings", source) ?? Json.Bool(root, "tie_word_embeddings", source) ?? false,
            AttentionBias = Json.Bool(t, "attention_bias", source) ?? false,
            HiddenAct = Json.Str(t, "hidden_act", source) ?? "silu",
            BosTokenId = Json.Int(t, "bos_token_id", source),
            EosTokenId = Json.Int(t, "eos_token_id", source),
            MropeSection = mrope,
        };
        LlavaConfig.Check(source, c.VocabSize, 1, 10_000_000, "text_config.vocab_size");
        LlavaConfig.Check(source, c.HiddenSize, 1, 1 << 17, "text_config.hidden_size");
        LlavaConfig.Check(source, c.IntermediateSize, 1, 1 << 19, "text_config.intermediate_size");
        LlavaConfig.Check(source, c.NumHiddenLayers, 1, 1024, "text_config.num_hidden_layers");
        LlavaConfig.Check(source, c.NumAttentionHeads, 1, c.HiddenSize, "text_config.num_attention_heads");
        LlavaConfig.Check(source, c.NumKeyValueHeads, 1, c.NumAttentionHeads, "text_config.num_key_value_heads");
        if (c.HeadDimOverride is { } hd) LlavaConfig.Check(source, hd, 1, 1 << 12, "text_config.head_dim");
        LlavaConfig.Check(source, c.MaxPositionEmbeddings, 1, 1 << 24, "text_config.max_position_embeddings");
        foreach (var (value, key) in new[] { (c.RmsNormEps, "text_config.rms_norm_eps"), (c.RopeTheta, "text_config.rope_theta") })
            if (!(value > 0) || double.IsInfinity(value)) throw new UserError($"{source}: {key} must be a positive number, got {value}");
        if (c.BosTokenId is < 0 || c.EosTokenId is < 0) throw new UserError($"{source}: token ids must be ≥ 0");
        if (c.HiddenSize % c.NumAttentionHeads != 0 && c.HeadDimOverride == null)
            throw new UserError($"{source}: hidden_size {c.HiddenSize} is not divisible by num_attention_heads {c.NumAttentionHeads}");
        if (c.NumAttentionHeads % c.NumKeyValueHeads != 0)
            throw new UserError($"{source}: num_attention_heads {c.NumAttentionHeads} is not a multiple of num_key_value_heads {c.NumKeyValueHeads}");
        if (c.MropeSection is { } ms && ms.Sum() != c.HeadDim / 2)
            throw new UserError($"{source}: mrope_section [{string.Join(", ", ms)}] must add up to head_dim / 2 = {c.HeadDim / 2}");
        return c;
    }
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

        var vision = VisionConfig.Parse(v, vType, source);
        var text = TextConfig.Parse(t, root, tType, source);
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
        var other => throw new UserError($"{source}: {key} must be an object, got {Clip(other.ToJsonString())}"),
    };

    internal static void Check(string source, int value, int min, int max, string key)
    {
        if (value < min || value > max) throw new UserError($"{source}: {key} must be {min}..{max}, got {value}");
    }

    static string? Str(JsonNode n, string k) => Json.Str(n, k, "config.json");
    static bool? Bool(JsonNode n, string k) => Json.Bool(n, k, "config.json");
    static int? Int(string source, JsonNode n, string k) => Json.Int(n, k, source);
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
