using RealtimeAssistant.Model;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// A captioner fed one frame at a time. GPE (<see cref="StreamingSession"/>) and the two baselines
/// (re-encoding, interleaved) sit behind this, so the benchmark drives all three the same way.
/// Frames arrive already vision-encoded: that cost is one frame per update for every method.
/// </summary>
public interface IStreamingCaptioner : IDisposable
{
    string Name { get; }
    void AppendFrame(Tensor features);
    IEnumerable<TokenEvent> Write(string? question = null);
    /// <summary>A frame arrives and a caption is due: READ then WRITE (GPE does both in one decoder pass).</summary>
    IEnumerable<TokenEvent> AppendFrameAndWrite(Tensor features, string? question = null)
    {
        AppendFrame(features);
        return Write(question);
    }
    UpdateCost LastCost { get; }
    KvCache Cache { get; }
}
