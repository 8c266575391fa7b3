namespace RealtimeAssistant.Output;

/// <summary>
/// Appends captions to a file, flushing each one so an interrupted run leaves a valid file.
/// Not thread-safe: one thread (the one that produces captions) writes.
/// </summary>
public interface ICaptionWriter : IDisposable
{
    string Path { get; }
    /// <summary>Entries in the file, including any that were there before an append.</summary>
    int Count { get; }
    void Write(CaptionEntry entry);
}
