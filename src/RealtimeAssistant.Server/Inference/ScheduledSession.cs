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
public sealed class ScheduledSession(ICaptionSession inner, ModelScheduler scheduler, string? prompt = null) : SessionDecorator(inner)
{
    /// <summary>Stops waiting for turns (the stream's frame loop is stopping).</summary>
    public CancellationToken Stopping { get; set; }

    public string? Prompt => prompt;

    public override double WarmUp() => scheduler.Run(() => Inner.WarmUp(), Stopping);
    public override void Read(Mat frame) => scheduler.Session(() => Inner.Read(frame), Stopping);
    public override void Read(EncodedImage frame) => scheduler.Session(() => Inner.Read(frame), Stopping);
    public override IEnumerable<TokenEvent> Write(string? question = null) => scheduler.Steps(() => Inner.Write(question ?? prompt), Stopping);
    public override IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null) => scheduler.Steps(() => Inner.ReadAndWrite(frame, question ?? prompt), Stopping);
    public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) => scheduler.Steps(() => Inner.ReadAndWrite(frame, question ?? prompt), Stopping);
}
