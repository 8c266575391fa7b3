using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Server.Streams;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cluster.Streams;

/// <summary>
/// What an inference silo runs streams with: its model (loaded once and shared by its streams) or
/// the simulated stand-in with its one device, and how sources are opened. A stream grain asks it
/// for a <see cref="RunningStream"/>; a gateway has none.
/// </summary>
public sealed class StreamRuntime : IDisposable
{
    readonly Engine? _engine;
    readonly SimulatedModel? _simulated;
    readonly Func<bool, bool, FrameSourceOptions> _sources;
    readonly ILoggerFactory? _logging;

    /// <param name="sources">Source options for (realtime, loop): the app adds its schemes (synthetic).</param>
    public StreamRuntime(Engine? engine, SimulatedModel? simulated, Func<bool, bool, FrameSourceOptions> sources, ILoggerFactory? logging = null)
    {
        if ((engine is null) == (simulated is null)) throw new ArgumentException("a stream runtime runs either a model or the simulated stand-in");
        _engine = engine;
        _simulated = simulated;
        _sources = sources;
        _logging = logging;
        if (simulated is not null) Device = new SimulatedDevice();
    }

    /// <summary>The simulated accelerator every stream of this silo shares (null with a real model).</summary>
    public SimulatedDevice? Device { get; }

    /// <summary>What an inference silo must share with the others: the model's identity, or the stand-in's costs.</summary>
    public string ModelVersion => _simulated?.Version ?? ModelIdentity.Of(_engine!.Directory);

    public string ModelDescription => _simulated is { } s ? s.Version : $"{RealtimeAssistant.Model.Checkpoint.HubCache.ModelName(_engine!.Directory)} ({ModelVersion})";

    /// <summary>
    /// Opens the source and starts the stream's frame loop. <paramref name="startAt"/>: how long the
    /// stream has been running, so that a file or clip resumed on this silo continues where it would
    /// be now (a live source is at its newest frame anyway), and <paramref name="lastFrame"/>: the newest
    /// frame an earlier run logged, which it starts after. Throws <see cref="UserError"/> for a definition it cannot run.
    /// </summary>
    public RunningStream Start(string id, StreamDefinition def, TimeSpan startAt, long? lastFrame, Action<string, Func<long, string>> append, string siloName)
    {
        var source = FrameSources.Open(def.Source, _sources(true, def.Loop) with
        {
            Logger = _logging?.CreateLogger("RealtimeAssistant.Capture"), StartAt = startAt, StartAfterFrame = lastFrame ?? -1,
        });
        try
        {
            var plan = StreamPlan.Resolve(def, _engine, _simulated, source.Fps);
            ICaptionSession session = _simulated is { } sim
                ? new SimulatedSession(sim, Device!, plan.Streaming)
                : SessionModes.Create(plan.Mode, _engine!, plan.Streaming);
            return new RunningStream(id, source, session, plan, append, siloName, _logging?.CreateLogger("RealtimeAssistant.Cluster.Stream"));
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    public void Dispose() { }
}

/// <summary>A model's identity for the cluster's check: a hash of its config, tokenizer and weights' names and sizes.</summary>
public static class ModelIdentity
{
    public static string Of(string dir)
    {
        using var sha = System.Security.Cryptography.SHA256.Create();
        foreach (var f in Directory.GetFiles(dir).OrderBy(f => f, StringComparer.Ordinal))
        {
            var name = Path.GetFileName(f);
            var info = new FileInfo(f);
            byte[] bytes = name is "config.json" or "tokenizer.json" or "pruning.json" or "generation_config.json"
                ? File.ReadAllBytes(f)
                : name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".json", StringComparison.Ordinal)
                    ? System.Text.Encoding.UTF8.GetBytes($"{name}:{info.Length}") : [];
            if (bytes.Length == 0) continue;
            var nameBytes = System.Text.Encoding.UTF8.GetBytes(name + "\n");
            sha.TransformBlock(nameBytes, 0, nameBytes.Length, null, 0);
            sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
        }
        sha.TransformFinalBlock([], 0, 0);
        return "sha256:" + Convert.ToHexString(sha.Hash!)[..16].ToLowerInvariant();
    }
}

/// <summary>A definition resolved for one source: the session's options, the loop's, and the line that says so.</summary>
public sealed record StreamPlan(string Mode, StreamingOptions Streaming, FrameLoopOptions Loop, string Header)
{
    public static StreamPlan Resolve(StreamDefinition d, Engine? engine, SimulatedModel? simulated, double sourceFps)
    {
        var policy = WritePolicy.Parse(d.Policy);
        if (d.Stride is < 1 or > 10_000) throw new UserError($"stride must be 1..10000, got {d.Stride}");
        if (d.MaxNewTokens is < 1 or > 4096) throw new UserError($"max_new_tokens must be 1..4096, got {d.MaxNewTokens}");
        if (d.FrameBudgetMs is { } fb && !(fb >= 0 && fb < 1e7)) throw new UserError($"frame_budget_ms must be ≥ 0, got {fb}");
        var fps = sourceFps is > 0 and < 1000 ? sourceFps : 30;
        var streaming = new StreamingOptions { WindowFrames = d.Window, Generation = new GenerationOptions { MaxNewTokens = d.MaxNewTokens } };
        double? budget = null;
        string mode, pruning;
        if (simulated is not null)
        {
            mode = "simulated";
            pruning = $"simulated model ({simulated.Version}), no pruning";
            streaming.Validate(int.MaxValue);
        }
        else
        {
            mode = SessionModes.Parse(d.Mode);
            var schedule = engine!.Layout.ScheduleFor(engine.Text.NumHiddenLayers);
            budget = d.FrameBudgetMs switch { null => FrameLoopOptions.DefaultBudgetMs(fps, d.Stride), 0 => null, var v => v };
            if (budget is not null) FrameGovernor.CheckSchedule(schedule, engine);
            streaming.Validate(engine);
            pruning = budget is { } b ? string.Create(CultureInfo.InvariantCulture, $"frame budget {b:0.#} ms, governor pruning within the model's schedule") : "no frame budget";
        }
        var loop = new FrameLoopOptions
        {
            Pacing = Pacing.Live, Stride = d.Stride,
            Driver = new DriverOptions { Policy = policy, GateThreshold = d.Gate, FrameBudgetMs = budget, Schedule = engine?.Layout.ScheduleFor(engine.Text.NumHiddenLayers) },
        };
        loop.Validate();
        var header = string.Create(CultureInfo.InvariantCulture, $"{mode} · window {d.Window} · every {d.Stride} frames of {fps:0.##} fps · policy {policy} · gate {d.Gate:0.##} · {pruning}");
        return new StreamPlan(mode, streaming, loop, header);
    }
}

/// <summary>
/// One stream running on this silo: its source, its session and its frame loop (live pacing: the
/// newest frame wins, so a stream on a busy silo drops frames instead of falling behind). Each
/// finished segment or answer is handed to <c>append(type, seq → json)</c>, which numbers it and logs it;
/// its JSON is the single server's event data (Server's <see cref="StreamEventData"/>), with the silo
/// and the wall clock of capture and write added, and a segment's number is its sequence number.
/// </summary>
public sealed class RunningStream : IDisposable
{
    readonly FrameLoop _loop;
    readonly ICaptionSession _session;
    readonly Action<string, Func<long, string>> _append;
    readonly string _id, _silo;
    readonly Queue<(string Id, string Text)> _questions = new();
    readonly ILogger? _logger;
    long _captions, _answers;
    volatile string? _lastText;
    int _disposed;

    public StreamPlan Plan { get; }

    internal RunningStream(string id, IFrameSource source, ICaptionSession session, StreamPlan plan, Action<string, Func<long, string>> append, string silo, ILogger? logger)
    {
        _id = id;
        _silo = silo;
        _session = session;
        _append = append;
        _logger = logger;
        Plan = plan;
        _loop = new FrameLoop(source, session, new Profiler(), plan.Loop, logger) { Written = OnWritten };
        RealtimeAssistant.Server.ServerMetrics.StreamOpened();
        _loop.Start();
    }

    public long Captions => Interlocked.Read(ref _captions);
    public long Answers => Interlocked.Read(ref _answers);
    public string? LastText => _lastText;
    public long Frames => _loop.FramesCaptured;
    public long Reads => _loop.Driver.Stats.Read;
    public long Dropped => _loop.DroppedForInference;
    public string SourceStatus => _loop.SourceStatus;
    public string? Error => (_loop.InferenceError ?? _loop.CaptureError)?.Message;
    /// <summary>The source ended (and does not loop), or inference stopped.</summary>
    public bool Ended => _loop.InferenceStopped || _loop.SourceStatus == "ended";

    /// <summary>Asks a question; its answer is logged as an "answer" event carrying <paramref name="questionId"/>.</summary>
    public void Ask(string questionId, string text)
    {
        lock (_questions) _questions.Enqueue((questionId, text.Trim()));
        _loop.Ask(text);
    }

    void OnWritten(StreamSegment s, double latencyMs)
    {
        var now = DateTimeOffset.UtcNow;
        string? questionId = null;
        if (s.Question is not null)
        {
            lock (_questions)
                if (_questions.Count > 0) questionId = _questions.Dequeue().Id;
            Interlocked.Increment(ref _answers);
        }
        else Interlocked.Increment(ref _captions);
        _lastText = s.Text;
        RealtimeAssistant.Server.ServerMetrics.Caption(s.Question is not null, s.Mode, latencyMs, s.ReadMs);
        var origin = new SegmentOrigin(_silo, Math.Round(now.ToUnixTimeMilliseconds() - latencyMs, 1), now.ToUnixTimeMilliseconds());
        try
        {
            if (s.Question is null) _append(Log.StreamEvents.Segment, seq => StreamEventData.SegmentJson(seq, s, latencyMs, origin));
            else _append(Log.StreamEvents.Answer, _ => StreamEventData.AnswerJson(questionId, s, latencyMs, origin));
        }
        catch (Exception e) { _logger?.LogError(e, "stream {Stream}: a segment could not be logged", _id); }
    }

    /// <summary>GET /v1/streams/{id}'s source_status and stats, as the single server gives them (JSON; no model scheduler here, so its counts are 0).</summary>
    public string LiveJson() => RealtimeAssistant.Server.Json.Serialize(new
    {
        source_status = StreamEventData.SourceStatus(_loop),
        stats = StreamEventData.Numbers(_loop, _session, default),
    });

    /// <summary>Stops the loop (a write in flight is cancelled between tokens) and frees the session and the source.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        RealtimeAssistant.Server.ServerMetrics.StreamClosed();
        _loop.Dispose();
        _session.Dispose();
    }
}
