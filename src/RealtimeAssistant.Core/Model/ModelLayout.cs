using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Model;

/// <summary>
/// How a checkpoint lays out prompts and streams, read once from its folder: config.json's
/// ra_* keys (our frame layout; HF ignores them), the pruning schedule measured for it
/// (pruning.json) and its default prompt. Everything that builds a prompt or a stream takes
/// this record instead of reading config.json again.
/// </summary>
public sealed record ModelLayout
{
    /// <summary>ra_frame_marker: the token after each frame in a stream's source. Null: the model was not trained on our frame layout, and a frame is one image in the model's own prompt format.</summary>
    public string? FrameMarker { get; init; }
    /// <summary>ra_instruction: what a caption write asks.</summary>
    public string Instruction { get; init; } = "describe the scene .";
    /// <summary>ra_frame_band: the most frames one frame attended in training (a session's default band); null: full attention.</summary>
    public int? FrameBand { get; init; }
    /// <summary>ra_group_positions: captions go to the target group at φ = 0 (the model was trained with GPE); otherwise they follow the source.</summary>
    public bool GroupPositions { get; init; }
    /// <summary>ra_default_prompt, else null (the caller's family default).</summary>
    public string? DefaultPrompt { get; init; }
    /// <summary>The schedule measured for this model by `ra analyze` (pruning.json beside the weights); null if none.</summary>
    public PruningConfig? Schedule { get; init; }

    public static ModelLayout Read(string dir, JsonNode config)
    {
        var source = Path.Combine(dir, "config.json");
        var pruning = Path.Combine(dir, "pruning.json");
        return new ModelLayout
        {
            FrameMarker = Str(config, "ra_frame_marker", source),
            Instruction = Str(config, "ra_instruction", source) ?? "describe the scene .",
            FrameBand = Band(config, source),
            GroupPositions = config["ra_group_positions"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out var b) => b,
                var other => throw new UserError($"{source}: ra_group_positions must be true or false, got {other.ToJsonString()}"),
            },
            DefaultPrompt = Str(config, "ra_default_prompt", source),
            Schedule = File.Exists(pruning) ? PruningConfig.Load(pruning) : null,
        };
    }

    /// <summary>The schedule to prune with when a command turns pruning on without saying how: the model's own, else the reference's defaults for its depth.</summary>
    public PruningConfig ScheduleFor(int layers) => Schedule ?? PruningConfig.Reference(layers);

    static string? Str(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw new UserError($"{source}: {key} must be a string, got {other.ToJsonString()}"),
    };

    static int? Band(JsonNode n, string source)
    {
        if (n["ra_frame_band"] is not { } node) return null;
        int band = node.GetValueKind() == JsonValueKind.Number && node.AsValue().TryGetValue(out int v) ? v : 0;
        if (band < 1) throw new UserError($"{source}: ra_frame_band must be a whole number ≥ 1, got {node.ToJsonString()}");
        return band;
    }
}
