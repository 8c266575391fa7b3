namespace RealtimeAssistant.Output;

/// <summary>Writes captions.srt, one flushed cue per entry. With append, numbering continues the file's.</summary>
public sealed class SrtWriter : ICaptionWriter
{
    readonly AppendOnlyFile file;

    public string Path => file.Path;
    public int Count { get; private set; }

    public SrtWriter(string path, bool append = false)
    {
        if (append && File.Exists(path)) Count = SubtitleParser.ReadFile(path).Count;
        file = new AppendOnlyFile(path, append);
    }

    public void Write(CaptionEntry entry)
    {
        var cue = $"{Count + 1}\n{SubtitleTime.Srt(entry.Start)} --> {SubtitleTime.Srt(entry.End)}\n{CaptionText.ForCue(entry.Text)}\n\n";
        file.WriteRecord(cue);
        Count++;
    }

    public void Dispose() => file.Dispose();
}
