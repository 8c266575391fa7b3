using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// The live frame loop's capture and inference threads. Capture runs at the source's rate and
/// publishes every frame to two one-frame slots: one the render thread takes from, one the
/// inference thread takes from. Inference runs at model speed on the newest frame only (a slow
/// model drops frames, it never queues them) and streams its words into <see cref="Board"/>.
/// The render thread (the caller's: it owns the GL context) polls <see cref="TryTakeDisplayFrame"/>
/// and <see cref="Board"/> at display rate and never waits for either.
/// </summary>
public sealed class LiveLoop : IDisposable
{
    readonly IFrameCaptioner captioner;
    readonly ILogger? logger;
    readonly FrameHistory history;
    readonly LatestFrameSlot inferenceSlot = new();
    readonly LatestFrameSlot displaySlot = new();
    readonly CaptureThread capture;
    readonly ConcurrentQueue<string> questions = new();
    readonly CancellationTokenSource stop = new();
    Thread? inference;
    volatile Exception? inferenceError;
    long captions;

    public Profiler Profiler { get; }
    public CaptionBoard Board { get; } = new();
    public IFrameSource Source { get; }
    public IFrameCaptioner Captioner => captioner;

    /// <summary>Frames the model never saw because a newer one replaced them.</summary>
    public long DroppedForInference => inferenceSlot.Dropped;
    /// <summary>Frames the render thread never showed (display slower than the source).</summary>
    public long DroppedForDisplay => displaySlot.Dropped;
    public long FramesCaptured => capture.FramesCaptured;
    public long Captions => Interlocked.Read(ref captions);
    /// <summary>The source ended and every frame it gave was shown.</summary>
    public bool Ended => capture.EndOfStream && !displaySlot.HasFrame;
    /// <summary>The inference thread stopped (source ended, or it failed: see <see cref="InferenceError"/>).</summary>
    public bool InferenceStopped => inference is { IsAlive: false };
    public Exception? InferenceError => inferenceError;
    public Exception? CaptureError => capture.Error;

    /// <summary>The source's state for the HUD: "live", "camera 0 lost – retrying in 2.0 s (attempt 3)", "ended".</summary>
    public string SourceStatus => capture.Status;

    public LiveLoop(IFrameSource source, IFrameCaptioner captioner, Profiler profiler, ILogger? logger = null)
    {
        this.captioner = captioner;
        this.logger = logger;
        Profiler = profiler;
        history = new FrameHistory(FrameHistory.CapacityFor(captioner.FramesPerCaption, captioner.FrameStride));
        Source = new TeeFrameSource(source, history, displaySlot);
        capture = new CaptureThread(Source, inferenceSlot, profiler, logger);
    }

    public void Start()
    {
        capture.Start();
        inference = new Thread(RunInference) { IsBackground = true, Name = "inference" };
        inference.Start();
    }

    /// <summary>Asks a question about the next frame; the answer streams into the caption area.</summary>
    public void Ask(string question)
    {
        if (!string.IsNullOrWhiteSpace(question)) questions.Enqueue(question.Trim());
    }

    /// <summary>The newest frame not shown yet, if any. The caller owns (and disposes) it.</summary>
    public bool TryTakeDisplayFrame(out Frame? frame) => displaySlot.TryTake(out frame);

    void RunInference()
    {
        var ct = stop.Token;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                // An answer stays up a few seconds before captions take the area back.
                while (Board.HoldingAnswer && questions.IsEmpty && !ct.IsCancellationRequested) Thread.Sleep(20);
                using var frame = inferenceSlot.Take(ct);
                if (frame is null) break;
                questions.TryDequeue(out var question);
                var mats = history.Window(frame, captioner.FramesPerCaption, captioner.FrameStride);
                try
                {
                    var t0 = Stopwatch.GetTimestamp();
                    Board.Begin(frame.Index, frame.Timestamp, frame.CapturedAt, question);
                    var result = captioner.Caption(new CaptionRequest(mats, question), delta =>
                    {
                        Board.Append(delta);
                        Profiler.Count(CaptionStages.CaptionWords);
                    }, ct);
                    Board.Complete(result);
                    CaptionStages.Record(Profiler, result, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    Interlocked.Increment(ref captions);
                }
                finally
                {
                    for (int i = 0; i < mats.Count - 1; i++) mats[i].Dispose();
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e)
        {
            inferenceError = e;
            logger?.LogError(e, "inference failed");
        }
    }

    /// <summary>Stops both threads and waits for them (a caption in flight is cancelled between tokens).</summary>
    public void Stop()
    {
        stop.Cancel();
        capture.Stop();
        inference?.Join(TimeSpan.FromSeconds(10));
    }

    public void Dispose()
    {
        Stop();
        capture.Dispose();
        Source.Dispose();
        inferenceSlot.Dispose();
        displaySlot.Dispose();
        history.Dispose();
        stop.Dispose();
    }
}
