using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using RealtimeAssistant.Cluster.Grains;
using StackExchange.Redis;

namespace RealtimeAssistant.Cluster.Log;

/// <summary>An append lost the race for its sequence number: another activation of the stream wrote it first.</summary>
public sealed class LogFencedException(string stream, long seq)
    : Exception($"stream {stream}: sequence number {seq} is already in the log (another activation of the stream writes it)")
{
    public long Seq { get; } = seq;
}

/// <summary>
/// The durable per-stream caption log: one Redis Stream per stream, whose entry ids are the
/// segments' sequence numbers (<c>SEQ-0</c>), capped by <c>XADD … MAXLEN ~ retention</c>.
/// <list type="bullet">
/// <item>Why a Redis Stream and not a list: an entry's id is its sequence number, so a reader
/// resumes with <c>XRANGE key (SEQ+1)-0 +</c> in O(log n) after any trimming (a list's indices shift
/// when it is trimmed, so it needs a second counter kept in step); and Redis refuses an explicit id
/// that is not above the stream's top, which makes every append a compare-and-set: a sequence
/// number is written once, by one writer, and a stale activation that tries again is told so
/// (<see cref="LogFencedException"/>) instead of writing a duplicate.</item>
/// <item>No gap: each stream has one writer at a time (its grain's activation, appending in
/// order from one queue); a new activation starts after the log's top.</item>
/// <item>Readers on any gateway are woken by one pub/sub channel per cluster (a notice per append)
/// and re-read with XRANGE, so a lost notice costs at most the poll interval, never an event.</item>
/// </list>
/// </summary>
public sealed class CaptionLog : IAsyncDisposable
{
    readonly IConnectionMultiplexer _redis;
    readonly string _prefix;
    readonly RedisChannel _channel;
    readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new();
    ChannelMessageQueue? _subscription;
    readonly SemaphoreSlim _subscribing = new(1, 1);

    public CaptionLog(IConnectionMultiplexer redis, string clusterId, int retention = 10_000)
    {
        if (retention < 1) throw new UserError($"the caption log's retention must be at least 1 segment, got {retention}");
        _redis = redis;
        _prefix = $"ra:{clusterId}:";
        _channel = RedisChannel.Literal(_prefix + "appended");
        Retention = retention;
    }

    /// <summary>Entries kept per stream (at least; Redis trims whole nodes).</summary>
    public int Retention { get; }

    /// <summary>How long a closed stream's log stays readable.</summary>
    public TimeSpan ClosedRetention { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How often a follower re-reads when no notice came (a missed notice costs at most this).</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(1);

    IDatabase Db => _redis.GetDatabase();
    RedisKey Key(string stream) => _prefix + "log:" + stream;

    /// <summary>The newest sequence number in the log (0 when it has none).</summary>
    public async Task<long> LastSeqAsync(string stream)
    {
        var last = await Db.StreamRangeAsync(Key(stream), "-", "+", 1, Order.Descending);
        return last.Length == 0 ? 0 : SeqOf(last[0].Id);
    }

    /// <summary>
    /// The source frame index of the newest caption or answer among the log's last
    /// <paramref name="look"/> entries (null when none carries one): where a moved stream's run stopped.
    /// </summary>
    public async Task<long?> LastFrameAsync(string stream, int look = 64)
    {
        var last = await Db.StreamRangeAsync(Key(stream), "-", "+", look, Order.Descending);
        foreach (var e in last)
        {
            var type = (string?)e["t"];
            if (type is not (StreamEvents.Segment or StreamEvents.Answer)) continue;
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse((string?)e["d"] ?? "");
                if (doc.RootElement.TryGetProperty("frame", out var f) && f.TryGetInt64(out var frame)) return frame;
            }
            catch (System.Text.Json.JsonException) { }
        }
        return null;
    }

    /// <summary>The oldest sequence number the log still holds (0 when it holds none).</summary>
    public async Task<long> FirstSeqAsync(string stream)
    {
        var first = await Db.StreamRangeAsync(Key(stream), "-", "+", 1, Order.Ascending);
        return first.Length == 0 ? 0 : SeqOf(first[0].Id);
    }

    /// <summary>Appends entry <paramref name="seq"/>; throws <see cref="LogFencedException"/> when the log already holds it (or a later one).</summary>
    public async Task AppendAsync(string stream, LogEntry entry)
    {
        try
        {
            await Db.StreamAddAsync(Key(stream), [new("t", entry.Type), new("d", entry.Data)],
                messageId: IdOf(entry.Seq), maxLength: Retention, useApproximateMaxLength: true);
        }
        catch (RedisServerException e) when (e.Message.Contains("equal or smaller", StringComparison.OrdinalIgnoreCase))
        {
            throw new LogFencedException(stream, entry.Seq);
        }
        // The notice is a hint for followers; losing it costs them a poll interval.
        await _redis.GetSubscriber().PublishAsync(_channel, stream, CommandFlags.FireAndForget);
    }

    /// <summary>What the log holds after <paramref name="after"/>, at most <paramref name="max"/> entries, without waiting.</summary>
    public async Task<LogPage> ReadAsync(string stream, long after, int max = 256)
    {
        if (after < 0) throw new ArgumentOutOfRangeException(nameof(after), "a cursor is ≥ 0");
        var entries = await Db.StreamRangeAsync(Key(stream), IdOf(after + 1), "+", max, Order.Ascending);
        if (entries.Length == 0) return LogPage.Empty;
        var list = new LogEntry[entries.Length];
        for (int i = 0; i < entries.Length; i++)
            list[i] = new LogEntry(SeqOf(entries[i].Id), (string?)entries[i]["t"] ?? "", (string?)entries[i]["d"] ?? "");
        return new LogPage(list[0].Seq - (after + 1), list);
    }

    /// <summary>
    /// Everything after <paramref name="after"/>, then each new entry as it is appended, in pages;
    /// ends after the stream's "end" entry, or on <paramref name="ct"/>. A Redis failure ends it with that exception.
    /// </summary>
    public async IAsyncEnumerable<LogPage> FollowAsync(string stream, long after, [EnumeratorCancellation] CancellationToken ct = default)
    {
        await SubscribeAsync();
        long cursor = after;
        while (!ct.IsCancellationRequested)
        {
            var signal = Waiter(stream).Task; // taken before the read, so an append between the two still wakes us
            var page = await ReadAsync(stream, cursor);
            if (page.Entries.Count == 0)
            {
                try { await signal.WaitAsync(PollInterval, ct); }
                catch (TimeoutException) { }
                continue;
            }
            cursor = page.Entries[^1].Seq;
            yield return page;
            if (page.Entries[^1].Type == StreamEvents.Ended) yield break;
        }
    }

    /// <summary>A closed stream's log expires after <see cref="ClosedRetention"/> (its readers have that long to finish).</summary>
    public Task ExpireAsync(string stream) => Db.KeyExpireAsync(Key(stream), ClosedRetention);

    /// <summary>Removes a stream's log now (tests, and streams that never ran).</summary>
    public Task DeleteAsync(string stream) => Db.KeyDeleteAsync(Key(stream));

    TaskCompletionSource Waiter(string stream) =>
        _waiters.GetOrAdd(stream, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    async Task SubscribeAsync()
    {
        if (_subscription is not null) return;
        await _subscribing.WaitAsync();
        try
        {
            if (_subscription is not null) return;
            var queue = await _redis.GetSubscriber().SubscribeAsync(_channel);
            queue.OnMessage(m =>
            {
                if (_waiters.TryRemove((string)m.Message!, out var tcs)) tcs.TrySetResult();
            });
            _subscription = queue;
        }
        finally { _subscribing.Release(); }
    }

    static RedisValue IdOf(long seq) => seq.ToString(CultureInfo.InvariantCulture) + "-0";

    static long SeqOf(RedisValue id)
    {
        var s = (string)id!;
        int dash = s.IndexOf('-');
        return long.Parse(dash < 0 ? s : s[..dash], CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        if (_subscription is { } q) await q.UnsubscribeAsync();
    }
}

/// <summary>The event types a stream's log carries (the SSE event names).</summary>
public static class StreamEvents
{
    public const string Segment = "segment", Question = "question", Answer = "answer", Ended = "end";
}
