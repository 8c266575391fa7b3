using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cluster.Log;
using RealtimeAssistant.Cluster.Placement;
using RealtimeAssistant.Cluster.Streams;
using RealtimeAssistant.Server.Streams;

namespace RealtimeAssistant.Cluster.Grains;

/// <summary>A stream's persisted record: its definition, and what happened to it.</summary>
[GenerateSerializer, Alias("ra.StreamRecord")]
public sealed class StreamRecord
{
    [Id(0)] public StreamDefinition? Definition { get; set; }
    [Id(1)] public DateTimeOffset Created { get; set; }
    [Id(2)] public bool Closed { get; set; }
    /// <summary>An activation was running it and has not stopped cleanly (a silo's death leaves this set).</summary>
    [Id(3)] public bool Running { get; set; }
    [Id(4)] public string? Silo { get; set; }
    [Id(5)] public List<FailoverRecord> Failovers { get; set; } = new();
    [Id(6)] public List<MoveRecord> Moves { get; set; } = new();
    /// <summary>ended or failed: the stream stopped by itself (a file that does not loop ran out, or it failed) and its log ends; no activation runs it again.</summary>
    [Id(7)] public string? Finished { get; set; }
    [Id(8)] public string? FinishedError { get; set; }
}

/// <summary>
/// See <see cref="IStreamGrain"/>. An activation runs the stream from activation to deactivation:
/// it learns the log's top, starts the source, session and frame loop, and numbers and logs each
/// segment. Kept alive (a stream is busy even when no one calls it); a reminder reactivates it
/// should every other path miss a silo's death, and the supervisor does so within seconds.
/// </summary>
[KeepAlive, InferencePlacement]
public sealed class StreamGrain(
    [PersistentState("stream", ClusterStorage.Name)] IPersistentState<StreamRecord> record,
    IServiceProvider services,
    CaptionLog log,
    ILocalSiloDetails silo,
    ILogger<StreamGrain> logger)
    : Grain, IStreamGrain, IRemindable, IGrainMigrationParticipant
{
    const string ReminderName = "keep-running";
    const string SeqKey = "ra.seq", FromKey = "ra.from";
    StreamLogWriter? _writer;
    RunningStream? _running;
    string? _error;
    long? _handedSeq;
    string? _migratedFrom;
    bool _closing;

    string Id => this.GetPrimaryKeyString();
    string Here => silo.SiloAddress.ToParsableString();
    IStreamDirectoryGrain Directory => GrainFactory.GetGrain<IStreamDirectoryGrain>(0);

    public override async Task OnActivateAsync(CancellationToken ct)
    {
        if (record.State.Definition is null || record.State.Closed || record.State.Finished is not null) return;
        await Run(ct);
    }

    async Task Run(CancellationToken ct)
    {
        var r = record.State;
        var now = DateTimeOffset.UtcNow;
        var writer = _writer = new StreamLogWriter(log, Id, logger: logger) { Fenced = () => _running?.Dispose() };
        await writer.StartAsync(TimeSpan.FromSeconds(2), _handedSeq);
        if (_migratedFrom is not null)
            r.Moves.Add(new MoveRecord(now, _migratedFrom, Here, writer.LastSeq));
        else if (r.Running && r.Silo is { } previous && previous != Here)
        {
            r.Failovers.Add(new FailoverRecord(now, previous, Here, writer.LastSeq));
            logger.LogWarning("stream {Stream}: failed over from {From} (after segment {Seq})", Id, previous, writer.LastSeq);
        }
        var runtime = services.GetService<StreamRuntime>();
        try
        {
            if (runtime is null) throw new UserError($"silo {silo.Name} runs no streams (it is a gateway)");
            _running = runtime.Start(Id, r.Definition!, now - r.Created, await LastLoggedFrame(writer), (type, data) => writer.Append(type, data), silo.Name);
            _error = null;
        }
        catch (UserError e)
        {
            _error = e.Message;
            logger.LogWarning("stream {Stream}: {Message}", Id, e.Message);
        }
        r.Running = true;
        r.Silo = Here;
        await TryWriteState();
        try { await this.RegisterOrUpdateReminder(ReminderName, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1)); }
        catch (Exception e) { logger.LogWarning("stream {Stream}: no reminder ({Message}); the supervisor still watches it", Id, e.Message); }
        await Report();
        this.RegisterGrainTimer(Tick, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
    }

    /// <summary>The newest frame an earlier run logged, so that a resumed clip goes on after it (null: none, or the log is unreachable now).</summary>
    async Task<long?> LastLoggedFrame(StreamLogWriter writer)
    {
        if (!writer.TopKnown || writer.LastSeq == 0) return null;
        try { return await log.LastFrameAsync(Id); }
        catch (Exception e) when (StreamLogWriter.IsRedisFailure(e)) { return null; }
    }

    /// <summary>Every few seconds: tell the directory where the stream runs; leave if another activation owns the log; end the log of a stream that stopped by itself.</summary>
    async Task Tick(CancellationToken ct)
    {
        if (_writer is { IsFenced: true })
        {
            DeactivateOnIdle();
            return;
        }
        if (_running is { } run && record.State.Finished is null && _writer is { TopKnown: true } writer && (run.Ended || run.Error is not null))
        {
            // As the single server does: followers get an "end" event and their event streams close.
            var reason = run.Error is null ? "ended" : "failed";
            writer.Append(StreamEvents.Ended, StreamEventData.EndJson(reason, run.Error));
            record.State.Finished = reason;
            record.State.FinishedError = run.Error;
            await TryWriteState();
            logger.LogInformation("stream {Stream}: {Reason}{Error}", Id, reason, run.Error is null ? "" : $": {run.Error}");
        }
        await Report();
    }

    async Task Report()
    {
        try { await Directory.Placed(Id, silo.SiloAddress); }
        catch (Exception e) { logger.LogDebug("stream {Stream}: directory unreachable: {Message}", Id, e.Message); }
    }

    async Task TryWriteState()
    {
        try { await record.WriteStateAsync(); }
        catch (Exception e) { logger.LogWarning("stream {Stream}: state not persisted ({Message})", Id, e.Message); }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken ct)
    {
        if (_writer is null) return;
        bool fenced = _writer.IsFenced;
        _running?.Dispose();
        _running = null;
        if (!fenced) await _writer.FlushAsync(TimeSpan.FromSeconds(5));
        _handedSeq = _writer.LastSeq;
        await _writer.DisposeAsync();
        _writer = null;
        if (fenced) return; // the state belongs to the activation that owns the log now
        if (!_closing)
        {
            record.State.Running = false;
            await TryWriteState();
        }
        try { await Directory.Left(Id, silo.SiloAddress); } catch (Exception) { }
    }

    public void OnDehydrate(IDehydrationContext context)
    {
        if (_handedSeq is { } seq) context.TryAddValue(SeqKey, seq);
        context.TryAddValue(FromKey, Here);
    }

    public void OnRehydrate(IRehydrationContext context)
    {
        if (context.TryGetValue(SeqKey, out long seq)) _handedSeq = seq;
        if (context.TryGetValue(FromKey, out string? from)) _migratedFrom = from;
    }

    public async Task<StreamStatus> Open(StreamDefinition definition)
    {
        if (record.State.Definition is not null)
        {
            if (record.State.Closed) throw new StreamRefusedException($"stream {Id} was closed");
            return (await Info())!;
        }
        record.State = new StreamRecord { Definition = definition, Created = DateTimeOffset.UtcNow };
        await record.WriteStateAsync();
        await Run(CancellationToken.None);
        if (_error is { } why)
        {
            // A definition this silo cannot run (a missing file, a bad source) is the client's error: nothing stays behind.
            await Close();
            throw new StreamRefusedException(why);
        }
        return (await Info())!;
    }

    public Task<StreamStatus?> Info()
    {
        var r = record.State;
        if (r.Definition is null) return Task.FromResult<StreamStatus?>(null);
        var w = _writer;
        var run = _running;
        string state = r.Closed ? "closed" : r.Finished ?? (_error is not null || run?.Error is not null ? "failed" : run is null ? "starting" : run.Ended ? "ended" : "running");
        return Task.FromResult<StreamStatus?>(new StreamStatus
        {
            Id = Id, State = state, Definition = r.Definition, Silo = run is null ? null : Here, SiloName = run is null ? null : silo.Name,
            Created = r.Created, LastSeq = w?.LastSeq ?? 0, DurableSeq = w?.DurableSeq ?? 0,
            Log = w is null || !w.Degraded ? "ok" : "degraded", LogError = w?.Error,
            Failovers = r.Failovers.ToArray(), Moves = r.Moves.ToArray(),
            Header = run?.Plan.Header ?? "", SourceStatus = run?.SourceStatus ?? "",
            Frames = run?.Frames ?? 0, Reads = run?.Reads ?? 0, Captions = run?.Captions ?? 0, Answers = run?.Answers ?? 0,
            DroppedFrames = run?.Dropped ?? 0, LastText = run?.LastText, Error = _error ?? run?.Error ?? r.FinishedError, Live = run?.LiveJson(),
        });
    }

    public Task<bool> Ensure() => Task.FromResult(record.State.Definition is not null && !record.State.Closed);

    public Task<string> Ask(string question)
    {
        if (string.IsNullOrWhiteSpace(question)) throw new StreamRefusedException("a question needs text");
        if (question.Length > 2000) throw new StreamRefusedException("a question is at most 2000 characters");
        var run = _running ?? throw new StreamRefusedException(record.State.Definition is null ? $"no stream {Id}" : $"stream {Id} is not running");
        var id = "q_" + Guid.NewGuid().ToString("N")[..12];
        _writer?.Append(StreamEvents.Question, StreamEventData.QuestionJson(id, question.Trim()));
        run.Ask(id, question);
        return Task.FromResult(id);
    }

    public async Task<bool> Close()
    {
        if (record.State.Definition is null) return false;
        if (record.State.Closed) return true;
        _closing = true;
        _running?.Dispose();
        _running = null;
        if (_writer is { } w)
        {
            if (record.State.Finished is null) w.Append(StreamEvents.Ended, StreamEventData.EndJson("deleted", null));
            await w.FlushAsync(TimeSpan.FromSeconds(5));
        }
        try { await log.ExpireAsync(Id); } catch (Exception e) when (StreamLogWriter.IsRedisFailure(e)) { }
        record.State.Closed = true;
        record.State.Running = false;
        await TryWriteState();
        try
        {
            if (await this.GetReminder(ReminderName) is { } reminder) await this.UnregisterReminder(reminder);
        }
        catch (Exception e) { logger.LogDebug("stream {Stream}: reminder not removed: {Message}", Id, e.Message); }
        await Directory.Remove(Id);
        DeactivateOnIdle();
        return true;
    }

    public Task<LogPage> ReadMemory(long after, int max) =>
        Task.FromResult(_writer?.ReadMemory(after, Math.Clamp(max, 1, 1024)) ?? LogPage.Empty);

    public Task<bool> Migrate()
    {
        if (_running is null) return Task.FromResult(false);
        this.MigrateOnIdle();
        return Task.FromResult(true);
    }

    /// <summary>The reminder's only job is to have activated this grain.</summary>
    public Task ReceiveReminder(string reminderName, TickStatus status) => Task.CompletedTask;
}
