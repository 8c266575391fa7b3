using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>Runs one decode step: a token fed back through a cache at a position, giving the next logits [vocab] (the caller disposes them).</summary>
public interface IDecodeStepper
{
    Tensor Step(LanguageModel lm, int id, long position, KvCache cache, CacheGroup group);
}

/// <summary>The decode step on the caller's thread, alone.</summary>
public sealed class DirectStepper : IDecodeStepper
{
    public static readonly DirectStepper Instance = new();

    public Tensor Step(LanguageModel lm, int id, long position, KvCache cache, CacheGroup group)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var ids = torch.tensor(new long[] { id }, device: lm.model.embed_tokens.weight.device).view(1, 1);
        var h = lm.model.Forward(lm.model.embed_tokens.forward(ids), new DecoderStep { Positions = new[] { position }, Cache = cache, Group = group });
        return lm.Logits(h[0, -1]).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Batches the decode steps of several sequences that share one model (the server's streams):
/// each caller's step waits here, and one thread runs every step pending at that moment as one
/// <see cref="DecoderModel.ForwardRows"/> over the sequences' own caches. No step waits for company:
/// while a batch runs the next steps gather, so batches form by themselves under load and a lone
/// stream pays nothing. <paramref name="turn"/> runs a batch in the model's turn (the server's
/// scheduler, so a batch and another stream's frame read never run at once); null: at once.
/// </summary>
public sealed class DecodeBatcher(LanguageModel lm, Func<Func<Tensor[]>, Tensor[]>? turn = null, int maxBatch = 32, TimeSpan? regroup = null) : IDecodeStepper, IDisposable
{
    /// <summary>
    /// How long a batch waits for the sequences it has been serving to come back with their next
    /// step. Each caller samples its token on its own thread between steps (microseconds); without
    /// this wait the first caller back would start a batch of one and the rest would form the next.
    /// A sequence whose answer ended does not come back: the batch after its last step pays this
    /// once, and it is no longer waited for.
    /// </summary>
    public static readonly TimeSpan DefaultRegroup = TimeSpan.FromMilliseconds(1);
    readonly long _regroupTicks = (long)((regroup ?? DefaultRegroup).TotalSeconds * Stopwatch.Frequency);
    /// <summary>The sequences (by cache) served lately and expected back.</summary>
    readonly HashSet<KvCache> _active = new(ReferenceEqualityComparer.Instance);

    sealed class Pending(int id, long position, KvCache cache, CacheGroup group)
    {
        public readonly int Id = id;
        public readonly long Position = position;
        public readonly KvCache Cache = cache;
        public readonly CacheGroup Group = group;
        public readonly ManualResetEventSlim Done = new();
        public Tensor? Result;
        public Exception? Error;
    }

    readonly object _gate = new();
    readonly List<Pending> _pending = new();
    Thread? _thread;
    bool _disposed;
    long _batches, _rows, _largest;

    /// <summary>Batches run, steps in them, and the largest batch.</summary>
    public (long Batches, long Steps, long Largest) Counters { get { lock (_gate) return (_batches, _rows, _largest); } }

    /// <summary>Steps waiting for a batch now.</summary>
    public int Queued { get { lock (_gate) return _pending.Count; } }

    public Tensor Step(LanguageModel model, int id, long position, KvCache cache, CacheGroup group)
    {
        if (!ReferenceEquals(model, lm)) throw new ArgumentException("a decode batcher serves one model");
        var p = new Pending(id, position, cache, group);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _pending.Add(p);
            _thread ??= StartThread();
            Monitor.Pulse(_gate);
        }
        p.Done.Wait();
        p.Done.Dispose();
        if (p.Error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        return p.Result!;
    }

    Thread StartThread()
    {
        var t = new Thread(Loop) { IsBackground = true, Name = "decode-batcher" };
        t.Start();
        return t;
    }

    void Loop()
    {
        while (true)
        {
            lock (_gate)
            {
                while (_pending.Count == 0 && !_disposed) Monitor.Wait(_gate);
                if (_pending.Count == 0) return;
                long until = Stopwatch.GetTimestamp() + _regroupTicks;
                while (!_disposed && _pending.Count < Math.Min(maxBatch, _active.Count) && !_active.IsSubsetOf(_pending.Select(p => p.Cache)))
                {
                    long left = until - Stopwatch.GetTimestamp();
                    if (left <= 0)
                    {
                        _active.IntersectWith(_pending.Select(p => p.Cache)); // the rest finished (or are late): not waited for again
                        break;
                    }
                    Monitor.Wait(_gate, TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
                }
            }
            // The batch is formed once the turn is ours, not before: steps that fell due while
            // the turn was waiting behind other streams' reads join this batch instead of the next.
            List<Pending> batch = [];
            try
            {
                var results = turn is null ? Run(Take(batch)) : turn(() => Run(Take(batch)));
                for (int i = 0; i < batch.Count; i++) batch[i].Result = results[i];
            }
            catch (Exception e)
            {
                if (batch.Count == 0) Take(batch); // the turn itself failed (the scheduler is closing): these steps fail with it
                foreach (var p in batch) p.Error = e;
            }
            foreach (var p in batch) p.Done.Set();
        }
    }

    List<Pending> Take(List<Pending> batch)
    {
        lock (_gate)
        {
            batch.AddRange(_pending.Take(maxBatch));
            _pending.RemoveRange(0, batch.Count);
            foreach (var p in batch) _active.Add(p.Cache);
            _batches++; _rows += batch.Count; _largest = Math.Max(_largest, batch.Count);
        }
        return batch;
    }

    /// <summary>The batch's steps as one forward: one logits row per step, each the caller's to dispose.</summary>
    Tensor[] Run(List<Pending> batch)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var dec = lm.model;
        var ids = torch.tensor(batch.Select(p => (long)p.Id).ToArray(), device: dec.embed_tokens.weight.device).view(-1, 1);
        var h = dec.ForwardRows(dec.embed_tokens.forward(ids), batch.Select(p => new DecoderModel.RowStep(p.Position, p.Cache, p.Group)).ToList());
        var logits = lm.Logits(h[.., -1]);
        return Enumerable.Range(0, batch.Count).Select(i => logits[i].clone().DetachFromDisposeScope()).ToArray();
    }

    public void Dispose()
    {
        lock (_gate) { _disposed = true; Monitor.PulseAll(_gate); }
        _thread?.Join();
    }
}
