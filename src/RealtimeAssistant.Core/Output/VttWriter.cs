namespace RealtimeAssistant.Output;

/// <summary>Writes captions.vtt: the WEBVTT header at once, then one flushed cue per entry.</summary>
public sealed class VttWriter : ICaptionWriter
{
    readonly AppendOnlyFile file;

    public string Path => file.Path;
    public int Count { get; private set; }

    public VttWriter(string path, bool append = false)
    {
        if (append && File.Exists(path) && new FileInfo(path).Length > 0) Count = SubtitleParser.ReadFile(path).Count;
        file = new AppendOnlyFile(path, append);
        // The header makes even a run with no captions a valid (empty) VTT file.
        if (file.Length == 0) file.WriteRecord("WEBVTT\n\n");
    }

    public void Write(CaptionEntry entry)
    {
        file.WriteRecord($"{SubtitleTime.Vtt(entry.Start)} --> {SubtitleTime.Vtt(entry.End)}\n{CaptionText.ForCue(entry.Text)}\n\n");
        Count++;
    }

    public void Dispose() => file.Dispose();
}
