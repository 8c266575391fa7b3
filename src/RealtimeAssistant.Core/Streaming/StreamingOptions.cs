using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

public sealed record StreamingOptions
{
    /// <summary>Frames whose KV stays in the source group (W). Older frames are evicted.</summary>
    public int WindowFrames { get; init; } = 8;
    /// <summary>
    /// Frames a newly read frame attends, itself included; W = the whole window. The caption still
    /// attends all W frames; a frame's own encoding then costs the same for any W, instead of
    /// growing with it (at W = 32 most of an update's time is the new frame attending the other 31).
    /// Null: the span the model was trained with (config ra_frame_band, capped at W), else the whole window.
    /// </summary>
    public int? FrameBand { get; init; }
    /// <summary>Caption tokens kept in the target group across writes (M); 0 = each caption stands alone.</summary>
    public int CaptionHistoryTokens { get; init; }
    /// <summary>φ: the target group's first position (GPE default 0).</summary>
    public long TargetStart { get; init; }
    /// <summary>
    /// Rotate every cached source key back to position 0 whenever a frame leaves (O(window) per
    /// frame). Off, the source keeps its positions and the target starts at φ + the source's first
    /// position instead: under RoPE only differences matter, so attention is the same, and keys are
    /// rotated only before positions would pass max_position_embeddings.
    /// </summary>
    public bool RebaseOnEvict { get; init; }
    public GenerationOptions Generation { get; init; } = new() { MaxNewTokens = 48 };
    /// <summary>Prune each frame's visual tokens as it enters (VisiPruner, FastV, …); null = keep all. The governor may change it per read.</summary>
    public PruningConfig? Pruning { get; init; }

    /// <summary>Settings a model with <paramref name="maxPositions"/> positions can stream with; the model-free simulated stream passes int.MaxValue.</summary>
    public void Validate(int maxPositions)
    {
        if (WindowFrames < 1 || WindowFrames > 4096) throw new UserError($"window must be 1..4096 frames, got {WindowFrames}");
        if (FrameBand is { } fb && (fb < 1 || fb > WindowFrames)) throw new UserError($"frame band must be 1..window ({WindowFrames}), got {fb}");
        if (CaptionHistoryTokens < 0) throw new UserError($"caption history must be ≥ 0 tokens, got {CaptionHistoryTokens}");
        if (TargetStart < 0 || TargetStart >= maxPositions) throw new UserError($"φ must be in [0, {maxPositions}), got {TargetStart}");
        Generation.Validate();
        if (TargetStart + CaptionHistoryTokens + Generation.MaxNewTokens > maxPositions)
            throw new UserError($"a caption history of {CaptionHistoryTokens} tokens and captions of up to {Generation.MaxNewTokens} do not fit the model's {maxPositions} positions");
    }

    /// <summary>Settings <paramref name="engine"/>'s model can stream with.</summary>
    public void Validate(Engine engine)
    {
        Validate(engine.Text.MaxPositionEmbeddings);
        ValidatePruning(Pruning, engine.Text.NumHiddenLayers);
        // Only a model trained with group positions keeps a caption history; any other captions each write alone.
        if (CaptionHistoryTokens > 0 && !engine.GroupPositions)
            throw new UserError("a caption history needs a model trained with group positions (ra_group_positions in config.json); this model captions each write alone");
    }

    /// <summary>A pruning setting a stream can run: a frame is demoted when the next one arrives, after its layers ran, so only a fixed exit applies then.</summary>
    public static void ValidatePruning(PruningConfig? pruning, int layers)
    {
        pruning?.Validate(layers);
        if (pruning is { Method: "visipruner", KeepNewestFrame: true, OlderFramesExitLayer: null, ExitLayer: null })
            throw new UserError("streaming with keep_newest_frame needs a fixed exit for the older frames (older_frames_exit_layer or exit_layer)");
    }
}
