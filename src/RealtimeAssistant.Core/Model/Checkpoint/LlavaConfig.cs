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
        if (c.HiddenSize < 1 || c.NumAttentionHeads < 1 || c.HiddenSize % c.NumAttentionHeads != 0 || c.NumHiddenLayers < 0 || c.PatchSize < 1 || c.ImageSize < 1)
            throw new UserError($"{source}: vision config sizes are not usable (hidden_size {c.HiddenSize}, heads {c.NumAttentionHeads}, patch {c.PatchSize}, image {c.ImageSize})");
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
        var ropeParams = t["rope_parameters"] ?? root["rope_parameters"];
        var ropeScaling = t["rope_scaling"] ?? root["rope_scaling"];
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
        if (c.HiddenSize < 1 || c.NumAttentionHeads < 1 || c.NumKeyValueHeads < 1 || c.NumHiddenLayers < 1 || c.VocabSize < 1 || c.IntermediateSize < 1)
            throw new UserError($"{source}: text config sizes must be positive");
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
    public int ImageTokens => Vision.NumPatches + (Vision.IsSiglip ? 0 : 1) - (VisionFeatureSelectStrategy == "default" ? 1 : 0);

    public static LlavaConfig Load(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new UserError($"no config.json in {modelDir}");
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new UserError($"{path} is empty"); }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
        return Parse(root, path);
    }

    /// <summary>The class defaults a hub config leaves out (LlavaConfig's; LLaVA-OneVision's differ).</summary>
    public sealed record Defaults(string VisionType, string TextType, int FeatureLayer, string SelectStrategy, int ImageTokenIndex)
    {
        public static readonly Defaults Llava = new("clip_vision_model", "llama", -2, "default", 32000);
    }

    public static LlavaConfig Parse(JsonNode root, string source = "config.json")
    {
        var modelType = Str(root, "model_type");
        if (modelType != null && modelType != "llava")
            throw new UserError($"{source}: unsupported model_type '{modelType}' (supported: llava, with vision towers {string.Join(", ", SupportedVisionTypes)} and decoders {string.Join(", ", SupportedTextTypes)})");
        return ParseShared(root, source, Defaults.Llava);
    }

    /// <summary>
    /// The keys every LLaVA-style config shares (vision and text configs, feature layer and
    /// strategy, projector, image token), with the family's class defaults; model_type is the caller's.
    /// </summary>
    public static LlavaConfig ParseShared(JsonNode root, string source, Defaults defaults)
    {
        var v = root["vision_config"] ?? new JsonObject();
        var t = root["text_config"] ?? new JsonObject();
        var vType = Str(v, "model_type") ?? defaults.VisionType;
        if (!SupportedVisionTypes.Contains(vType))
            throw new UserError($"{source}: unsupported vision model_type '{vType}' (supported: {string.Join(", ", SupportedVisionTypes)})");
        var tType = Str(t, "model_type") ?? defaults.TextType;
        if (!SupportedTextTypes.Contains(tType))
            throw new UserError($"{source}: unsupported text model_type '{tType}' (supported: {string.Join(", ", SupportedTextTypes)})");

        var vision = VisionConfig.Parse(v, vType, source);
        var text = TextConfig.Parse(t, root, tType, source);
        // SigLIP-so400m is 384 px in patches of 14: the tower sees ⌊384/14⌋² = 729 patches and the
        // last pixels of each row and column fall outside the strided convolution, as in transformers.
        if (vision.PatchSize > vision.ImageSize)
            throw new UserError($"{source}: patch_size {vision.PatchSize} is larger than image_size {vision.ImageSize}");

        int[] layers = root["vision_feature_layer"] switch
        {
            JsonArray arr => arr.Select(x => x!.GetValue<int>()).ToArray(),
            JsonValue val => new[] { val.GetValue<int>() },
            _ => new[] { defaults.FeatureLayer },
        };
        foreach (var l in layers)
            if (l < -(vision.NumHiddenLayers + 1) || l > vision.NumHiddenLayers)
                throw new UserError($"{source}: vision_feature_layer {l} is outside the tower's {vision.NumHiddenLayers} layers");
        var strategy = Str(root, "vision_feature_select_strategy") ?? defaults.SelectStrategy;
        if (strategy is not ("default" or "full"))
            throw new UserError($"{source}: vision_feature_select_strategy '{strategy}' is not supported (default, full)");
        return new LlavaConfig
        {
            Vision = vision,
            Text = text,
            ImageTokenIndex = Int(root, "image_token_index") ?? Int(root, "image_token_id") ?? defaults.ImageTokenIndex,
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

    static string? Str(JsonNode n, string k) => Json.Str(n, k, "config.json");
    static bool? Bool(JsonNode n, string k) => Json.Bool(n, k, "config.json");
    static int? Int(JsonNode n, string k) => Json.Int(n, k, "config.json");
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
    /// <summary>PIL's filter ("resample"; the CLIP and SigLIP processors default to bicubic).</summary>
    public Imaging.PilResample.Filter Resample { get; init; } = Imaging.PilResample.Filter.Bicubic;

    /// <summary>The config implied by the vision tower alone (no preprocessor_config.json).</summary>
    public static PreprocessorConfig Default(VisionConfig v) => v.IsSiglip
        ? new() { ResizeHeight = v.ImageSize, ResizeWidth = v.ImageSize, Mean = new[] { .5f, .5f, .5f }, Std = new[] { .5f, .5f, .5f } }
        : new() { ResizeShortestEdge = v.ImageSize, DoCenterCrop = true, CropHeight = v.ImageSize, CropWidth = v.ImageSize };

    public static PreprocessorConfig Load(string modelDir, VisionConfig vision)
    {
        var path = Path.Combine(modelDir, "preprocessor_config.json");
        if (!File.Exists(path)) return Default(vision);
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path))!; }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
        var d = Default(vision);
        int shortest = 0, h = 0, w = 0;
        switch (root["size"])
        {
            case JsonObject o:
                shortest = (int?)o["shortest_edge"] ?? 0;
                h = (int?)o["height"] ?? 0;
                w = (int?)o["width"] ?? 0;
                break;
            case JsonValue val: shortest = val.GetValue<int>(); break;
        }
        if (shortest == 0 && h == 0) { shortest = d.ResizeShortestEdge; h = d.ResizeHeight; w = d.ResizeWidth; }
        int ch = vision.ImageSize, cw = vision.ImageSize;
        switch (root["crop_size"])
        {
            case JsonObject o: ch = (int?)o["height"] ?? ch; cw = (int?)o["width"] ?? cw; break;
            case JsonValue val: ch = cw = val.GetValue<int>(); break;
        }
        var crop = (bool?)root["do_center_crop"] ?? (root["crop_size"] != null);
        float[] Arr(string k, float[] def) => root[k] is JsonArray a ? a.Select(x => (float)x!.GetValue<double>()).ToArray() : def;
        return new PreprocessorConfig
        {
            ResizeShortestEdge = shortest,
            ResizeHeight = h,
            ResizeWidth = w,
            DoCenterCrop = crop,
            CropHeight = ch,
            CropWidth = cw,
            Mean = Arr("image_mean", d.Mean),
            Std = Arr("image_std", d.Std),
            RescaleFactor = root["rescale_factor"] is JsonValue rf ? (float)rf.GetValue<double>() : 1f / 255f,
            Resample = Json.Int(root, "resample", path) is { } r ? Imaging.PilResample.Parse(r, path) : Imaging.PilResample.Filter.Bicubic,
        };
    }

    public JsonObject ToJson() => new()
    {
        ["image_processor_type"] = ResizeShortestEdge > 0 ? "CLIPImageProcessor" : "SiglipImageProcessor",
        ["do_resize"] = true,
        ["size"] = ResizeShortestEdge > 0 ? new JsonObject { ["shortest_edge"] = ResizeShortestEdge } : new JsonObject { ["height"] = ResizeHeight, ["width"] = ResizeWidth },
        ["do_center_crop"] = DoCenterCrop,
        ["crop_size"] = new JsonObject { ["height"] = CropHeight, ["width"] = CropWidth },
        ["resample"] = (int)Resample,
        ["do_rescale"] = true,
        ["rescale_factor"] = RescaleFactor,
        ["do_normalize"] = true,
        ["image_mean"] = new JsonArray(Mean.Select(x => (JsonNode)x).ToArray()),
        ["image_std"] = new JsonArray(Std.Select(x => (JsonNode)x).ToArray()),
    };
}
