namespace RealtimeAssistant.Output;

/// <summary>
/// captions.srt, captions.vtt and captions.jsonl written together. On resume the three are first
/// rewritten from the JSONL's entries, so they agree even if the last run died between writes.
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
        writers = [new SrtWriter(plan.Srt), new VttWriter(plan.Vtt), new JsonlWriter(plan.Jsonl)];
        foreach (var entry in plan.Existing) Write(entry);
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
