namespace RealtimeAssistant.Output;

/// <summary>
/// One caption as written to captions.srt / .vtt / .jsonl. Only Start, End and Text survive in
/// SRT and VTT; the JSONL line keeps everything (and is what <c>annotate --resume</c> reads back).
/// </summary>
/// <param name="LatencyMs">Glass-to-caption latency of the frame this caption describes.</param>
/// <param name="KeptTokens">Vision tokens kept after pruning.</param>
/// <param name="Frame">Index of the frame the caption was made from.</param>
/// <param name="Extra">More fields for the JSONL line (strings, numbers, booleans).</param>
public sealed record CaptionEntry(
    TimeSpan Start,
    TimeSpan End,
    string Text,
    double? LatencyMs = null,
    int? KeptTokens = null,
    long? Frame = null,
    IReadOnlyDictionary<string, object?>? Extra = null);
