using System.Runtime.CompilerServices;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Cluster.Log;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cluster;

/// <summary>A stream was refused because the cluster holds as many as it admits (the API's 429).</summary>
public sealed class StreamLimitException(int limit) : Exception($"the cluster already runs {limit} streams (its --max-streams × inference silos)")
{
    public int Limit { get; } = limit;
}

/// <summary>
/// The streams API's operations on a cluster, for a gateway's HTTP endpoints: open, list, get,
/// close, ask, and read a stream's events from its durable log (any gateway, any time; while Redis
/// is unreachable, from the memory of the silo that runs the stream).
/// </summary>
public sealed class ClusterStreamHost(IGrainFactory grains, CaptionLog log)
{
    IStreamDirectoryGrain Directory => grains.GetGrain<IStreamDirectoryGrain>(0);

    /// <summary>Opens a stream; throws <see cref="StreamLimitException"/> past <paramref name="limit"/> and <see cref="UserError"/> for a definition no silo can run.</summary>
    public async Task<StreamStatus> OpenAsync(StreamDefinition definition, int limit, string? id = null)
    {
        WritePolicy.Parse(definition.Policy); // fail fast, before the stream exists
        id ??= "s_" + Guid.NewGuid().ToString("N")[..16];
        if (!await Directory.Add(id, limit)) throw new StreamLimitException(limit);
        try { return await grains.GetGrain<IStreamGrain>(id).Open(definition); }
        catch (Exception e)
        {
            await Directory.Remove(id);
            if (e is StreamRefusedException) throw new UserError(e.Message);
            throw;
        }
    }

    public Task<StreamStatus?> GetAsync(string id) => grains.GetGrain<IStreamGrain>(id).Info();

    public async Task<IReadOnlyList<StreamStatus>> ListAsync()
    {
        var ids = await Directory.List();
        var infos = await Task.WhenAll(ids.Select(id => grains.GetGrain<IStreamGrain>(id).Info()));
        return infos.Where(i => i is not null).Select(i => i!).ToArray();
    }

    /// <summary>Closes a stream and frees everything it holds; false when there is no such stream.</summary>
    public async Task<bool> CloseAsync(string id)
    {
        bool existed = await grains.GetGrain<IStreamGrain>(id).Close();
        await Directory.Remove(id);
        return existed;
    }

    public async Task<string> AskAsync(string id, string question)
    {
        try { return await grains.GetGrain<IStreamGrain>(id).Ask(question); }
        catch (StreamRefusedException e) { throw new UserError(e.Message); }
    }

    /// <summary>The newest sequence number a reader may resume after (the durable log's, or the stream's own while Redis is away).</summary>
    public async Task<long> LastSeqAsync(string id)
    {
        try { return await log.LastSeqAsync(id); }
        catch (Exception e) when (StreamLogWriter.IsRedisFailure(e))
        {
            return (await GetAsync(id))?.LastSeq ?? 0;
        }
    }

    /// <summary>
    /// A stream's events after <paramref name="after"/> (a client's Last-Event-ID), then each new
    /// one, in pages; ends after the stream's "end" event or on <paramref name="ct"/>. Pages come
    /// from the durable log; while Redis is unreachable they come from the running activation's
    /// memory, and the reader returns to the log when it is back, from where it got to, so nothing
    /// is read twice.
    /// </summary>
    public async IAsyncEnumerable<LogPage> FollowAsync(string id, long after, [EnumeratorCancellation] CancellationToken ct = default)
    {
        long cursor = after;
        while (!ct.IsCancellationRequested)
        {
            var pages = log.FollowAsync(id, cursor, ct).GetAsyncEnumerator(ct);
            bool ended = false, failed = false;
            try
            {
                while (true)
                {
                    LogPage page;
                    try
                    {
                        if (!await pages.MoveNextAsync()) { ended = true; break; }
                        page = pages.Current;
                    }
                    catch (Exception e) when (StreamLogWriter.IsRedisFailure(e)) { failed = true; break; }
                    cursor = page.Entries[^1].Seq;
                    yield return page;
                }
            }
            finally { await pages.DisposeAsync(); }
            if (ended || !failed) yield break;
            // Redis is away: follow the activation's memory until it answers again.
            var grain = grains.GetGrain<IStreamGrain>(id);
            while (!ct.IsCancellationRequested)
            {
                var page = await grain.ReadMemory(cursor, 256);
                if (page.Entries.Count > 0)
                {
                    cursor = page.Entries[^1].Seq;
                    yield return page;
                    if (page.Entries[^1].Type == StreamEvents.Ended) yield break;
                    continue;
                }
                if (await LogAnswers(id)) break;
                await Task.Delay(200, ct);
            }
        }
    }

    async Task<bool> LogAnswers(string id)
    {
        try { await log.LastSeqAsync(id); return true; }
        catch (Exception e) when (StreamLogWriter.IsRedisFailure(e)) { return false; }
    }
}
