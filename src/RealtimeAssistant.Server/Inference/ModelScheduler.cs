using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Server.Inference;

/// <summary>
/// The one loaded model and the one place where every model call of the server is issued: each
/// live stream's reads and writes (through <see cref="ScheduledSession"/>) and each chat
/// completion (<see cref="SerialChatModel"/>). Streams keep their own threads and their own KV
/// caches; a model call waits here for its turn. Turns are granted first come, first served, one
/// step at a time (a frame read, a prompt pass, one decode step), so a stream's read waits behind
/// another stream's long answer for at most one decode step, never for the whole answer.
/// With batching (the default), the model work that falls due together (vision encodes, decode
/// steps, frame reads, prompts, from any streams and chat completions) runs as one batch: the
/// images as one encode, the decoder passes as one forward over the sequences' own caches
/// (<see cref="ForwardBatcher"/>, the engine's runner), in one turn. A stream's read waits behind
/// at most one batch.
/// </summary>
public sealed class ModelScheduler : IDisposable
{
    readonly object _gate = new();
    readonly LinkedList<Waiter> _queue = new();
    readonly bool _ownsEngine;
    readonly ForwardBatcher? _batcher;
    bool _busy, _disposed;
    int _owner; // the managed thread whose step runs now (0: none, or a turn being handed on)
    long _steps, _waited;
    double _waitMs, _maxWaitMs;

    public Engine Engine { get; }

    public ModelScheduler(Engine engine, bool ownsEngine = true, bool batching = true)
    {
        Engine = engine;
        _ownsEngine = ownsEngine;
        if (batching)
        {
            _batcher = new ForwardBatcher(engine.Language, batch => Run(batch), holdsTurn: () => HeldByCurrentThread);
            engine.Runner = _batcher;
        }
    }

    public static ModelScheduler Load(string modelDir, EngineOptions? options = null, ILogger? log = null, bool batching = true) =>
        new(Engine.Load(modelDir, options, log), batching: batching);

    /// <summary>Whether decoder passes are batched across streams.</summary>
    public bool Batching => _batcher is not null;

    /// <summary>Batches run, the passes in them (decode steps, reads, prompts) and the largest (zeros without batching).</summary>
    public (long Batches, long Steps, long Largest) BatchCounters => _batcher?.Counters ?? default;

    /// <summary>Block passes (frame reads, prompts) run in batches (0 without batching).</summary>
    public long BatchedBlocks => _batcher?.Blocks ?? 0;

    /// <summary>The calling thread holds the turn (its model calls run inline).</summary>
    public bool HeldByCurrentThread { get { lock (_gate) return _busy && _owner == Environment.CurrentManagedThreadId; } }

    sealed class Waiter { public bool Granted; }

    /// <summary>Callers waiting for a turn now.</summary>
    public int Waiting { get { lock (_gate) return _queue.Count; } }
    /// <summary>A step is running now.</summary>
    public bool Busy { get { lock (_gate) return _busy; } }

    /// <summary>Steps run, steps that had to wait for another's, their mean and longest wait.</summary>
    public (long Steps, long Waited, double MeanWaitMs, double MaxWaitMs) Counters
    {
        get { lock (_gate) return (_steps, _waited, _waited == 0 ? 0 : _waitMs / _waited, _maxWaitMs); }
    }

    /// <summary>One model step, in its turn. <paramref name="ct"/> cancels the wait (not a step that has started).</summary>
    public T Run<T>(Func<T> step, CancellationToken ct = default)
    {
        Acquire(ct);
        try { return step(); }
        finally { Release(); }
    }

    public void Run(Action step, CancellationToken ct = default) => Run(() => { step(); return 0; }, ct);

    /// <summary>
    /// A session's call (a frame read): with batching its model work (its vision encode, its
    /// decoder passes) joins batches, which take the turns; without, the whole call is one turn.
    /// </summary>
    public void Session(Action call, CancellationToken ct = default)
    {
        if (_batcher is null) { Run(call, ct); return; }
        ct.ThrowIfCancellationRequested();
        ObjectDisposedException.ThrowIf(_disposed, this);
        call();
    }

    /// <summary>
    /// A generation whose every step (each MoveNext: the prompt pass, then one decode step) takes
    /// its own turn; other streams' steps run between them. <paramref name="start"/> is called in
    /// the first turn (a session may do model work as soon as it is asked). With batching no step
    /// takes a turn here: each pass joins a batch through the engine's runner (and the batch takes
    /// the turn). Cancelling <paramref name="ct"/> ends the generation at its next step; its cleanup
    /// still runs in a turn without batching.
    /// </summary>
    public IEnumerable<T> Steps<T>(Func<IEnumerable<T>> start, CancellationToken ct = default)
    {
        IEnumerator<T>? e = null;
        try
        {
            while (true)
            {
                T item;
                if (_batcher is not null)
                {
                    ct.ThrowIfCancellationRequested();
                    ObjectDisposedException.ThrowIf(_disposed, this);
                    e ??= start().GetEnumerator();
                    if (!e.MoveNext()) yield break;
                    item = e.Current;
                }
                else
                {
                    Acquire(ct);
                    try
                    {
                        e ??= start().GetEnumerator();
                        if (!e.MoveNext()) yield break;
                        item = e.Current;
                    }
                    finally { Release(); }
                }
                yield return item;
            }
        }
        finally
        {
            if (e is not null && _batcher is not null) e.Dispose();
            else if (e is not null)
            {
                Acquire(CancellationToken.None);
                try { e.Dispose(); }
                finally { Release(); }
            }
        }
    }

    void Acquire(CancellationToken ct)
    {
        long t0 = 0;
        ct.ThrowIfCancellationRequested(); // a generation cancelled between steps ends here
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _steps++;
            if (!_busy && _queue.Count == 0)
            {
                _busy = true;
                _owner = Environment.CurrentManagedThreadId;
                return;
            }
            t0 = Stopwatch.GetTimestamp();
            var me = _queue.AddLast(new Waiter());
            while (!me.Value.Granted)
            {
                if (ct.IsCancellationRequested || _disposed)
                {
                    _queue.Remove(me);
                    ct.ThrowIfCancellationRequested();
                    throw new ObjectDisposedException(nameof(ModelScheduler));
                }
                Monitor.Wait(_gate, 50); // short waits: a cancellation is noticed without a registration
            }
            _owner = Environment.CurrentManagedThreadId;
            var ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            _waited++;
            _waitMs += ms;
            _maxWaitMs = Math.Max(_maxWaitMs, ms);
        }
    }

    void Release()
    {
        lock (_gate)
        {
            _owner = 0;
            if (_queue.First is { } next)
            {
                _queue.RemoveFirst();
                next.Value.Granted = true; // the turn passes straight on: _busy stays true
                Monitor.PulseAll(_gate);
            }
            else
            {
                _busy = false;
                Monitor.PulseAll(_gate); // a Dispose waiting for the step in progress
            }
        }
    }

    /// <summary>Waits for the step in progress, refuses new ones, and frees the model (when it owns it).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            Monitor.PulseAll(_gate);
            var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
            while (_busy && Stopwatch.GetTimestamp() < deadline) Monitor.Wait(_gate, 50);
        }
        if (_batcher is not null)
        {
            if (ReferenceEquals(Engine.Runner, _batcher)) Engine.Runner = DirectRunner.Instance;
            _batcher.Dispose();
        }
        if (_ownsEngine) Engine.Dispose();
    }
}
