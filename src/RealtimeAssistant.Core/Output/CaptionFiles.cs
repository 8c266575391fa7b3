namespace RealtimeAssistant.Output;

/// <summary>
/// captions.srt, captions.vtt and captions.jsonl written together. On resume the three are first
/// rebuilt from the JSONL's entries, so they agree even if the last run died between writes
/// (or in the middle of a JSONL line).
/// </summary>
public sealed class CaptionFiles : ICaptionWriter
{
    readonly ICaptionWriter[] writers;

    public string Path { get; }
    public int Count => writers[^1].Count;

    public CaptionFiles(OutputPlan plan)
    {
        Path = plan.Directory;
        Directory.CreateDirectory(plan.Directory);
        if (plan.Existing.Count > 0) RewriteJsonl(plan);
        writers = [new SrtWriter(plan.Srt), new VttWriter(plan.Vtt), new JsonlWriter(plan.Jsonl, append: plan.Existing.Count > 0)];
        foreach (var entry in plan.Existing)
            for (int i = 0; i < writers.Length - 1; i++) writers[i].Write(entry);
    }

    /// <summary>The JSONL is the only record of the earlier run: replace it atomically, never truncate it first.</summary>
    static void RewriteJsonl(OutputPlan plan)
    {
        var temp = plan.Jsonl + ".tmp";
        using (var w = new JsonlWriter(temp))
            foreach (var entry in plan.Existing) w.Write(entry);
        File.Move(temp, plan.Jsonl, overwrite: true);
    }

    public void Write(CaptionEntry entry)
    {
        foreach (var w in writers) w.Write(entry); // JSONL last: it is what resume trusts
    }

    public void Dispose()
    {
        foreach (var w in writers) w.Dispose();
    }
}
