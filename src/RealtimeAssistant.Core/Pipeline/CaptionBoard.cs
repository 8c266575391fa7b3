using System.Diagnostics;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Pipeline;

/// <summary>What the caption area shows right now: an immutable snapshot of a <see cref="CaptionBoard"/>.</summary>
/// <param name="Text">The caption as shown: the one streaming in, or the last finished one.</param>
/// <param name="Version">Changes whenever <see cref="Text"/> does.</param>
/// <param name="Completed">How many captions have finished so far.</param>
/// <param name="Streaming">True while words are still arriving.</param>
/// <param name="FrameIndex">The frame the caption describes (-1 before the first).</param>
/// <param name="CapturedAt">Stopwatch ticks when that frame left its source (glass time).</param>
/// <param name="Question">Set while the caption area shows an answer to a typed question.</param>
public sealed record CaptionView(string Text, long Version, long Completed, bool Streaming, long FrameIndex, TimeSpan FrameTime,
    long CapturedAt, float[]? KeptGrid, int GridW, int GridH, int KeptTokens, int VisualTokens, string? Question)
{
    public static readonly CaptionView Empty = new("", 0, 0, false, -1, TimeSpan.Zero, 0, null, 0, 0, 0, 0, null);
}

/// <summary>
/// The caption state shared between the inference thread (which writes it, delta by delta) and
/// the render thread (which reads a snapshot every frame and never waits for the model). While a
/// new caption streams in, the board shows the previous one until the first word arrives.
/// </summary>
public sealed class CaptionBoard
{
    readonly object gate = new();
    readonly System.Text.StringBuilder streaming = new();
    CaptionView view = CaptionView.Empty;
    long version;
    // The caption being generated: its frame, and whether a word of it has been shown yet.
    long pendingFrame = -1, pendingCapturedAt;
    TimeSpan pendingTime;
    string? pendingQuestion;
    long answerUntil;   // Stopwatch ticks: an answer stays up at least this long

    /// <summary>How long an answer to a typed question stays in the caption area before captions resume.</summary>
    public TimeSpan AnswerHold { get; init; } = TimeSpan.FromSeconds(4);

    public CaptionView View { get { lock (gate) return view; } }

    /// <summary>True while an answer must stay up (the inference thread waits with new captions).</summary>
    public bool HoldingAnswer { get { lock (gate) return Stopwatch.GetTimestamp() < answerUntil; } }

    /// <summary>A new caption for <paramref name="frameIndex"/> starts (inference thread).</summary>
    public void Begin(long frameIndex, TimeSpan frameTime, long capturedAt, string? question = null)
    {
        lock (gate)
        {
            streaming.Clear();
            pendingFrame = frameIndex;
            pendingTime = frameTime;
            pendingCapturedAt = capturedAt;
            pendingQuestion = question;
            if (question is not null) Publish($"Q: {question}  A: …", streaming: true);
        }
    }

    /// <summary>A decoded text delta arrived (inference thread).</summary>
    public void Append(string delta)
    {
        if (delta.Length == 0) return;
        lock (gate)
        {
            streaming.Append(delta);
            Publish(Shown(streaming.ToString().Trim()), streaming: true);
        }
    }

    /// <summary>The caption is done: its final text, and the report of the update that wrote it (the pruner's grid).</summary>
    public CaptionView Complete(string text, UpdateReport report)
    {
        lock (gate)
        {
            if (pendingQuestion is not null) answerUntil = Stopwatch.GetTimestamp() + (long)(AnswerHold.TotalSeconds * Stopwatch.Frequency);
            view = new CaptionView(Shown(text), ++version, view.Completed + 1, false, pendingFrame, pendingTime, pendingCapturedAt,
                report.KeptGrid, report.GridW, report.GridH, report.KeptTokens, report.VisualTokens, pendingQuestion);
            pendingQuestion = null;
            return view;
        }
    }

    string Shown(string text) => pendingQuestion is { } q ? $"Q: {q}  A: {text}" : text;

    void Publish(string text, bool streaming)
    {
        var v = view;
        view = v with { Text = text, Version = ++version, Streaming = streaming, FrameIndex = pendingFrame, FrameTime = pendingTime,
            CapturedAt = pendingCapturedAt, Question = pendingQuestion };
    }
}
