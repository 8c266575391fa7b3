using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Server.Inference;

/// <summary>
/// A live stream's session on the shared model: every call that runs the model goes through the
/// <see cref="ModelScheduler"/> (without batching: a read in one turn, a write one step per turn;
/// with it, each pass joins a batch through the engine's runner). A stream's own
/// caption prompt, when it has one, stands in for the model's instruction.
/// </summary>
public sealed class ScheduledSession(ICaptionSession inner, ModelScheduler scheduler, string? prompt = null) : ICaptionSession
{
    /// <summary>Stops waiting for turns (the stream's frame loop is stopping).</summary>
    public CancellationToken Stopping { get; set; }

    public string Mode => inner.Mode;
    public Engine Engine => inner.Engine;
    public StreamingOptions Options => inner.Options;
    public int FramesInWindow => inner.FramesInWindow;
    public long FramesRead => inner.FramesRead;
    public KvCache Cache => inner.Cache;
    public PruningConfig? Pruning { get => inner.Pruning; set => inner.Pruning = value; }
    public UpdateReport Last => inner.Last;
    public string? Prompt => prompt;

    public void Read(Mat frame) => scheduler.Session(() => inner.Read(frame), Stopping);
    public void Read(EncodedImage frame) => scheduler.Session(() => inner.Read(frame), Stopping);
    public IEnumerable<TokenEvent> Write(string? question = null) => scheduler.Steps(() => inner.Write(question ?? prompt), Stopping);
    public IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null) => scheduler.Steps(() => inner.ReadAndWrite(frame, question ?? prompt), Stopping);
    public IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) => scheduler.Steps(() => inner.ReadAndWrite(frame, question ?? prompt), Stopping);

    public void Dispose() => inner.Dispose();
}
