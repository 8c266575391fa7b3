namespace RealtimeAssistant.Streaming;

public enum WriteTrigger { EveryNFrames, SceneChange, WhenFinished }

/// <summary>
/// When the stream writes a caption segment: at the first frame read and then every N frames read
/// (a frame the scene-change gate passes over as unchanged counts as read once a frame was read
/// since the last caption: it shows what that read saw), after each frame that passed the
/// scene-change gate, or as soon as the previous segment has finished (back to back; frames that
/// arrive meanwhile are dropped by a live source). Written on the command line as "every:N",
/// "change" or "finished".
/// </summary>
public sealed record WritePolicy(WriteTrigger Trigger, int Frames = 1)
{
    public static WritePolicy Parse(string text)
    {
        var t = (text ?? "").Trim().ToLowerInvariant();
        if (t == "change") return new(WriteTrigger.SceneChange);
        if (t == "finished") return new(WriteTrigger.WhenFinished);
        if (t.StartsWith("every:") && int.TryParse(t[6..], out var n))
            return n is >= 1 and <= 100_000 ? new(WriteTrigger.EveryNFrames, n) : throw new UserError($"write policy every:N needs N in 1..100000, got {n}");
        throw new UserError($"write policy '{text}' is not one of every:N, change, finished");
    }

    /// <summary>Whether to write now, after <paramref name="readsSinceWrite"/> frames were read since the last write.</summary>
    public bool ShouldWrite(int readsSinceWrite) => Trigger switch
    {
        WriteTrigger.EveryNFrames => readsSinceWrite >= Frames,
        _ => readsSinceWrite >= 1, // change: the gate let a frame through; finished: the last segment is done
    };

    public override string ToString() => Trigger switch
    {
        WriteTrigger.EveryNFrames => $"every:{Frames}",
        WriteTrigger.SceneChange => "change",
        _ => "finished",
    };
}
