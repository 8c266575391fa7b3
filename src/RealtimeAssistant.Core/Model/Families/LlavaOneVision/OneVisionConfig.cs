using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Model.LlavaOneVision;

/// <summary>
/// config.json of a LlavaOnevisionForConditionalGeneration checkpoint: the LLaVA keys (with
/// LlavaOnevisionConfig's defaults: SigLIP, Qwen2, last layer, "full"), plus the anyres pinpoints,
/// vision_aspect_ratio (anyres_max_N) and the video token.
/// </summary>
public sealed record OneVisionConfig
{
    public static readonly LlavaConfig.Defaults ClassDefaults = new("siglip_vision_model", "qwen2", -1, "full", 151646);

    /// <summary>LlavaOnevisionConfig's default pinpoints: 384·a × 384·b for a, b in 1..6.</summary>
    public static readonly (int H, int W)[] DefaultPinpoints =
        (from a in Enumerable.Range(1, 6) from b in Enumerable.Range(1, 6) select (384 * a, 384 * b)).ToArray();

    /// <summary>Vision tower, projector and decoder settings, shared with LLaVA.</summary>
    public required LlavaConfig Llava { get; init; }
    public int VideoTokenIndex { get; init; } = 151647;
    /// <summary>image_grid_pinpoints as (height, width), multiples of the tile size.</summary>
    public required (int H, int W)[] Pinpoints { get; init; }
    /// <summary>anyres_max_N's N: a grid past 1.1× the area of N tiles is shrunk.</summary>
    public int MaxTiles { get; init; } = 9;

    public VisionConfig Vision => Llava.Vision;
    public TextConfig Text => Llava.Text;
    public int ImageTokenIndex => Llava.ImageTokenIndex;
    /// <summary>The tower's input side: one tile.</summary>
    public int TileSize => Vision.ImageSize;
    /// <summary>Features per tile side (image_size // patch_size).</summary>
    public int TileSide => Vision.PatchesPerSide;

    public static OneVisionConfig Parse(JsonNode root, string source)
    {
        var llava = LlavaConfig.ParseShared(root, source, ClassDefaults);
        if (!llava.Vision.IsSiglip && llava.VisionFeatureSelectStrategy == "full")
            throw new UserError($"{source}: a CLIP tower with vision_feature_select_strategy 'full' keeps its class token, which anyres tiles have no place for; use 'default'");
        if (llava.Vision.IsSiglip && llava.VisionFeatureSelectStrategy == "default")
            throw new UserError($"{source}: vision_feature_select_strategy 'default' drops a SigLIP tile's first patch (SigLIP has no class token), so a tile no longer fills its grid; use 'full'");
        var pinpoints = ParsePinpoints(root["image_grid_pinpoints"], source) ?? DefaultPinpoints;
        foreach (var (h, w) in pinpoints)
            if (h < llava.Vision.ImageSize || w < llava.Vision.ImageSize || h % llava.Vision.ImageSize != 0 || w % llava.Vision.ImageSize != 0)
                throw new UserError($"{source}: image_grid_pinpoints [{h}, {w}] is not a multiple of the tile size {llava.Vision.ImageSize}");
        return new OneVisionConfig
        {
            Llava = llava,
            VideoTokenIndex = Json.Int(root, "video_token_index", source) ?? Json.Int(root, "video_token_id", source) ?? 151647,
            Pinpoints = pinpoints,
            MaxTiles = AnyRes.MaxTiles(Json.Str(root, "vision_aspect_ratio", source) ?? "anyres_max_9", source),
        };
    }

    /// <summary>A list of [height, width] pairs, or null when absent.</summary>
    public static (int H, int W)[]? ParsePinpoints(JsonNode? node, string source)
    {
        if (node is null) return null;
        if (node is not JsonArray arr || arr.Count == 0)
            throw new UserError($"{source}: image_grid_pinpoints must be a non-empty list of [height, width] pairs");
        return arr.Select(p =>
        {
            if (p is JsonArray pair && pair.Count == 2 && pair[0] is JsonValue a && pair[1] is JsonValue b
                && a.TryGetValue<int>(out var h) && b.TryGetValue<int>(out var w) && h > 0 && w > 0)
                return (h, w);
            throw new UserError($"{source}: image_grid_pinpoints entry {p?.ToJsonString()} is not a [height, width] pair of positive whole numbers");
        }).ToArray();
    }
}
