using System.Runtime.CompilerServices;

namespace RealtimeAssistant.Server.Streams;

/// <summary>An event and its sequence number in its stream's log (1, 2, 3, …; the SSE id).</summary>
public readonly record struct Sequenced<T>(long Seq, T Item);

/// <summary>
/// What a reader gets from the log after its cursor: <see cref="Missed"/> events that the log no
/// longer holds (retention dropped them before the reader came back), then the held ones in order.
/// </summary>
public sealed record LogBatch<T>(long Missed, IReadOnlyList<Sequenced<T>> Events);

/// <summary>
/// One live stream's events, numbered 1, 2, 3, … and held in a ring of <c>capacity</c> (the
/// retention: older events are dropped as new ones come). Readers follow it from a cursor, the
/// last sequence number they have (a client's Last-Event-ID): each event after the cursor that
/// the log still holds is delivered exactly once and in order, and those it dropped are counted,
/// never silently skipped. Appends never wait for readers. Thread-safe.
/// </summary>
public sealed class EventLog<T>
{
    readonly object _lock = new();
    readonly Sequenced<T>[] _ring;
    long _last;           // sequence number of the newest event; 0 before any
    bool _completed;
    TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public EventLog(int capacity)
    {
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), "an event log holds at least one event");
        _ring = new Sequenced<T>[capacity];
    }

    public int Capacity => _ring.Length;
    public long LastSeq { get { lock (_lock) return _last; } }
    /// <summary>The oldest sequence number still held (LastSeq + 1 when none is).</summary>
    public long FirstSeq { get { lock (_lock) return First; } }
    public bool IsCompleted { get { lock (_lock) return _completed; } }

    long First => Math.Max(1, _last - _ring.Length + 1);

    /// <summary>Adds an event; returns its sequence number.</summary>
    public long Append(T item)
    {
        TaskCompletionSource wake;
        long seq;
        lock (_lock)
        {
            if (_completed) throw new InvalidOperationException("the event log is complete");
            seq = ++_last;
            _ring[seq % _ring.Length] = new Sequenced<T>(seq, item);
            wake = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.SetResult();
        return seq;
    }

    /// <summary>No more events: followers end once they have read what is held.</summary>
    public void Complete()
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            if (_completed) return;
            _completed = true;
            wake = _changed;
        }
        wake.SetResult();
    }

    /// <summary>What the log holds after <paramref name="after"/>, at most <paramref name="max"/> events, without waiting.</summary>
    public LogBatch<T> Read(long after, int max = int.MaxValue)
    {
        lock (_lock) return ReadLocked(after, max);
    }

    LogBatch<T> ReadLocked(long after, int max)
    {
        if (after < 0) throw new ArgumentOutOfRangeException(nameof(after), "a cursor is ≥ 0");
        if (after > _last) throw new ArgumentOutOfRangeException(nameof(after), $"cursor {after} is past the last event {_last}");
        long from = Math.Max(after + 1, First);
        long missed = from - (after + 1);
        long count = Math.Min(_last - from + 1, max);
        var events = new Sequenced<T>[count];
        for (long i = 0; i < count; i++) events[i] = _ring[(from + i) % _ring.Length];
        return new LogBatch<T>(missed, events);
    }

    /// <summary>
    /// Everything after <paramref name="after"/>, then each new event as it comes, batched as it
    /// is found; ends when the log is complete and read to its end, or on <paramref name="ct"/>.
    /// </summary>
    public async IAsyncEnumerable<LogBatch<T>> Follow(long after, int maxBatch = 256, [EnumeratorCancellation] CancellationToken ct = default)
    {
        long cursor = after;
        while (true)
        {
            LogBatch<T> batch;
            Task changed;
            lock (_lock)
            {
                batch = ReadLocked(cursor, maxBatch);
                changed = _changed.Task;
                if (batch.Missed == 0 && batch.Events.Count == 0 && _completed) yield break;
            }
            if (batch.Missed == 0 && batch.Events.Count == 0)
            {
                await changed.WaitAsync(ct);
                continue;
            }
            cursor = batch.Events.Count > 0 ? batch.Events[^1].Seq : cursor + batch.Missed;
            yield return batch;
        }
    }

    /// <summary>
    /// The cursor for a client's Last-Event-ID header: none → <paramref name="fresh"/> (0 replays
    /// what is held; LastSeq follows live only). Anything but a sequence number this log has
    /// issued is the client's error.
    /// </summary>
    public long CursorFor(string? lastEventId, long fresh) => LastEventId.Cursor(lastEventId, fresh, LastSeq);
}

/// <summary>A client's Last-Event-ID against a stream's log numbered 1, 2, 3, … (this process's or a cluster's).</summary>
public static class LastEventId
{
    /// <summary>The cursor to resume after: none → <paramref name="fresh"/>; anything but a number up to <paramref name="last"/> is the client's error.</summary>
    public static long Cursor(string? lastEventId, long fresh, long last)
    {
        if (string.IsNullOrWhiteSpace(lastEventId)) return fresh;
        if (!long.TryParse(lastEventId.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
            throw ApiError.BadRequest($"Last-Event-ID '{Truncate(lastEventId)}' is not an event id of this stream (ids are 1, 2, 3, …)", "Last-Event-ID");
        if (id > last)
            throw ApiError.BadRequest($"Last-Event-ID {id} is ahead of this stream's last event, {last}", "Last-Event-ID");
        return id;
    }

    static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
