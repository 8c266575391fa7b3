using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Server.Inference;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// The server's live streams: opens them (admission up to --max-streams, 429 past it; the source
/// resolved and checked against what clients may open), finds, lists and deletes them, and once
/// every 250 ms has each report its state (stats once a second) and frees the ones nobody has
/// wanted for the grace period. Every stream's model calls go through the one <see cref="ModelScheduler"/>.
/// </summary>
public sealed partial class StreamHub : IStreamService, IDisposable
{
    readonly ModelScheduler _scheduler;
    readonly ServerOptions _options;
    readonly StreamOverlayFactory? _overlay;
    readonly ILogger _log;
    readonly MediaFolder? _media;
    readonly ConcurrentDictionary<string, LiveStream> _streams = new();
    readonly object _admission = new();
    readonly Timer _ticker;
    int _reserved, _ticks, _ticking;
    bool _disposed;

    public StreamHub(ModelScheduler scheduler, ServerOptions options, StreamOverlayFactory? overlay, ILogger log)
    {
        _scheduler = scheduler;
        _options = options;
        _overlay = overlay;
        _log = log;
        _media = options.Streams.MediaFolder is { } folder ? new MediaFolder(folder) : null;
        _ticker = new Timer(_ => Tick(), null, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250));
    }

    public MediaFolder? Media => _media;
    public int Count => _streams.Count;
    public ModelScheduler Scheduler => _scheduler;

    public LiveStream Get(string id) =>
        _streams.TryGetValue(id, out var s) ? s : throw new ApiError(404, $"no stream '{Truncate(id)}' (GET /v1/streams lists them)", code: "stream_not_found");

    public IReadOnlyList<LiveStream> All => _streams.Values.OrderBy(s => s.Created).ToList();

    /// <summary>Opens a stream and starts it. Blocking (a file is opened and its first frame decoded): call it off Kestrel's threads.</summary>
    public LiveStream Open(StreamRequest request)
    {
        lock (_admission)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_streams.Count + _reserved >= _options.MaxStreams)
                throw new ApiError(429, $"this server runs at most {_options.MaxStreams} live streams at once (--max-streams) and all are taken: " +
                    "delete one (DELETE /v1/streams/{id}) or try again later", "rate_limit_error", code: "too_many_streams");
            _reserved++;
        }
        try
        {
            var (kind, shown, source) = OpenSource(request);
            LiveStream stream;
            try
            {
                stream = new LiveStream(NewId(), kind, shown, source, request, _scheduler, _options, _overlay, _log);
            }
            catch (UserError e)
            {
                source.Dispose();
                throw ApiError.BadRequest(e.Message);
            }
            catch
            {
                source.Dispose();
                throw;
            }
            stream.Start();
            _streams[stream.Id] = stream; // once started: the ticker reads its threads' state
            _log.LogInformation("stream {Id} opened: {Kind} {Source}, {Mode}, window {Window}, policy {Policy}, every {Stride} frames, frame budget {Budget}",
                stream.Id, kind, shown, request.Mode, request.Window, request.Policy, request.Stride, stream.FrameBudgetMs is { } b ? $"{b:0.#} ms" : "off");
            return stream;
        }
        finally
        {
            lock (_admission) _reserved--;
        }
    }

    /// <summary>
    /// The kind of source a client asked for (push, camera, url or file), checked against the kinds
    /// this server opens: a scheme it does not serve is a 400, a kind --sources leaves out a 403.
    /// </summary>
    public static string SourceKind(string spec, IReadOnlySet<string> allowed)
    {
        string kind = spec.Equals("push", StringComparison.OrdinalIgnoreCase) ? "push"
            : CameraIndex().IsMatch(spec) ? "camera"
            : NetworkFrameSource.IsUrl(spec) ? "url"
            : Scheme().IsMatch(spec) ? throw ApiError.BadRequest($"source scheme '{spec.Split(':')[0]}' is not served: use rtsp://, rtsps://, rtmp://, http:// or https://, a file in the media folder, a camera index, or \"push\"", "source", "invalid_source")
            : "file";
        if (!allowed.Contains(kind))
            throw new ApiError(403, $"this server does not open {kind} sources (serve's --sources allows: {string.Join(", ", allowed)})",
                "permission_error", "source", "source_not_allowed");
        return kind;
    }

    (string Kind, string Shown, IFrameSource Source) OpenSource(StreamRequest r)
    {
        var spec = r.Source;
        var kind = SourceKind(spec, _options.Streams.Sources);
        var options = new FrameSourceOptions { Realtime = true, Loop = r.Loop };
        try
        {
            switch (kind)
            {
                case "push":
                    return (kind, "push", new PushFrameSource("push frames"));
                case "camera":
                    var index = int.Parse(spec);
                    if (OperatingSystem.IsLinux() && !File.Exists($"/dev/video{index}"))
                        throw ApiError.BadRequest($"the server has no camera {index} (/dev/video{index} does not exist)", "source", "source_not_found");
                    return (kind, $"camera {index}", FrameSources.Open(index.ToString(), options));
                case "url":
                    // A camera's stream, or a video file on a web server (played at its rate, ending or looping as a file does).
                    return (kind, NetworkFrameSource.Redact(spec), FrameSources.Open(spec, options));
                default:
                    if (_media is null)
                        throw new ApiError(403, "this server opens no files (serve has no media folder)", "permission_error", "source", "source_not_allowed");
                    var path = _media.Resolve(spec);
                    return (kind, Path.GetRelativePath(_media.Root, path), new VideoFileSource(path, options));
            }
        }
        catch (UserError e)
        {
            throw ApiError.BadRequest(e.Message, "source", "invalid_source");
        }
    }

    /// <summary>Deletes a stream and frees everything it holds. Blocking (its threads are joined).</summary>
    public void Delete(string id)
    {
        if (!_streams.TryRemove(id, out var stream))
            throw new ApiError(404, $"no stream '{Truncate(id)}' (GET /v1/streams lists them)", code: "stream_not_found");
        stream.Dispose();
        _log.LogInformation("stream {Id} deleted", id);
    }

    void Tick()
    {
        if (Interlocked.Exchange(ref _ticking, 1) == 1) return; // the last tick is still running
        try { TickAll(); }
        finally { Volatile.Write(ref _ticking, 0); }
    }

    void TickAll()
    {
        bool stats = ++_ticks % 4 == 0;
        foreach (var s in _streams.Values)
        {
            try
            {
                s.Tick(stats);
                if (s.Abandoned(_options.Streams.Grace) && _streams.TryRemove(s.Id, out _))
                {
                    _log.LogInformation("stream {Id} freed: no client for {Seconds:0.#} s", s.Id, _options.Streams.Grace.TotalSeconds);
                    ThreadPool.QueueUserWorkItem(_ => s.Dispose());
                }
            }
            catch (Exception e)
            {
                _log.LogError(e, "stream {Id}: state update failed", s.Id);
            }
        }
    }

    // ---- the endpoints' seam ----

    async Task<IStreamHandle> IStreamService.OpenAsync(StreamRequest request, CancellationToken ct) =>
        new Handle(await Task.Run(() => Open(request))); // opening a file decodes its first frame

    Task<IReadOnlyList<object>> IStreamService.ListAsync(CancellationToken ct) => Task.FromResult<IReadOnlyList<object>>(All.Select(s => s.Describe()).ToList());

    Task<IStreamHandle> IStreamService.GetAsync(string id, CancellationToken ct) => Task.FromResult<IStreamHandle>(new Handle(Get(id)));

    Task IStreamService.DeleteAsync(string id, CancellationToken ct) => Task.Run(() => Delete(id)); // joins the stream's threads

    sealed class Handle(LiveStream s) : IStreamHandle
    {
        public string Id => s.Id;
        public object Describe() => s.Describe();
        public void Touch() => s.Touch();
        public Task<string> AskAsync(string text, CancellationToken ct) => Task.FromResult(s.Ask(text));

        public Task<StreamFollower> FollowAsync(string? lastEventId, CancellationToken ct)
        {
            var cursor = s.Events.CursorFor(lastEventId, fresh: s.Events.FirstSeq - 1);
            return Task.FromResult(new StreamFollower(s.Events.Follow(cursor, ct: ct), s.Attach()));
        }

        public LiveStream Local(string what) => s;
    }

    static string NewId() => "str_" + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();

    [GeneratedRegex(@"^[0-9]{1,3}$")] private static partial Regex CameraIndex();
    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9+.-]*://")] private static partial Regex Scheme();

    static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";

    public void Dispose()
    {
        lock (_admission)
        {
            if (_disposed) return;
            _disposed = true;
        }
        using (var done = new ManualResetEvent(false))
            if (_ticker.Dispose(done)) done.WaitOne(TimeSpan.FromSeconds(5));
        var all = _streams.Values.ToList();
        _streams.Clear();
        Parallel.ForEach(all, s => s.Dispose());
    }
}
