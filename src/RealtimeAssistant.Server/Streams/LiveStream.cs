using System.Diagnostics;
using Microsoft.Extensions.Logging;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Server.Streams;

/// <summary>One event of a stream's log: its SSE event type and its JSON data (serialised once, sent as is by SSE and the WebSocket).</summary>
public sealed record StreamEvent(string Type, string Json);

/// <summary>What a pushed frame came to.</summary>
public enum PushResult { Accepted, OverRate, Rejected }

/// <summary>
/// One live stream: a source, one <see cref="FrameLoop"/> with live pacing over its own session on
/// the shared model, and the stream's event log (caption deltas, finished segments, answers
/// tagged with their question's id, stats, state). The loop's callbacks (on its inference thread)
/// append to the log; SSE and WebSocket clients follow it. Disposing frees all of it: the loop's
/// threads, the source (and its relay process), the session's KV cache and the video thread.
/// </summary>
public sealed class LiveStream : IDisposable
{
    readonly FrameLoop _loop;
    readonly ScheduledSession _session;
    readonly ModelScheduler _scheduler;
    readonly ILogger _log;
    readonly StreamLimits _limits;
    readonly ImageLimits _images;
    readonly StreamFormat _format; // to check a question the way the session will write it
    readonly object _gate = new();
    readonly Queue<(string Id, string Text)> _asked = new();
    string? _answering;            // the question being answered now
    long _segment;                 // the caption being written (1, 2, …)
    int _questionCount;
    bool _completed, _disposed;
    string _state = "starting";
    readonly object _tick = new();
    string? _error;
    int _clients, _senders;
    long _lastSeen = Stopwatch.GetTimestamp();
    double _pushTokens;
    long _pushRefilledAt = Stopwatch.GetTimestamp();
    long _pushOverRate, _pushRejected;

    public string Id { get; }
    /// <summary>file, url, camera or push.</summary>
    public string Kind { get; }
    /// <summary>The source as shown to clients (a URL without its credentials).</summary>
    public string Source { get; }
    public StreamRequest Request { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    public EventLog<StreamEvent> Events { get; }
    public PushFrameSource? Push { get; }
    public VideoFeed Video { get; }
    public FrameLoop Loop => _loop;
    public double? FrameBudgetMs => _loop.BudgetMs;
    public string State { get { lock (_gate) return _state; } }

    internal LiveStream(string id, string kind, string shown, IFrameSource source, StreamRequest request, ModelScheduler scheduler,
        ServerOptions options, StreamOverlayFactory? overlay, ILogger log)
    {
        Id = id;
        Kind = kind;
        Source = shown;
        Request = request;
        _scheduler = scheduler;
        _log = log;
        _limits = options.Streams;
        _images = options.Images;
        Push = source as PushFrameSource;
        _pushTokens = _limits.MaxPushFps;
        Events = new EventLog<StreamEvent>(_limits.EventRetention);

        var engine = scheduler.Engine;
        double fps = Push is not null ? request.Fps ?? 10 : source.Fps;
        var schedule = engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers);
        double? budget = !request.Prune || request.FrameBudgetMs == 0 ? null : request.FrameBudgetMs ?? FrameLoopOptions.DefaultBudgetMs(fps, request.Stride);
        var streaming = new StreamingOptions { WindowFrames = request.Window, Generation = new Model.GenerationOptions { MaxNewTokens = request.MaxTokens, DraftTokens = _limits.DraftTokens } };
        streaming.Validate(engine);
        if (budget is not null) FrameGovernor.CheckSchedule(schedule, engine); // a schedule the governor cannot use fails here
        _format = StreamFormat.For(engine);
        if (request.Prompt is { } instruction) _format.Write(instruction); // one the session cannot write fails now, not at the first caption
        var inner = scheduler.Run(() => SessionModes.Create(request.Mode, engine, streaming));
        _session = new ScheduledSession(inner, scheduler, request.Prompt);
        try
        {
            _loop = new FrameLoop(source, _session, new Profiler(window: 1024), new FrameLoopOptions
            {
                Pacing = Pacing.Live, Stride = request.Stride,
                Driver = new DriverOptions { Policy = request.Policy, GateThreshold = request.Gate, FrameBudgetMs = budget, Schedule = schedule },
            }, log)
            {
                WriteStarted = OnWriteStarted, Delta = OnDelta, Written = OnWritten,
            };
        }
        catch
        {
            _session.Dispose();
            throw;
        }
        _session.Stopping = _loop.Stopping;
        Video = new VideoFeed(_loop, overlay, _limits.VideoFps, log);
    }

    /// <summary>Starts capture and inference.</summary>
    public void Start()
    {
        Append("state", new { state = _state, source_status = _loop.SourceStatus });
        ServerMetrics.StreamOpened();
        _started = true;
        _loop.Start();
    }

    // ---- the frame loop's callbacks (inference thread) ----

    bool _started; // counted in ServerMetrics' open streams until disposed

    void OnWriteStarted(long frame, TimeSpan at, string? question)
    {
        // The state a caption comes from, before its events: a client that reads the state (or
        // the log) after a caption never sees "starting" or a stale "retrying" (the hub's tick
        // alone would report the change up to a tick late).
        Tick(stats: false);
        lock (_gate)
        {
            if (question is null) { _segment++; _answering = null; }
            else _answering = _asked.TryDequeue(out var q) ? q.Id : null;
        }
    }

    void OnDelta(string text)
    {
        string? answering;
        long segment;
        lock (_gate) { answering = _answering; segment = _segment; }
        Append("delta", answering is null
            ? new { kind = "caption", segment = (long?)segment, question_id = (string?)null, text }
            : new { kind = "answer", segment = (long?)null, question_id = (string?)answering, text });
    }

    void OnWritten(StreamSegment s, double latencyMs)
    {
        string? answering;
        long segment;
        lock (_gate) { answering = _answering; segment = _segment; _answering = null; }
        ServerMetrics.Caption(s.Question is not null, s.Mode, latencyMs, s.ReadMs);
        if (s.Question is not null) Append("answer", StreamEventData.AnswerJson(answering, s, latencyMs));
        else Append("segment", StreamEventData.SegmentJson(segment, s, latencyMs));
    }

    void Append(string type, object data) => Append(type, Json.Serialize(data));

    void Append(string type, string json)
    {
        lock (_gate)
        {
            if (_completed) return;
            Events.Append(new StreamEvent(type, json));
        }
    }

    // ---- questions ----

    /// <summary>Queues a question; its answer arrives on the event log tagged with the id returned.</summary>
    public string Ask(string text)
    {
        // What the session would refuse mid-stream (and fail the stream with) is refused here.
        try { _format.Write(text); }
        catch (UserError e) { throw ApiError.BadRequest($"the question cannot be asked: {e.Message}", "text"); }
        string id;
        lock (_gate)
        {
            if (_completed || _state is "ended" or "failed")
                throw new ApiError(409, $"stream {Id} has {(_state == "failed" ? "failed" : "ended")}: it answers no more questions", code: "stream_ended");
            if (_asked.Count >= _limits.MaxPendingQuestions)
                throw new ApiError(429, $"{_asked.Count} questions already wait for their answers in stream {Id}; ask again once one is answered",
                    "rate_limit_error", code: "too_many_questions");
            id = $"q{++_questionCount}";
            _asked.Enqueue((id, text));
        }
        _loop.Ask(text);
        Append("question", StreamEventData.QuestionJson(id, text));
        return id;
    }

    // ---- push frames ----

    /// <summary>A frame a push client sent (JPEG or PNG bytes): checked, decoded and handed to the loop, or dropped (over the rate) or refused (with why).</summary>
    public PushResult PushFrame(ReadOnlySpan<byte> file, out string? why)
    {
        why = null;
        if (Push is null) { why = "this stream's source is not push: frames sent here are ignored"; return PushResult.Rejected; }
        lock (_gate)
        {
            var now = Stopwatch.GetTimestamp();
            _pushTokens = Math.Min(_limits.MaxPushFps, _pushTokens + Stopwatch.GetElapsedTime(_pushRefilledAt, now).TotalSeconds * _limits.MaxPushFps);
            _pushRefilledAt = now;
            if (_pushTokens < 1) { _pushOverRate++; return PushResult.OverRate; }
            _pushTokens -= 1;
        }
        var kind = DataUriImage.Sniff(file);
        if (kind is null) why = "a frame must be a JPEG (or PNG) image in one binary message";
        else if (DataUriImage.Dimensions(file, kind.Value) is not { } size) why = "the frame is truncated or corrupt (its size cannot be read)";
        else if (size.Width < 1 || size.Height < 1 || size.Width * size.Height > _images.MaxPixels)
            why = $"the frame is {size.Width}x{size.Height} pixels, over this server's limit of {_images.MaxPixels:N0}";
        if (why is null)
        {
            Mat? image = null;
            try { image = Cv2.ImDecode(file, ImreadModes.Color); }
            catch (OpenCVException) { }
            if (image is null || image.Empty() || (long)image.Width * image.Height > _images.MaxPixels)
            {
                image?.Dispose();
                why = "the frame cannot be decoded";
            }
            else
            {
                Push.Push(image);
                return PushResult.Accepted;
            }
        }
        Interlocked.Increment(ref _pushRejected);
        return PushResult.Rejected;
    }

    // ---- clients ----

    /// <summary>A client follows the stream (SSE, video, WebSocket); <paramref name="sender"/>: it pushes frames. Dispose when it leaves.</summary>
    public IDisposable Attach(bool sender = false)
    {
        lock (_gate)
        {
            _clients++;
            if (sender) _senders++;
            _lastSeen = Stopwatch.GetTimestamp();
        }
        return new Detach(this, sender);
    }

    sealed class Detach(LiveStream s, bool sender) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            lock (s._gate)
            {
                s._clients--;
                if (sender) s._senders--;
                s._lastSeen = Stopwatch.GetTimestamp();
            }
        }
    }

    /// <summary>A request about the stream (its state, a question): it is still wanted.</summary>
    public void Touch() { lock (_gate) _lastSeen = Stopwatch.GetTimestamp(); }

    /// <summary>
    /// Nobody has wanted the stream for <paramref name="grace"/>: no client attached (a push
    /// stream: no WebSocket pushing frames) and no request about it.
    /// </summary>
    public bool Abandoned(TimeSpan grace)
    {
        lock (_gate)
        {
            int holding = Push is not null ? _senders : _clients;
            return holding == 0 && Stopwatch.GetElapsedTime(_lastSeen) > grace;
        }
    }

    public int Clients { get { lock (_gate) return _clients; } }

    // ---- state and numbers ----

    /// <summary>Called a few times a second by the hub, and before each caption: state changes (and the end) go to the log; <paramref name="stats"/>: the numbers too.</summary>
    public void Tick(bool stats)
    {
        lock (_tick) TickLocked(stats); // one at a time: two threads must not report a change in the wrong order
    }

    void TickLocked(bool stats)
    {
        string state;
        string? error = null;
        if (_loop.InferenceStopped || _loop.InferenceError is not null)
        {
            var e = _loop.InferenceError ?? _loop.CaptureError;
            state = e is null ? "ended" : "failed";
            error = e?.Message;
        }
        else if (_loop.CaptureError is { } ce) { state = "failed"; error = ce.Message; }
        else if (_loop.Source is IReconnectingSource { Attempt: > 0 }) state = "retrying";
        else if (_loop.FramesCaptured == 0) state = "starting";
        else state = "running";

        bool changed;
        lock (_gate)
        {
            changed = state != _state;
            _state = state;
            _error = error;
        }
        if (changed)
        {
            Append("state", new { state, source_status = _loop.SourceStatus, error });
            if (state != "starting") _log.LogInformation("stream {Id} ({Source}): {State}{Error}", Id, Source, state, error is null ? "" : $": {error}");
        }
        if (stats || changed && state is "ended" or "failed") Append("stats", Numbers());
        if (state is "ended" or "failed") End(state);
    }

    void End(string reason)
    {
        lock (_gate)
        {
            if (_completed) return;
            Events.Append(new StreamEvent("end", StreamEventData.EndJson(reason, _error)));
            _completed = true;
            Events.Complete();
        }
    }

    /// <summary>The HUD's numbers, as GET /v1/streams/{id} and the stats events give them.</summary>
    public object Numbers() => StreamEventData.Numbers(_loop, _session, _scheduler.Counters);

    /// <summary>GET /v1/streams/{id}: what the stream is, its state and its numbers.</summary>
    public object Describe()
    {
        string state;
        string? error;
        int clients;
        lock (_gate) { state = _state; error = _error; clients = _clients; }
        return new
        {
            id = Id, @object = "stream", created = Created.ToUnixTimeSeconds(), kind = Kind, source = Source, state, error,
            mode = Request.Mode, prompt = Request.Prompt, policy = Request.Policy.ToString(), stride = Request.Stride, window = Request.Window, gate = Request.Gate, prune = Request.Prune,
            source_status = StreamEventData.SourceStatus(_loop, Push, Interlocked.Read(ref _pushOverRate), Interlocked.Read(ref _pushRejected)),
            stats = Numbers(),
            clients,
            events = new { first = Events.FirstSeq, last = Events.LastSeq },
        };
    }

    /// <summary>None of the stream's threads runs (the frame loop's capture and inference, the video's): true once disposed.</summary>
    internal bool ThreadsStopped => _loop.InferenceStopped && _loop.CaptureStopped && !Video.Running;

    /// <summary>Stops the loop and frees everything; followers see an "end" event and their streams close.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        if (_started) ServerMetrics.StreamClosed();
        Push?.Complete("deleted");
        Video.Dispose();
        _loop.Dispose(); // stops capture and inference (a write in flight stops at its next step), disposes the source
        if (_loop.InferenceStopped) _session.Dispose();
        else _log.LogWarning("stream {Id}: inference did not stop in time; its session is left to it", Id);
        End("deleted");
    }
}
