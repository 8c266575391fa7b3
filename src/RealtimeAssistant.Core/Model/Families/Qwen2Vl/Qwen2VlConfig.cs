using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Model.Families.Qwen2Vl;

/// <summary>
/// The vision tower of Qwen2-VL (Qwen2VLVisionConfig) or Qwen2.5-VL (Qwen2_5_VLVisionConfig), HF's
/// defaults for each. The two name their widths differently: Qwen2-VL's blocks are embed_dim wide
/// and its merger outputs hidden_size; Qwen2.5-VL's blocks are hidden_size wide and its merger
/// outputs out_hidden_size.
/// </summary>
public sealed record Qwen2VlVisionConfig
{
    public bool IsQwen25 { get; init; }
    public int Depth { get; init; } = 32;
    /// <summary>Width of the vision blocks.</summary>
    public int EmbedDim { get; init; } = 1280;
    /// <summary>Width of the merger's output (the decoder's hidden size).</summary>
    public int OutDim { get; init; } = 3584;
    /// <summary>Hidden width of a block's MLP (Qwen2-VL: embed_dim × mlp_ratio).</summary>
    public int MlpDim { get; init; } = 5120;
    public int NumHeads { get; init; } = 16;
    public int InChannels { get; init; } = 3;
    public int PatchSize { get; init; } = 14;
    public int SpatialMergeSize { get; init; } = 2;
    public int TemporalPatchSize { get; init; } = 2;
    /// <summary>Hub configs omit it for Qwen2-VL, so the class default quick_gelu applies; Qwen2.5-VL: silu (gated).</summary>
    public string HiddenAct { get; init; } = "quick_gelu";
    /// <summary>Qwen2.5-VL: a window's side in pixels (window attention in the blocks not in <see cref="FullAttentionBlocks"/>).</summary>
    public int WindowSize { get; init; } = 112;
    public int[] FullAttentionBlocks { get; init; } = Array.Empty<int>();
    /// <summary>Qwen2.5-VL: temporal positions per second of video.</summary>
    public double TokensPerSecond { get; init; } = 4;

    public int HeadDim => EmbedDim / NumHeads;
    public int MergeUnit => SpatialMergeSize * SpatialMergeSize;
    /// <summary>Values in one flattened patch row: channel × frame × y × x.</summary>
    public int PatchRow => InChannels * TemporalPatchSize * PatchSize * PatchSize;

    public static Qwen2VlVisionConfig Parse(JsonNode v, bool qwen25, string source)
    {
        int? I(string k) => Json.Int(v, k, source);
        var c = qwen25
            ? new Qwen2VlVisionConfig
            {
                IsQwen25 = true,
                Depth = I("depth") ?? 32,
                EmbedDim = I("hidden_size") ?? 3584,
                OutDim = I("out_hidden_size") ?? 3584,
                MlpDim = I("intermediate_size") ?? 3420,
                HiddenAct = Json.Str(v, "hidden_act", source) ?? "silu",
                WindowSize = I("window_size") ?? 112,
                FullAttentionBlocks = Ints(v, "fullatt_block_indexes", source) ?? new[] { 7, 15, 23, 31 },
                TokensPerSecond = Json.Dbl(v, "tokens_per_second", source) ?? 4,
            }
            : new Qwen2VlVisionConfig
            {
                Depth = I("depth") ?? 32,
                EmbedDim = I("embed_dim") ?? 1280,
                OutDim = I("hidden_size") ?? 3584,
                MlpDim = (int)((I("embed_dim") ?? 1280) * (Json.Dbl(v, "mlp_ratio", source) ?? 4)),
                HiddenAct = Json.Str(v, "hidden_act", source) ?? "quick_gelu",
            };
        c = c with
        {
            NumHeads = I("num_heads") ?? 16,
            // HF's class reads in_channels; hub files write in_chans (which HF then ignores, as both say 3).
            InChannels = I("in_channels") ?? I("in_chans") ?? 3,
            PatchSize = I("patch_size") ?? 14,
            SpatialMergeSize = I("spatial_merge_size") ?? 2,
            TemporalPatchSize = I("temporal_patch_size") ?? 2,
        };
        if (c.Depth < 0 || c.EmbedDim < 1 || c.NumHeads < 1 || c.EmbedDim % c.NumHeads != 0 || c.HeadDim % 4 != 0 || c.OutDim < 1 || c.MlpDim < 1
            || c.InChannels < 1 || c.PatchSize < 1 || c.SpatialMergeSize < 1 || c.TemporalPatchSize < 1)
            throw new UserError($"{source}: vision_config sizes are not usable (width {c.EmbedDim}, heads {c.NumHeads}, head dim a multiple of 4 needed, patch {c.PatchSize}, merge {c.SpatialMergeSize})");
        if (qwen25 && (c.WindowSize < c.PatchSize * c.SpatialMergeSize || c.WindowSize % (c.PatchSize * c.SpatialMergeSize) != 0))
            throw new UserError($"{source}: window_size {c.WindowSize} must be a whole number of merged patches ({c.PatchSize * c.SpatialMergeSize} px)");
        if (c.FullAttentionBlocks.Any(b => b < 0))
            throw new UserError($"{source}: fullatt_block_indexes must be ≥ 0");
        if (c.TokensPerSecond < 0) throw new UserError($"{source}: tokens_per_second must be ≥ 0");
        return c;
    }

    static int[]? Ints(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue jv && jv.TryGetValue<int>(out var i) ? i : throw new UserError($"{source}: {key} must hold whole numbers")).ToArray(),
        var other => throw new UserError($"{source}: {key} must be a list of whole numbers, got {other.ToJsonString()}"),
    };
}

/// <summary>
/// config.json of a Qwen2VLForConditionalGeneration or Qwen2_5_VLForConditionalGeneration
/// checkpoint: the hub files are flat (the decoder's keys at the root, rope_scaling
/// {type: mrope, mrope_section}); transformers ≥ 4.52 nests text_config and may use rope_parameters.
/// </summary>
public sealed record Qwen2VlConfig
{
    public required string ModelType { get; init; }
    public required TextConfig Text { get; init; }
    public required Qwen2VlVisionConfig Vision { get; init; }
    public int ImageTokenId { get; init; } = 151655;
    public int VideoTokenId { get; init; } = 151656;
    public int VisionStartTokenId { get; init; } = 151652;
    public int VisionEndTokenId { get; init; } = 151653;
    public string TorchDtype { get; init; } = "bfloat16";

    public bool IsQwen25 => ModelType == "qwen2_5_vl";

    public static Qwen2VlConfig Parse(JsonNode root, string source)
    {
        var type = Json.Str(root, "model_type", source) ?? throw new UserError($"{source}: model_type is missing");
        if (type is not ("qwen2_vl" or "qwen2_5_vl")) throw new UserError($"{source}: model_type '{type}' is not qwen2_vl or qwen2_5_vl");
        var textNode = root["text_config"] is JsonObject t ? t : root;
        var text = TextConfig.Parse(textNode, root, type, source);
        if (text.MropeSection is null)
            throw new UserError($"{source}: no mrope_section (in rope_scaling or rope_parameters): Qwen2-VL's decoder needs multimodal RoPE");
        var visionNode = root["vision_config"] switch
        {
            null => new JsonObject(),
            JsonObject o => o,
            var other => throw new UserError($"{source}: vision_config must be an object, got {other.ToJsonString()[..Math.Min(40, other.ToJsonString().Length)]}"),
        };
        var vision = Qwen2VlVisionConfig.Parse(visionNode, type == "qwen2_5_vl", source);
        if (vision.OutDim != text.HiddenSize)
            throw new UserError($"{source}: the vision merger outputs {vision.OutDim} wide but the decoder's hidden_size is {text.HiddenSize}");
        if (vision.FullAttentionBlocks.Any(b => b >= vision.Depth))
            throw new UserError($"{source}: fullatt_block_indexes [{string.Join(", ", vision.FullAttentionBlocks)}] name blocks past depth {vision.Depth}");
        int Id(string key, int fallback) => Json.Int(root, key, source) ?? Json.Int(textNode, key, source) ?? fallback;
        return new Qwen2VlConfig
        {
            ModelType = type, Text = text, Vision = vision,
            ImageTokenId = Id("image_token_id", 151655),
            VideoTokenId = Id("video_token_id", 151656),
            VisionStartTokenId = Id("vision_start_token_id", 151652),
            VisionEndTokenId = Id("vision_end_token_id", 151653),
            TorchDtype = Json.Str(root, "torch_dtype", source) ?? Json.Str(textNode, "torch_dtype", source) ?? "bfloat16",
        };
    }
}

/// <summary>
/// preprocessor_config.json of Qwen2VLImageProcessor (Qwen2.5-VL uses the same class): smart_resize
/// bounds (min_pixels / max_pixels, or size.shortest_edge / size.longest_edge), the patch layout and
/// the normalisation.
/// </summary>
public sealed record Qwen2VlProcessorConfig
{
    public long MinPixels { get; init; } = 56 * 56;
    public long MaxPixels { get; init; } = 28 * 28 * 1280;
    public int PatchSize { get; init; } = 14;
    public int TemporalPatchSize { get; init; } = 2;
    public int MergeSize { get; init; } = 2;
    public bool DoResize { get; init; } = true;
    public Imaging.PilResample.Filter Resample { get; init; } = Imaging.PilResample.Filter.Bicubic;
    public double RescaleFactor { get; init; } = 1.0 / 255;
    public bool DoRescale { get; init; } = true;
    public bool DoNormalize { get; init; } = true;
    public float[] Mean { get; init; } = { 0.48145466f, 0.4578275f, 0.40821073f };
    public float[] Std { get; init; } = { 0.26862954f, 0.26130258f, 0.27577711f };

    public int Factor => PatchSize * MergeSize;
    /// <summary>The least max_pixels a user may set: a 2×2 square of merged blocks (<see cref="WithMaxPixels"/>).</summary>
    public long SmallestBound => 4L * Factor * Factor;

    /// <summary>
    /// The bound a user sets (HF's max_pixels processor argument), and min_pixels lowered to it
    /// where it was above. At least a 2×2 square of merged blocks (Qwen's default min_pixels,
    /// 56×56), so that a frame of a usual shape keeps a whole block on each side.
    /// </summary>
    public Qwen2VlProcessorConfig WithMaxPixels(long max)
    {
        long least = SmallestBound;
        if (max < least) throw new UserError($"--max-pixels must be at least {least} ({2 * Factor}×{2 * Factor}, two {Factor}-pixel blocks a side), got {max}");
        return this with { MaxPixels = max, MinPixels = Math.Min(MinPixels, max) };
    }

    public static Qwen2VlProcessorConfig Load(string dir, Qwen2VlVisionConfig vision)
    {
        var path = Path.Combine(dir, "preprocessor_config.json");
        var defaults = new Qwen2VlProcessorConfig { PatchSize = vision.PatchSize, TemporalPatchSize = vision.TemporalPatchSize, MergeSize = vision.SpatialMergeSize };
        if (!File.Exists(path)) return defaults;
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new UserError($"{path} is not a JSON object"); }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
        return Parse(root, defaults, vision, path);
    }

    public static Qwen2VlProcessorConfig Parse(JsonNode root, Qwen2VlProcessorConfig d, Qwen2VlVisionConfig vision, string source)
    {
        var size = root["size"] as JsonObject;
        // HF: size {shortest_edge, longest_edge} holds the pixel bounds; min_pixels / max_pixels, when given, override it.
        long? Long(JsonNode? n, string k) => n is null ? null : Json.Dbl(n, k, source) is { } x ? (long)x : null;
        var c = new Qwen2VlProcessorConfig
        {
            MinPixels = Long(root, "min_pixels") ?? Long(size, "shortest_edge") ?? d.MinPixels,
            MaxPixels = Long(root, "max_pixels") ?? Long(size, "longest_edge") ?? d.MaxPixels,
            PatchSize = Json.Int(root, "patch_size", source) ?? d.PatchSize,
            TemporalPatchSize = Json.Int(root, "temporal_patch_size", source) ?? d.TemporalPatchSize,
            MergeSize = Json.Int(root, "merge_size", source) ?? d.MergeSize,
            DoResize = Json.Bool(root, "do_resize", source) ?? true,
            Resample = Json.Int(root, "resample", source) is { } r ? Imaging.PilResample.Parse(r, source) : Imaging.PilResample.Filter.Bicubic,
            DoRescale = Json.Bool(root, "do_rescale", source) ?? true,
            RescaleFactor = Json.Dbl(root, "rescale_factor", source) ?? 1.0 / 255,
            DoNormalize = Json.Bool(root, "do_normalize", source) ?? true,
            Mean = Floats(root, "image_mean", source) ?? d.Mean,
            Std = Floats(root, "image_std", source) ?? d.Std,
        };
        if (c.MinPixels < 1 || c.MaxPixels < c.MinPixels)
            throw new UserError($"{source}: min_pixels {c.MinPixels} and max_pixels {c.MaxPixels} must satisfy 1 ≤ min ≤ max");
        if (c.PatchSize != vision.PatchSize || c.TemporalPatchSize != vision.TemporalPatchSize || c.MergeSize != vision.SpatialMergeSize)
            throw new UserError($"{source}: patch_size/temporal_patch_size/merge_size ({c.PatchSize}/{c.TemporalPatchSize}/{c.MergeSize}) differ from the vision config's ({vision.PatchSize}/{vision.TemporalPatchSize}/{vision.SpatialMergeSize})");
        if (c.Mean.Length != vision.InChannels || c.Std.Length != vision.InChannels || c.Std.Any(s => s == 0))
            throw new UserError($"{source}: image_mean and image_std need {vision.InChannels} values (std non-zero)");
        if (vision.InChannels != 3) throw new UserError($"{source}: images have 3 channels, the vision tower takes {vision.InChannels}");
        return c;
    }

    static float[]? Floats(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue jv && jv.TryGetValue<double>(out var d) && double.IsFinite(d) ? (float)d : throw new UserError($"{source}: {key} must hold numbers")).ToArray(),
        JsonValue v when v.TryGetValue<double>(out var d) => new[] { (float)d, (float)d, (float)d },
        var other => throw new UserError($"{source}: {key} must be a list of numbers, got {other.ToJsonString()}"),
    };
}
