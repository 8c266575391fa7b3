using OpenCvSharp;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Pipeline;

/// <summary>What the app asks of a model: caption these frames, or answer a question about them.</summary>
public sealed record CaptionRequest(IReadOnlyList<Mat> Frames, string? Question = null);

/// <summary>One finished caption with where its time went and what the pruner kept.</summary>
public sealed record CaptionResult(string Text, CaptionTimings Timings, int VisualTokens, int KeptTokens, float[]? KeptGrid, int GridW, int GridH);

/// <summary>
/// The inference side of the frame loop. The app (capture, render, outputs) talks to the model
/// only through this, so the streaming session and the pruner plug in behind it.
/// </summary>
public interface IFrameCaptioner : IDisposable
{
    /// <summary>How many recent frames one caption looks at (2 for the demo model: motion needs two).</summary>
    int FramesPerCaption { get; }
    /// <summary>Frames between the frames of one request, at the source's rate.</summary>
    int FrameStride { get; }
    bool PruningEnabled { get; set; }
    /// <summary>Runs the model; <paramref name="onDelta"/> receives each text delta as it is decoded.</summary>
    CaptionResult Caption(CaptionRequest request, Action<string>? onDelta, CancellationToken ct);
}
