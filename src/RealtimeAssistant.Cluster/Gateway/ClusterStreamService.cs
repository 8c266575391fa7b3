using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Cluster.Log;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Streams;

namespace RealtimeAssistant.Cluster.Gateway;

/// <summary>
/// The live-streams API of a gateway silo: the server's endpoints over the cluster's streams
/// (<see cref="ClusterStreamHost"/>) instead of this process's. A stream opened here runs on an
/// inference silo; its events are read from its durable log in Redis (so Last-Event-ID resumes on
/// any gateway, across failovers), and every answer has the single server's JSON and status codes.
/// Differences a client can see: MJPEG video, the WebSocket and push sources are refused with 501
/// (the frames live on the inference silo that runs the stream); the event stream carries the
/// log's events (segment, question, answer, end), not the per-token deltas, state and stats events
/// of a single server (GET /v1/streams/{id} has the state and numbers); a stream lives until it is
/// deleted or ends, whether or not anyone follows it; and a cluster also opens
/// "synthetic[:seed=N,size=N,fps=N]", a generated clip.
/// </summary>
public sealed class ClusterStreamService : IStreamService, IDisposable
{
    readonly ClusterStreamHost _host;
    readonly CaptionLog _log;
    readonly ServerOptions _options;
    readonly Func<int> _inferenceSilos;
    readonly ILogger _logger;
    readonly ConcurrentDictionary<string, int> _followers = new();
    readonly CancellationTokenSource _stopping = new();

    /// <param name="inferenceSilos">Active silos that run streams now: the admission limit is --max-streams for each.</param>
    public ClusterStreamService(ClusterStreamHost host, CaptionLog log, ServerOptions options, Func<int> inferenceSilos, ILogger logger)
    {
        _host = host;
        _log = log;
        _options = options;
        _inferenceSilos = inferenceSilos;
        _logger = logger;
        Media = options.Streams.MediaFolder is { } folder ? new MediaFolder(folder) : null;
    }

    public MediaFolder? Media { get; }

    public async Task<IStreamHandle> OpenAsync(StreamRequest request, CancellationToken ct)
    {
        var source = Resolve(request.Source);
        int silos = _inferenceSilos();
        if (silos == 0)
            throw new ApiError(503, "no inference silo is in the cluster to run a stream (start one: ra serve --cluster … --role inference)", "server_error", code: "no_inference_silo");
        int limit = _options.MaxStreams * silos;
        var definition = new StreamDefinition
        {
            Source = source, Prompt = request.Prompt, Policy = request.Policy.ToString(),
            FrameBudgetMs = request.Prune ? request.FrameBudgetMs : 0, // no pruning: no governor, as on a single server
            Stride = request.Stride, Window = request.Window, Gate = request.Gate, MaxNewTokens = request.MaxTokens, Mode = request.Mode, Loop = request.Loop,
        };
        StreamStatus status;
        var streamId = NewId();
        try
        {
            status = await Call(() => _host.OpenAsync(definition, limit, streamId), ct);
        }
        catch (StreamLimitException)
        {
            throw new ApiError(429, $"this cluster runs at most {limit} live streams at once (--max-streams {_options.MaxStreams} × {silos} inference silo(s)) and all are taken: " +
                "delete one (DELETE /v1/streams/{id}) or try again later", "rate_limit_error", code: "too_many_streams");
        }
        catch (UserError e)
        {
            throw ApiError.BadRequest(e.Message, "source", "invalid_source");
        }
        _logger.LogInformation("stream {Id} opened on {Silo}: {Source}", status.Id, status.SiloName, Shown(status.Definition.Source));
        return await Handle(status, ct);
    }

    /// <summary>The source as the inference silos open it: a file resolved in the media folder (its real path: the folder must be at the same path on their machines), the rest as given.</summary>
    string Resolve(string spec)
    {
        if (IsSynthetic(spec)) return spec;
        var kind = StreamHub.SourceKind(spec, _options.Streams.Sources);
        if (kind == "push")
            throw new ApiError(501, "push sources are not available in cluster mode: pushed frames would have to travel from this gateway to the inference silo that runs the stream; " +
                "open a file, a URL or a camera, or push to a single `ra serve`", "invalid_request_error", "source", "not_available_in_cluster");
        if (kind != "file") return spec;
        if (Media is null)
            throw new ApiError(403, "this server opens no files (serve has no media folder)", "permission_error", "source", "source_not_allowed");
        return Media.Resolve(spec);
    }

    static bool IsSynthetic(string spec) => spec == "synthetic" || spec.StartsWith("synthetic:", StringComparison.Ordinal);

    static string NewId() => "str_" + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();

    public async Task<IReadOnlyList<object>> ListAsync(CancellationToken ct)
    {
        var all = await Call(() => _host.ListAsync(), ct);
        var handles = await Task.WhenAll(all.Where(s => s.State != "closed").OrderBy(s => s.Created).Select(s => Handle(s, ct)));
        return handles.Select(h => h.Describe()).ToList();
    }

    public async Task<IStreamHandle> GetAsync(string id, CancellationToken ct) => await Handle(await Find(id, ct), ct);

    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        await Find(id, ct);
        if (!await Call(() => _host.CloseAsync(id), ct)) throw NotFound(id);
        _logger.LogInformation("stream {Id} deleted", id);
    }

    async Task<StreamStatus> Find(string id, CancellationToken ct)
    {
        // Ids are ours ("str_" + hex): anything else names no stream, and is not worth a grain.
        if (id.Length > 64 || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-')) throw NotFound(id);
        var status = await Call(() => _host.GetAsync(id), ct);
        return status is null || status.State == "closed" ? throw NotFound(id) : status;
    }

    static ApiError NotFound(string id) =>
        new(404, $"no stream '{(id.Length <= 40 ? id : id[..40] + "…")}' (GET /v1/streams lists them)", code: "stream_not_found");

    async Task<ClusterStream> Handle(StreamStatus status, CancellationToken ct)
    {
        long first;
        try { first = await _log.FirstSeqAsync(status.Id); }
        catch (Exception e) when (StreamLogWriter.IsRedisFailure(e)) { first = 0; }
        return new ClusterStream(this, status, first == 0 ? status.LastSeq + 1 : first);
    }

    /// <summary>How long a call keeps trying while the cluster does not answer (a stream whose silo just died answers again once it is declared dead and the stream reactivates elsewhere: seconds).</summary>
    public TimeSpan RetryFor { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// A cluster call, tried again while the cluster does not answer (a silo between lives, a
    /// timeout), so a client that reconnects during a failover is served once the stream runs
    /// again instead of being refused; after <see cref="RetryFor"/> it is a 503 the client may retry.
    /// Every call made here may be repeated (opening takes the stream's id).
    /// </summary>
    async Task<T> Call<T>(Func<Task<T>> call, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + RetryFor;
        var delay = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try { return await call(); }
            catch (Exception e) when (e is OrleansException or TimeoutException)
            {
                if (DateTime.UtcNow + delay > deadline)
                    throw new ApiError(503, $"the cluster did not answer for {RetryFor.TotalSeconds:0} s ({e.Message.Split('\n')[0]}); try again", "server_error", code: "cluster_unavailable");
                _logger.LogDebug("the cluster did not answer ({Message}); trying again", e.Message);
                await Task.Delay(delay, ct);
                delay = TimeSpan.FromMilliseconds(Math.Min(1000, delay.TotalMilliseconds * 2));
            }
        }
    }

    string Shown(string source)
    {
        if (NetworkFrameSource.IsUrl(source)) return NetworkFrameSource.Redact(source);
        if (Kind(source) != "file") return source;
        return Media is { } m && source.StartsWith(m.Root + "/", StringComparison.Ordinal) ? Path.GetRelativePath(m.Root, source) : Path.GetFileName(source);
    }

    static string Kind(string source) =>
        IsSynthetic(source) ? "synthetic"
        : source.Length is >= 1 and <= 3 && source.All(char.IsAsciiDigit) ? "camera"
        : NetworkFrameSource.IsUrl(source) ? "url"
        : "file";

    /// <summary>One stream as a request holds it: its status when the request came, and what follows its log.</summary>
    sealed class ClusterStream(ClusterStreamService service, StreamStatus status, long firstSeq) : IStreamHandle
    {
        public string Id => status.Id;

        public void Touch() { } // a cluster's stream lives until deleted

        public object Describe()
        {
            var d = status.Definition;
            JsonElement? live = status.Live is { } json ? JsonSerializer.Deserialize<JsonElement>(json) : null;
            return new
            {
                id = status.Id, @object = "stream", created = status.Created.ToUnixTimeSeconds(), kind = Kind(d.Source), source = service.Shown(d.Source),
                state = status.State, error = status.Error,
                mode = d.Mode, prompt = d.Prompt, policy = d.Policy, stride = d.Stride, window = d.Window, gate = d.Gate, prune = d.FrameBudgetMs != 0,
                source_status = live?.GetProperty("source_status") ?? (object)new
                {
                    status = status.SourceStatus.Length > 0 ? status.SourceStatus : status.State, retries = 0, recoveries = 0, attempt = 0,
                    frames_pushed = (long?)null, push_over_rate = (long?)null, push_rejected = (long?)null,
                },
                stats = live?.GetProperty("stats") ?? StreamEventData.NoNumbers,
                clients = service._followers.GetValueOrDefault(status.Id),
                events = new { first = firstSeq, last = status.LastSeq },
                // Where the stream runs, and what happened to it: what a single server has no use for.
                cluster = new
                {
                    silo = status.SiloName, address = status.Silo, log = status.Log, log_error = status.LogError, durable = status.DurableSeq,
                    failovers = status.Failovers.Select(f => new { at = f.At.ToUnixTimeMilliseconds() / 1000.0, from = f.FromSilo, to = f.ToSilo, after = f.AfterSeq }),
                    moves = status.Moves.Select(m => new { at = m.At.ToUnixTimeMilliseconds() / 1000.0, from = m.FromSilo, to = m.ToSilo, after = m.AfterSeq }),
                },
            };
        }

        public async Task<string> AskAsync(string text, CancellationToken ct)
        {
            try { return await service.Call(() => service._host.AskAsync(status.Id, text), ct); }
            catch (UserError e)
            {
                throw new ApiError(409, $"stream {status.Id} is not running ({e.Message}): it answers no questions now", code: "stream_not_running");
            }
        }

        public async Task<StreamFollower> FollowAsync(string? lastEventId, CancellationToken ct)
        {
            bool fresh = string.IsNullOrWhiteSpace(lastEventId);
            long cursor = fresh ? 0 : LastEventId.Cursor(lastEventId, 0, await service.Call(() => service._host.LastSeqAsync(status.Id), ct));
            service._followers.AddOrUpdate(status.Id, 1, (_, n) => n + 1);
            return new StreamFollower(Batches(cursor, fresh, ct), new Leave(service, status.Id));
        }

        async IAsyncEnumerable<LogBatch<StreamEvent>> Batches(long cursor, bool fresh, [EnumeratorCancellation] CancellationToken ct)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, service._stopping.Token);
            bool first = true;
            await foreach (var page in service._host.FollowAsync(status.Id, cursor, both.Token).WithCancellation(both.Token))
            {
                // A fresh client gets what the log holds, with no notice of what retention dropped before it came (as on a single server).
                long missed = first && fresh ? 0 : page.Missed;
                first = false;
                yield return new LogBatch<StreamEvent>(missed, page.Entries.Select(e => new Sequenced<StreamEvent>(e.Seq, new StreamEvent(e.Type, e.Data))).ToArray());
            }
        }

        public LiveStream Local(string what) =>
            throw new ApiError(501, $"{what} is not available in cluster mode: the stream's frames stay on the inference silo that runs it ({status.SiloName ?? "none now"}), " +
                $"and only its captions travel (through Redis); follow GET /v1/streams/{status.Id}/events", "invalid_request_error", code: "not_available_in_cluster");
    }

    sealed class Leave(ClusterStreamService service, string id) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) service._followers.AddOrUpdate(id, 0, (_, n) => Math.Max(0, n - 1));
        }
    }

    /// <summary>Ends every follower (the server is stopping); the streams run on.</summary>
    public void Dispose()
    {
        _stopping.Cancel();
    }
}
