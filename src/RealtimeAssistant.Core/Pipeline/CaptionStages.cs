namespace RealtimeAssistant.Pipeline;

/// <summary>Reports one caption's stage times to the profiler, under the stage names the HUD lists.</summary>
public static class CaptionStages
{
    public const string CaptionTotal = "caption";
    public const string CaptionWords = "caption_words";

    public static void Record(Profiler profiler, CaptionResult result, double totalMs)
    {
        profiler.Record(Profiler.Preprocess, result.Timings.PreprocessMs);
        profiler.Record(Profiler.Vision, result.Timings.VisionMs);
        profiler.Record(Profiler.Prefill, result.Timings.PrefillMs);
        profiler.Record(Profiler.Decode, result.Timings.DecodeMs.Sum());
        profiler.Record(CaptionTotal, totalMs);
        profiler.Count(Profiler.CaptionUpdates);
    }
}
