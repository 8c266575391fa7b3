using System.Text.Json;
using System.Text.Json.Serialization;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Server.Streams;

/// <summary>Where a cluster ran a segment: the silo, and the wall clock (Unix ms) of the frame's capture and of the segment's end. Absent on a single server.</summary>
public sealed record SegmentOrigin(string Silo, double CapturedAt, long WrittenAt);

/// <summary>
/// The data of a stream's events, as SSE and the WebSocket send them. One definition for this
/// process's streams and a cluster's, so the two read the same to a client; a cluster adds where
/// it ran (silo, captured_at, written_at), which a single server leaves out.
/// </summary>
public static class StreamEventData
{
    static readonly JsonSerializerOptions Options = new(Json.Options) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public sealed record KeptGrid(int Width, int Height, double[] Cells);

    public sealed record SegmentEvent(
        long Segment, string Text, long Frame, double Time, int Tokens, string Mode, int Reads, string? Level, int? K,
        double ReadMs, double WriteMs, double LatencyMs, int KeptTokens, int VisualTokens, KeptGrid? KeptGrid)
    {
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Silo { get; init; }
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CapturedAt { get; init; }
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? WrittenAt { get; init; }
    }

    public sealed record AnswerEvent(string? QuestionId, string? Question, string Text, long Frame, double Time, int Tokens, double WriteMs, double LatencyMs)
    {
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Silo { get; init; }
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CapturedAt { get; init; }
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? WrittenAt { get; init; }
    }

    /// <summary>A finished caption; <paramref name="number"/> identifies it in its stream (its deltas carry the same number).</summary>
    public static string SegmentJson(long number, StreamSegment s, double latencyMs, SegmentOrigin? origin = null)
    {
        var r = s.Report;
        return JsonSerializer.Serialize(new SegmentEvent(number, s.Text, s.FrameIndex, Seconds(s.At), s.Tokens, s.Mode, s.ReadsSince, s.Level, s.Budget,
            Round(s.ReadMs), Round(s.WriteMs), Round(latencyMs), r.KeptTokens, r.VisualTokens,
            r.KeptGrid is { } g ? new KeptGrid(r.GridW, r.GridH, g.Select(v => Math.Round(v, 3)).ToArray()) : null)
        {
            Silo = origin?.Silo, CapturedAt = origin?.CapturedAt, WrittenAt = origin?.WrittenAt,
        }, Options);
    }

    /// <summary>The answer to a question, tagged with the question's id.</summary>
    public static string AnswerJson(string? questionId, StreamSegment s, double latencyMs, SegmentOrigin? origin = null) =>
        JsonSerializer.Serialize(new AnswerEvent(questionId, s.Question, s.Text, s.FrameIndex, Seconds(s.At), s.Tokens, Round(s.Ms), Round(latencyMs))
        {
            Silo = origin?.Silo, CapturedAt = origin?.CapturedAt, WrittenAt = origin?.WrittenAt,
        }, Options);

    /// <summary>A question was queued.</summary>
    public static string QuestionJson(string questionId, string text) => Json.Serialize(new { question_id = questionId, text });

    /// <summary>The stream's last event: why it ended (ended, failed, deleted) and the error, if any.</summary>
    public static string EndJson(string reason, string? error) => Json.Serialize(new { reason, error });

    /// <summary>
    /// A stream's numbers, as GET /v1/streams/{id} and the stats events give them; the governor's level
    /// is the setting the session's next read runs at, its pixel bound included. <paramref name="model"/>:
    /// the model scheduler's turns (steps run, steps that waited, mean and longest wait).
    /// </summary>
    public static object Numbers(FrameLoop loop, ICaptionSession session, (long Steps, long Waited, double MeanWaitMs, double MaxWaitMs) model)
    {
        var snap = loop.Profiler.Snapshot();
        var latency = snap.Stage(Profiler.GlassToCaption);
        var stats = loop.Driver.Stats;
        return new
        {
            fps = Math.Round(snap.Counter(Profiler.FramesCaptured)?.PerSecond ?? 0, 2),
            caption_hz = Math.Round(snap.Counter(Profiler.CaptionUpdates)?.PerSecond ?? 0, 3),
            glass_to_caption_ms = new { p50 = Round(latency?.P50 ?? 0), p95 = Round(latency?.P95 ?? 0), last = Round(latency?.Last ?? 0) },
            frames_captured = loop.FramesCaptured,
            frames_read = stats.Read,
            frames_in_window = session.FramesInWindow,
            dropped_frames = loop.DroppedForInference,
            skipped_frames = new { unchanged = stats.Skipped, over_budget = stats.BudgetSkipped },
            reads_over_budget = stats.OverBudget,
            captions = loop.Captions - stats.Answers,
            answers = stats.Answers,
            read_ms = Round(snap.Stage(CaptionStages.Read)?.Last ?? 0),
            frame_budget_ms = loop.BudgetMs is { } b ? Round(b) : (double?)null,
            governor = new { level = SessionBase.LevelName(session.Pruning, session.MaxPixels), k = session.Pruning?.Budget },
            model = new { steps = model.Steps, waited = model.Waited, mean_wait_ms = Round(model.MeanWaitMs), max_wait_ms = Round(model.MaxWaitMs) },
        };
    }

    /// <summary><see cref="Numbers"/>'s shape with nothing counted yet: a stream that no loop runs now (a cluster's, between silos).</summary>
    public static readonly object NoNumbers = new
    {
        fps = 0.0, caption_hz = 0.0, glass_to_caption_ms = new { p50 = 0.0, p95 = 0.0, last = 0.0 },
        frames_captured = 0L, frames_read = 0L, frames_in_window = 0, dropped_frames = 0L, skipped_frames = new { unchanged = 0L, over_budget = 0L },
        reads_over_budget = 0L, captions = 0L, answers = 0L, read_ms = 0.0, frame_budget_ms = (double?)null, governor = new { level = (string?)null, k = (int?)null },
        model = new { steps = 0L, waited = 0L, mean_wait_ms = 0.0, max_wait_ms = 0.0 },
    };

    /// <summary>The source's state and its reconnects, as GET /v1/streams/{id} gives them (the push counts: null unless the source is pushed frames).</summary>
    public static object SourceStatus(FrameLoop loop, PushFrameSource? push = null, long? overRate = null, long? rejected = null)
    {
        var src = loop.Source as IReconnectingSource;
        return new
        {
            status = loop.SourceStatus, retries = src?.Retries ?? 0, recoveries = src?.Recoveries ?? 0, attempt = src?.Attempt ?? 0,
            frames_pushed = push?.FramesPushed, push_over_rate = push is null ? null : overRate, push_rejected = push is null ? null : rejected,
        };
    }

    static double Seconds(TimeSpan t) => Math.Round(t.TotalSeconds, 3);
    static double Round(double ms) => Math.Round(ms, 1);
}
