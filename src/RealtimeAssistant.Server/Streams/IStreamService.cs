namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// What the live-streams endpoints call, whatever runs the streams: this process's
/// <see cref="StreamHub"/>, or a cluster's inference silos behind a gateway. The endpoints own the
/// HTTP side (parsing, status codes, SSE framing), so a client cannot tell the two apart. Every
/// error a client can cause is an <see cref="ApiError"/>.
/// </summary>
public interface IStreamService
{
    /// <summary>The allow-list folder file sources are taken from (null: files are refused).</summary>
    MediaFolder? Media { get; }
    /// <summary>Opens a stream and starts it (429 past the admission limit).</summary>
    Task<IStreamHandle> OpenAsync(StreamRequest request, CancellationToken ct);
    /// <summary>GET /v1/streams: each stream's description, oldest first.</summary>
    Task<IReadOnlyList<object>> ListAsync(CancellationToken ct);
    /// <summary>The stream, or a 404 <see cref="ApiError"/>.</summary>
    Task<IStreamHandle> GetAsync(string id, CancellationToken ct);
    /// <summary>Deletes a stream and frees what it holds (404 when there is none).</summary>
    Task DeleteAsync(string id, CancellationToken ct);
}

/// <summary>One stream, as an endpoint holds it for the length of a request.</summary>
public interface IStreamHandle
{
    string Id { get; }
    /// <summary>GET /v1/streams/{id}: what the stream is, its state and its numbers.</summary>
    object Describe();
    /// <summary>A request about the stream (its state, a question): it is still wanted.</summary>
    void Touch();
    /// <summary>Queues a question; its answer arrives on the events tagged with the id returned.</summary>
    Task<string> AskAsync(string text, CancellationToken ct);
    /// <summary>
    /// The events after a client's Last-Event-ID (none: what the stream holds now, with no gap
    /// notice for what it held no longer). A bad id is a 400 <see cref="ApiError"/>, before any response.
    /// </summary>
    Task<StreamFollower> FollowAsync(string? lastEventId, CancellationToken ct);
    /// <summary>The stream running in this process, for what needs its frames (MJPEG video, the WebSocket); <paramref name="what"/> names it in the error of a service that cannot.</summary>
    LiveStream Local(string what);
}

/// <summary>A client following a stream's events: batches in order (each with what was missed before it), ending after the stream's "end" event. Dispose when the client leaves.</summary>
public sealed class StreamFollower(IAsyncEnumerable<LogBatch<StreamEvent>> events, IDisposable? attached = null) : IDisposable
{
    public IAsyncEnumerable<LogBatch<StreamEvent>> Events { get; } = events;
    public void Dispose() => attached?.Dispose();
}
