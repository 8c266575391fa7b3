namespace RealtimeAssistant.Cluster.Grains;

/// <summary>What a stream is: set when it is opened, persisted with its grain, the same on every silo that runs it.</summary>
[GenerateSerializer, Alias("ra.StreamDefinition")]
public sealed record StreamDefinition
{
    /// <summary>A file (on the inference silos' machines), a URL OpenCV opens, a camera index, or synthetic[:seed=N,…].</summary>
    [Id(0)] public required string Source { get; init; }
    /// <summary>The caption instruction (null: the model's own).</summary>
    [Id(1)] public string? Prompt { get; init; }
    /// <summary>Write policy: every:N, change or finished.</summary>
    [Id(2)] public string Policy { get; init; } = "every:1";
    /// <summary>Frame budget in ms (null: one stride of the source's frames; 0: no governor).</summary>
    [Id(3)] public double? FrameBudgetMs { get; init; }
    [Id(4)] public int Stride { get; init; } = 5;
    [Id(5)] public int Window { get; init; } = 2;
    [Id(6)] public double Gate { get; init; } = 1.0;
    [Id(7)] public int MaxNewTokens { get; init; } = 48;
    /// <summary>gpe or reencode (a simulated silo runs its stand-in whatever this says).</summary>
    [Id(8)] public string Mode { get; init; } = "gpe";
    /// <summary>Replay a file or a synthetic clip from the start when it ends.</summary>
    [Id(9)] public bool Loop { get; init; } = true;
}

/// <summary>A failover: the silo the stream ran on died, and the supervisor reactivated it here.</summary>
[GenerateSerializer, Alias("ra.Failover")]
public sealed record FailoverRecord(
    [property: Id(0)] DateTimeOffset At,
    [property: Id(1)] string FromSilo,
    [property: Id(2)] string ToSilo,
    [property: Id(3)] long AfterSeq);

/// <summary>A planned move (drain): the stream was migrated from one silo to another.</summary>
[GenerateSerializer, Alias("ra.Move")]
public sealed record MoveRecord(
    [property: Id(0)] DateTimeOffset At,
    [property: Id(1)] string FromSilo,
    [property: Id(2)] string ToSilo,
    [property: Id(3)] long AfterSeq);

/// <summary>A stream's state and live numbers, as the API shows them.</summary>
[GenerateSerializer, Alias("ra.StreamStatus")]
public sealed record StreamStatus
{
    [Id(0)] public required string Id { get; init; }
    /// <summary>starting, running, ended, failed or closed (ended and failed: its log ends with an "end" entry).</summary>
    [Id(1)] public required string State { get; init; }
    [Id(2)] public required StreamDefinition Definition { get; init; }
    /// <summary>The silo running it now ("host:port", and its name).</summary>
    [Id(3)] public string? Silo { get; init; }
    [Id(4)] public string? SiloName { get; init; }
    [Id(5)] public DateTimeOffset Created { get; init; }
    /// <summary>The newest sequence number given to a segment, and the newest one the durable log holds.</summary>
    [Id(6)] public long LastSeq { get; init; }
    [Id(7)] public long DurableSeq { get; init; }
    /// <summary>ok, or degraded (the log is unreachable: captions go on from memory and are appended when it returns).</summary>
    [Id(8)] public string Log { get; init; } = "ok";
    [Id(9)] public string? LogError { get; init; }
    [Id(10)] public IReadOnlyList<FailoverRecord> Failovers { get; init; } = [];
    [Id(11)] public IReadOnlyList<MoveRecord> Moves { get; init; } = [];
    [Id(12)] public string Header { get; init; } = "";
    [Id(13)] public string SourceStatus { get; init; } = "";
    [Id(14)] public long Frames { get; init; }
    [Id(15)] public long Reads { get; init; }
    [Id(16)] public long Captions { get; init; }
    [Id(17)] public long Answers { get; init; }
    [Id(18)] public long DroppedFrames { get; init; }
    [Id(19)] public string? LastText { get; init; }
    [Id(20)] public string? Error { get; init; }
    /// <summary>The running stream's source status and numbers, as the HTTP API's GET /v1/streams/{id} gives them (JSON; null while no activation runs it).</summary>
    [Id(21)] public string? Live { get; init; }
}

/// <summary>One entry of a stream's caption log: its sequence number, its event type (segment, answer, ended) and its JSON.</summary>
[GenerateSerializer, Alias("ra.LogEntry")]
public readonly record struct LogEntry(
    [property: Id(0)] long Seq,
    [property: Id(1)] string Type,
    [property: Id(2)] string Data);

/// <summary>A page of a log after a cursor: entries the log no longer holds (counted), then the held ones in order.</summary>
[GenerateSerializer, Alias("ra.LogPage")]
public sealed record LogPage(
    [property: Id(0)] long Missed,
    [property: Id(1)] IReadOnlyList<LogEntry> Entries)
{
    public static readonly LogPage Empty = new(0, []);
}

/// <summary>
/// A stream grain refusing what it was asked (a source it cannot open, a question to a stream that
/// is not running): the caller's mistake, carried across silos (Core's <see cref="UserError"/> has
/// no Orleans codec). <see cref="ClusterStreamHost"/> turns it back into a UserError.
/// </summary>
[GenerateSerializer, Alias("ra.StreamRefused")]
public sealed class StreamRefusedException(string message) : Exception(message);
