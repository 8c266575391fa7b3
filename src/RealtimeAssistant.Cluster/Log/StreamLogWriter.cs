using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cluster.Grains;
using StackExchange.Redis;

namespace RealtimeAssistant.Cluster.Log;

/// <summary>
/// One stream activation's side of its caption log. Each finished segment gets the next sequence
/// number at once and goes into a ring in memory; one task appends them to the durable log in
/// order. While Redis is unreachable the log is <see cref="Degraded"/>: numbering and the ring go on
/// (readers are served from memory), and the queued entries are appended, in order and under the
/// numbers they already have, when Redis returns. If Redis is unreachable when the activation
/// starts, the log's top is not known, so segments wait unnumbered until it is (numbering past an
/// unknown top could reuse a number).
/// </summary>
public sealed class StreamLogWriter : IAsyncDisposable
{
    readonly CaptionLog _log;
    readonly string _stream;
    readonly ILogger? _logger;
    readonly Channel<LogEntry> _queue = Channel.CreateUnbounded<LogEntry>(new UnboundedChannelOptions { SingleReader = true });
    readonly List<(string Type, Func<long, string> Data)> _unnumbered = new();
    readonly MemoryRing _memory;
    readonly CancellationTokenSource _stop = new();
    readonly object _lock = new();
    Task? _appender, _learner;
    long _last = -1;        // newest number given; -1 until the log's top is known
    long _durable;
    volatile bool _degraded;
    volatile string? _error;
    volatile bool _fenced;

    public StreamLogWriter(CaptionLog log, string stream, int memory = 1024, ILogger? logger = null)
    {
        _log = log;
        _stream = stream;
        _logger = logger;
        _memory = new MemoryRing(memory);
    }

    /// <summary>Called (once, on the appender's task) when another activation turned out to own the log: this one must stop.</summary>
    public Action? Fenced { get; init; }

    public long LastSeq { get { lock (_lock) return Math.Max(0, _last); } }
    public long DurableSeq => Interlocked.Read(ref _durable);
    public bool Degraded => _degraded || _last < 0;
    public string? Error => _error;
    public bool IsFenced => _fenced;
    public bool TopKnown { get { lock (_lock) return _last >= 0; } }

    /// <summary>
    /// Learns the log's top (waiting at most <paramref name="wait"/>; after that it keeps trying in
    /// the background) and starts appending. <paramref name="hint"/>: a top already known (a migration hands it over).
    /// </summary>
    public async Task StartAsync(TimeSpan wait, long? hint = null)
    {
        _appender = Task.Run(AppendLoop);
        _learner = Task.Run(async () =>
        {
            var backoff = TimeSpan.FromMilliseconds(100);
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    long top = await _log.LastSeqAsync(_stream);
                    // The log is the truth; a handed-over top can only be behind it (a write in flight that landed).
                    SetTop(Math.Max(top, hint ?? 0));
                    return;
                }
                catch (Exception e) when (IsRedisFailure(e))
                {
                    _error = $"caption log unreachable: {e.Message}";
                    await Task.Delay(backoff, _stop.Token).ContinueWith(_ => { });
                    backoff = TimeSpan.FromMilliseconds(Math.Min(2000, backoff.TotalMilliseconds * 2));
                }
            }
        });
        await Task.WhenAny(_learner, Task.Delay(wait));
    }

    void SetTop(long top)
    {
        lock (_lock)
        {
            _last = top;
            Interlocked.Exchange(ref _durable, top);
            _memory.StartAfter(top);
            foreach (var (type, data) in _unnumbered) Number(type, data);
            _unnumbered.Clear();
        }
        if (_error is not null && !_degraded) _error = null;
    }

    /// <summary>Gives the entry the next sequence number (returned; 0 while the top is unknown) and queues it for the log.</summary>
    public long Append(string type, string data) => Append(type, _ => data);

    /// <summary>As <see cref="Append(string, string)"/>, for data that names its own sequence number (made once the number is known).</summary>
    public long Append(string type, Func<long, string> data)
    {
        lock (_lock)
        {
            if (_fenced) return 0;
            if (_last < 0) { _unnumbered.Add((type, data)); return 0; }
            return Number(type, data);
        }
    }

    long Number(string type, Func<long, string> data)
    {
        var seq = ++_last;
        var entry = new LogEntry(seq, type, data(seq));
        _memory.Add(entry);
        _queue.Writer.TryWrite(entry);
        return entry.Seq;
    }

    /// <summary>What memory holds after <paramref name="after"/> (readers' fallback while the durable log is unreachable).</summary>
    public LogPage ReadMemory(long after, int max) { lock (_lock) return _memory.Read(after, max); }

    async Task AppendLoop()
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
                while (reader.TryPeek(out var entry))
                {
                    try
                    {
                        await _log.AppendAsync(_stream, entry);
                        reader.TryRead(out _);
                        Interlocked.Exchange(ref _durable, entry.Seq);
                        if (_degraded) _logger?.LogWarning("stream {Stream}: caption log reachable again; appended up to {Seq}", _stream, entry.Seq);
                        _degraded = false;
                        _error = null;
                        backoff = TimeSpan.FromMilliseconds(100);
                    }
                    catch (LogFencedException e)
                    {
                        lock (_lock) _fenced = true;
                        _error = e.Message;
                        _logger?.LogWarning("{Message}: this activation stops", e.Message);
                        Fenced?.Invoke();
                        return;
                    }
                    catch (Exception e) when (IsRedisFailure(e))
                    {
                        if (!_degraded) _logger?.LogWarning("stream {Stream}: caption log unreachable ({Message}); captions go on from memory", _stream, e.Message);
                        _degraded = true;
                        _error = $"caption log unreachable: {e.Message}";
                        await Task.Delay(backoff, _stop.Token);
                        backoff = TimeSpan.FromMilliseconds(Math.Min(2000, backoff.TotalMilliseconds * 2));
                    }
                }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
    }

    /// <summary>Waits until everything numbered is in the durable log, or <paramref name="timeout"/>; true when it is.</summary>
    public async Task<bool> FlushAsync(TimeSpan timeout)
    {
        var end = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < end)
        {
            if (_fenced) return false;
            lock (_lock) if (_last >= 0 && DurableSeq >= _last && _unnumbered.Count == 0) return true;
            await Task.Delay(20);
        }
        return false;
    }

    public static bool IsRedisFailure(Exception e) =>
        e is RedisConnectionException or RedisTimeoutException or TimeoutException or ObjectDisposedException
        || e is RedisException && e is not RedisServerException;

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        _stop.Cancel();
        foreach (var t in new[] { _appender, _learner })
            if (t is not null) await t.ContinueWith(_ => { });
        _stop.Dispose();
    }

    /// <summary>The newest entries, by sequence number, with the event log's read semantics (missed entries counted).</summary>
    sealed class MemoryRing(int capacity)
    {
        readonly LogEntry[] _ring = new LogEntry[Math.Max(1, capacity)];
        long _first = 1, _last;

        public void StartAfter(long top) { _first = top + 1; _last = top; }

        public void Add(LogEntry e)
        {
            _ring[e.Seq % _ring.Length] = e;
            _last = e.Seq;
            _first = Math.Max(_first, _last - _ring.Length + 1);
        }

        public LogPage Read(long after, int max)
        {
            long from = Math.Max(after + 1, _first);
            if (from > _last) return LogPage.Empty;
            long count = Math.Min(_last - from + 1, max);
            var list = new LogEntry[count];
            for (long i = 0; i < count; i++) list[i] = _ring[(from + i) % _ring.Length];
            return new LogPage(from - (after + 1), list);
        }
    }
}
