using System.Text;
using System.Text.Json;

namespace RealtimeAssistant.Output;

/// <summary>
/// Writes captions.jsonl: one JSON object per line with t_start, t_end (seconds), text,
/// latency_ms, kept_tokens, frame and any extra fields. Each line is flushed as it is written.
/// </summary>
public sealed class JsonlWriter : ICaptionWriter
{
    readonly AppendOnlyFile file;

    public string Path => file.Path;
    public int Count { get; private set; }

    public JsonlWriter(string path, bool append = false)
    {
        if (append && File.Exists(path)) Count = CaptionJsonl.Read(path).Count;
        file = new AppendOnlyFile(path, append);
    }

    public void Write(CaptionEntry entry)
    {
        file.WriteRecord(CaptionJsonl.Line(entry) + "\n");
        Count++;
    }

    public void Dispose() => file.Dispose();
}
