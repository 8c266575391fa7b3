using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Pipeline;

/// <summary>Reports one update's stage times to the profiler, under the stage names the HUD lists.</summary>
public static class CaptionStages
{
    public const string CaptionTotal = "caption";
    public const string CaptionWords = "caption_words";
    public const string Read = "read";
    public const string Write = "write";

    /// <summary>A read that came without a write.</summary>
    public static void RecordRead(Profiler profiler, UpdateReport r)
    {
        profiler.Record(Profiler.Preprocess, r.PreprocessMs);
        profiler.Record(Profiler.Vision, r.VisionMs);
        profiler.Record(Read, r.ReadMs);
    }

    /// <summary>A write (with the read it came with, if any) that took <paramref name="totalMs"/> in all.</summary>
    public static void RecordWrite(Profiler profiler, UpdateReport r, double totalMs)
    {
        if (r.VisionFrames > 0)
        {
            profiler.Record(Profiler.Preprocess, r.PreprocessMs);
            profiler.Record(Profiler.Vision, r.VisionMs);
            profiler.Record(Read, r.ReadMs);
        }
        profiler.Record(Profiler.Prefill, r.DecoderMs);
        profiler.Record(Profiler.Decode, r.DecodeMs.Sum());
        profiler.Record(Write, r.WriteMs);
        profiler.Record(CaptionTotal, totalMs);
        profiler.Count(Profiler.CaptionUpdates);
    }
}
