using System.Collections.Concurrent;
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// How a session's model calls run: alone on the caller's thread (<see cref="DirectRunner"/>), or
/// batched with other sequences' calls in the model's turn (<see cref="ForwardBatcher"/>, the
/// server). Every tensor returned is the caller's to dispose.
/// </summary>
public interface IModelRunner
{
    /// <summary>A decoder pass of one block [1, T, D] through its cache (a frame read, a prompt): the final-normed hidden states [1, T', D] of the rows that reached the last layer.</summary>
    Tensor Forward(LanguageModel lm, Tensor embeds, DecoderStep step);
    /// <summary>One decode step: a token fed back through a cache at a position, giving the next logits [vocab].</summary>
    Tensor Step(LanguageModel lm, int id, long position, KvCache cache, CacheGroup group);
    /// <summary>The vision tower and connector over prepared images (one result per image, the caller's to dispose).</summary>
    IReadOnlyList<EncodedImage> Encode(IVisionLanguageModel model, IReadOnlyList<IPreparedImage> images);
    /// <summary>
    /// The decode loop after a first token: feeds <paramref name="first"/> back through the cache at
    /// <paramref name="position"/>, samples the next token, feeds that back at the next position,
    /// and so on. Yields each sampled token with the milliseconds its step and sampling took; ends
    /// after a stop token or <paramref name="count"/> tokens. Stopped early, the cache holds what
    /// the loop would hold had it stopped there: one fed-back token per token taken.
    /// </summary>
    IEnumerable<(int Id, double Ms)> Decode(LanguageModel lm, int first, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, int count);
}

/// <summary>Every call on the caller's thread, at once.</summary>
public sealed class DirectRunner : IModelRunner
{
    public static readonly DirectRunner Instance = new();

    public Tensor Forward(LanguageModel lm, Tensor embeds, DecoderStep step)
    {
        using var _ = torch.inference_mode();
        return lm.model.Forward(embeds, step).DetachFromDisposeScope();
    }

    public Tensor Step(LanguageModel lm, int id, long position, KvCache cache, CacheGroup group)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var ids = torch.tensor(new long[] { id }, device: lm.model.embed_tokens.weight.device).view(1, 1);
        var h = lm.model.Forward(lm.model.embed_tokens.forward(ids), new DecoderStep { Positions = new[] { position }, Cache = cache, Group = group });
        return lm.Logits(h[0, -1]).MoveToOuterDisposeScope();
    }

    public IReadOnlyList<EncodedImage> Encode(IVisionLanguageModel model, IReadOnlyList<IPreparedImage> images) => model.Encode(images);

    public IEnumerable<(int Id, double Ms)> Decode(LanguageModel lm, int first, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, int count) => StepByStep(this, lm, first, position, cache, group, sampler, stops, count);

    /// <summary>The decode loop one <see cref="IModelRunner.Step"/> at a time, on the caller's thread.</summary>
    internal static IEnumerable<(int Id, double Ms)> StepByStep(IModelRunner runner, LanguageModel lm, int first, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, int count)
    {
        int id = first;
        for (int i = 0; i < count; i++)
        {
            var sw = Stopwatch.StartNew();
            using (var logits = runner.Step(lm, id, position++, cache, group))
            using (torch.inference_mode())
                id = sampler.Next(logits);
            yield return (id, sw.Elapsed.TotalMilliseconds);
            if (stops.Contains(id)) yield break;
        }
    }
}

/// <summary>
/// Batches the model work of several sequences that share one model (the server's streams):
/// each caller's pass (a vision encode, a decode step, a frame read, a prompt) waits here, and one
/// thread runs every pass pending at that moment: the images as one vision encode, then the
/// decoder passes as one <see cref="DecoderModel.ForwardMany"/> over the sequences' own caches.
/// A generation (<see cref="Decode"/>) lives here between its steps: each batch feeds every
/// running generation's last token back and samples its next on this thread, so a generation's
/// steps run back to back, one a batch, without a round trip to its caller's thread; the caller
/// reads the tokens as they come. No pass waits for company: while a batch runs the next passes gather, so batches
/// form by themselves under load and a lone stream pays nothing. <paramref name="turn"/> runs a
/// batch in the model's turn (the server's scheduler; null: at once); a caller that holds the turn
/// already (<paramref name="holdsTurn"/>) runs its pass inline, alone.
/// </summary>
public sealed class ForwardBatcher(LanguageModel lm, Func<Func<Tensor[]>, Tensor[]>? turn = null, int maxBatch = 32, TimeSpan? regroup = null,
    Func<bool>? holdsTurn = null) : IModelRunner, IDisposable
{
    /// <summary>
    /// How long a batch waits for the sequences whose decode steps it has been serving to come back
    /// with their next step. Each caller samples its token on its own thread between steps
    /// (microseconds); without this wait the first caller back would start a batch of one and the
    /// rest would form the next. A sequence whose answer ended does not come back: the batch after
    /// its last step pays this once, and it is no longer waited for.
    /// </summary>
    public static readonly TimeSpan DefaultRegroup = TimeSpan.FromMilliseconds(1);
    readonly long _regroupTicks = (long)((regroup ?? DefaultRegroup).TotalSeconds * Stopwatch.Frequency);
    /// <summary>The sequences (by cache) whose decode steps were served lately and are expected back.</summary>
    readonly HashSet<KvCache> _active = new(ReferenceEqualityComparer.Instance);

    /// <summary>A decode step (<see cref="Id"/> ≥ 0: logits out), a block's pass (embeddings in, hidden states out) or a vision encode (<see cref="Images"/>).</summary>
    sealed class Pending(int id, Tensor? embeds, DecoderStep? step, IVisionLanguageModel? vision = null, IReadOnlyList<IPreparedImage>? images = null)
    {
        public readonly int Id = id;
        public readonly Tensor? Embeds = embeds;
        public readonly DecoderStep? Step = step;
        public readonly IVisionLanguageModel? Vision = vision;
        public readonly IReadOnlyList<IPreparedImage>? Images = images;
        public readonly ManualResetEventSlim Done = new();
        public Tensor? Result;
        public IReadOnlyList<EncodedImage>? Encoded;
        public Exception? Error;
        public bool IsEncode => Images is not null;
        public bool IsDecode => Embeds is null && !IsEncode;
    }

    /// <summary>A decode loop running here: the token to feed back next and where, and what it has sampled for its caller.</summary>
    sealed class Generation(int next, long position, KvCache cache, CacheGroup group, Sampler sampler, IReadOnlyCollection<int> stops, int count)
    {
        public int Next = next;
        public long Position = position;
        public int Left = count; // tokens it may still sample
        public int Fed;          // tokens fed back through the cache
        public readonly KvCache Cache = cache;
        public readonly CacheGroup Group = group;
        public readonly Sampler Sampler = sampler;
        public readonly IReadOnlyCollection<int> Stops = stops;
        public readonly BlockingCollection<(int Id, double Ms)> Out = new();
        public readonly ManualResetEventSlim Released = new();
        public bool InBatch, Cancelled;
        public Exception? Error;
    }

    readonly object _gate = new();
    readonly List<Pending> _pending = new();
    readonly List<Generation> _generations = new();
    Thread? _thread;
    bool _disposed;
    long _batches, _passes, _largest, _blocks, _encodeBatches, _encodes;

    /// <summary>Decoder batches run, the decoder passes in them (decode steps and blocks), and the largest.</summary>
    public (long Batches, long Steps, long Largest) Counters { get { lock (_gate) return (_batches, _passes, _largest); } }

    /// <summary>Block passes (frame reads, prompts) run in batches.</summary>
    public long Blocks { get { lock (_gate) return _blocks; } }

    /// <summary>Vision encodes run (one per batch that had images), and the callers' encodes in them.</summary>
    public (long Batches, long Calls) Encodes { get { lock (_gate) return (_encodeBatches, _encodes); } }

    /// <summary>Passes waiting for a batch now.</summary>
    public int Queued { get { lock (_gate) return _pending.Count; } }

    public Tensor Step(LanguageModel model, int id, long position, KvCache cache, CacheGroup group)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        return Submit(model, new Pending(id, null, new DecoderStep { Positions = new[] { position }, Cache = cache, Group = group }));
    }

    public Tensor Forward(LanguageModel model, Tensor embeds, DecoderStep step) => Submit(model, new Pending(-1, embeds, step));

    public IEnumerable<(int Id, double Ms)> Decode(LanguageModel model, int first, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, int count)
    {
        if (!ReferenceEquals(model, lm)) throw new ArgumentException("a forward batcher serves one model");
        return Follow(new Generation(first, position, cache, group, sampler, stops, count));
    }

    /// <summary>Runs <paramref name="g"/> in the batches from its first token on, and hands its tokens over as they come.</summary>
    IEnumerable<(int Id, double Ms)> Follow(Generation g)
    {
        if (holdsTurn?.Invoke() == true) // in the turn already: one step at a time, inline
        {
            foreach (var t in DirectRunner.StepByStep(this, lm, g.Next, g.Position, g.Cache, g.Group, g.Sampler, g.Stops, g.Left)) yield return t;
            yield break;
        }
        if (g.Left <= 0) yield break;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _generations.Add(g);
            _thread ??= StartThread();
            Monitor.Pulse(_gate);
        }
        int taken = 0;
        try
        {
            foreach (var t in g.Out.GetConsumingEnumerable())
            {
                taken++;
                yield return t;
            }
            if (g.Error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }
        finally { Stop(g, taken); }
    }

    /// <summary>
    /// The caller is done with <paramref name="g"/>: out of the batches (after the one it is in, if
    /// any), and the tokens it fed back beyond those the caller took are taken out of its cache.
    /// </summary>
    void Stop(Generation g, int taken)
    {
        bool wait;
        lock (_gate)
        {
            g.Cancelled = true;
            wait = g.InBatch;
            if (!wait) _generations.Remove(g);
        }
        if (wait) g.Released.Wait();
        long extra = g.Fed - taken;
        if (extra > 0)
            foreach (var layer in g.Cache.Layers)
            {
                var kv = layer[g.Group];
                kv.Evict(kv.Length - extra, extra);
            }
        g.Out.Dispose();
        g.Released.Dispose();
    }

    public IReadOnlyList<EncodedImage> Encode(IVisionLanguageModel model, IReadOnlyList<IPreparedImage> images)
    {
        if (images.Count == 0) return [];
        var p = new Pending(-1, null, null, model, images);
        Submit(p);
        return p.Encoded!;
    }

    Tensor Submit(LanguageModel model, Pending p)
    {
        if (!ReferenceEquals(model, lm)) throw new ArgumentException("a forward batcher serves one model");
        Submit(p);
        return p.Result!;
    }

    void Submit(Pending p)
    {
        if (holdsTurn?.Invoke() == true) // in the turn already: waiting for the batch thread's turn would never end
        {
            Run([p], []);
            if (p.Error is { } inline) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(inline);
            return;
        }
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
    }

    Thread StartThread()
    {
        var t = new Thread(Loop) { IsBackground = true, Name = "forward-batcher" };
        t.Start();
        return t;
    }

    void Loop()
    {
        while (true)
        {
            lock (_gate)
            {
                while (_pending.Count == 0 && _generations.Count == 0 && !_disposed) Monitor.Wait(_gate);
                if (_disposed) EndGenerations(new ObjectDisposedException(nameof(ForwardBatcher)));
                if (_pending.Count == 0 && _generations.Count == 0) return;
                long until = Stopwatch.GetTimestamp() + _regroupTicks;
                while (!_disposed && _generations.Count == 0 && _pending.Count < maxBatch && PendingCaches().Count() < _active.Count && !_active.IsSubsetOf(PendingCaches()))
                {
                    long left = until - Stopwatch.GetTimestamp();
                    if (left <= 0)
                    {
                        _active.IntersectWith(PendingCaches()); // the rest finished (or are late): not waited for again
                        break;
                    }
                    Monitor.Wait(_gate, TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
                }
            }
            // The batch is formed once the turn is ours, not before: passes that fell due while
            // the turn was waiting behind other work join this batch instead of the next.
            List<Pending> batch = [];
            List<Generation> gens = [];
            try
            {
                if (turn is null) Run(Take(batch, gens), gens);
                else turn(() => { Run(Take(batch, gens), gens); return []; });
            }
            catch (Exception e)
            {
                if (batch.Count == 0 && gens.Count == 0) Take(batch, gens); // the turn itself failed (the scheduler is closing): these passes fail with it
                foreach (var p in batch) p.Error = e;
                lock (_gate) foreach (var g in gens.Where(g => g.InBatch)) End(g, e);
            }
            foreach (var p in batch) p.Done.Set();
        }
    }

    IEnumerable<KvCache> PendingCaches() => _pending.Where(p => !p.IsEncode).Select(p => p.Step!.Cache!);

    /// <summary>Ends every running generation with <paramref name="e"/> (the batcher is closing).</summary>
    void EndGenerations(Exception e)
    {
        foreach (var g in _generations.ToList()) End(g, e);
    }

    /// <summary>Under the gate: <paramref name="g"/> leaves the batches (ended, failed or stopped by its caller).</summary>
    void End(Generation g, Exception? error = null)
    {
        g.Error ??= error;
        g.InBatch = false;
        _generations.Remove(g);
        if (!g.Out.IsAddingCompleted) g.Out.CompleteAdding();
        if (g.Cancelled) g.Released.Set();
    }

    List<Pending> Take(List<Pending> batch, List<Generation> gens)
    {
        lock (_gate)
        {
            batch.AddRange(_pending.Take(maxBatch));
            _pending.RemoveRange(0, batch.Count);
            foreach (var g in _generations)
                if (!g.Cancelled) { g.InBatch = true; gens.Add(g); }
            int passes = gens.Count, encodes = 0;
            foreach (var p in batch)
            {
                if (p.IsEncode) { encodes++; continue; }
                passes++;
                if (p.IsDecode) _active.Add(p.Step!.Cache!);
                else _active.Remove(p.Step!.Cache!); // a block (a read, a prompt): its decode steps, if any, start anew
            }
            if (passes > 0) { _batches++; _passes += passes; _largest = Math.Max(_largest, passes); }
            if (encodes > 0) { _encodeBatches++; _encodes += encodes; }
            _blocks += batch.Count(p => !p.IsDecode && !p.IsEncode);
        }
        return batch;
    }

    /// <summary>
    /// The batch's work: its images as one vision encode, then its decoder passes as one forward.
    /// Sets each pass's result (its encoded images, its logits [vocab] or its hidden states, the
    /// caller's to dispose) or its error.
    /// </summary>
    void Run(List<Pending> batch, List<Generation> gens)
    {
        var encodes = batch.Where(p => p.IsEncode).ToList();
        if (encodes.Count > 0) RunEncodes(encodes);
        var passes = batch.Where(p => !p.IsEncode).ToList();
        int own = passes.Count;
        // Each generation's step is a decode step like any other.
        foreach (var g in gens) passes.Add(new Pending(g.Next, null, new DecoderStep { Positions = new[] { g.Position }, Cache = g.Cache, Group = g.Group }));
        if (passes.Count == 0) return;
        var sw = Stopwatch.StartNew();
        Tensor[] results;
        try { results = RunPasses(passes); }
        catch (Exception e)
        {
            foreach (var p in passes.Take(own)) p.Error = e;
            lock (_gate) foreach (var g in gens) End(g, e);
            return;
        }
        for (int i = 0; i < own; i++) passes[i].Result = results[i];
        var sampled = new int[gens.Count];
        Exception? failed = null;
        try
        {
            using var _ = torch.inference_mode();
            // The greedy generations that record nothing else are one argmax and one host copy
            // between them, not a copy each; the others pick through their own samplers.
            var plain = Enumerable.Range(0, gens.Count).Where(i => gens[i].Sampler.Greedy && !gens[i].Sampler.RecordsLogProbs).ToList();
            if (plain.Count > 1)
            {
                using var scope = torch.NewDisposeScope();
                var ids = torch.stack(plain.Select(i => results[own + i].reshape(-1))).argmax(-1).cpu().data<long>().ToArray();
                for (int j = 0; j < plain.Count; j++) sampled[plain[j]] = (int)ids[j];
            }
            for (int i = 0; i < gens.Count; i++)
                if (plain.Count <= 1 || !plain.Contains(i)) sampled[i] = gens[i].Sampler.Next(results[own + i]);
        }
        catch (Exception e) { failed = e; }
        finally { for (int i = own; i < results.Length; i++) results[i].Dispose(); }
        double ms = sw.Elapsed.TotalMilliseconds;
        lock (_gate)
            for (int i = 0; i < gens.Count; i++)
            {
                var g = gens[i];
                g.Fed++;
                if (failed is not null) { End(g, failed); continue; }
                if (g.Cancelled) { End(g); continue; } // its caller stopped reading while this step ran
                g.InBatch = false;
                g.Out.Add((sampled[i], ms));
                if (--g.Left == 0 || g.Stops.Contains(sampled[i])) End(g);
                else (g.Next, g.Position) = (sampled[i], g.Position + 1);
            }
    }

    /// <summary>Every caller's images in one encode (per model); if that fails, each caller's alone, so one caller's failure is not the others'.</summary>
    static void RunEncodes(List<Pending> encodes)
    {
        foreach (var group in encodes.GroupBy(p => (object)p.Vision!, ReferenceEqualityComparer.Instance))
        {
            var callers = group.ToList();
            try
            {
                var all = callers[0].Vision!.Encode(callers.SelectMany(p => p.Images!).ToList());
                int at = 0;
                foreach (var p in callers) { p.Encoded = all.Skip(at).Take(p.Images!.Count).ToList(); at += p.Images!.Count; }
                continue;
            }
            catch (Exception) when (callers.Count > 1) { }
            catch (Exception e) { callers[0].Error = e; continue; }
            foreach (var p in callers)
            {
                try { p.Encoded = p.Vision!.Encode(p.Images!); }
                catch (Exception e) { p.Error = e; }
            }
        }
    }

    /// <summary>Decoder passes as one forward: per pass, its logits [vocab] (a decode step) or its hidden states (a block), each the caller's to dispose.</summary>
    Tensor[] RunPasses(List<Pending> batch)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var dec = lm.model;
        var decode = batch.Where(p => p.IsDecode).ToList();
        var embedded = decode.Count == 0 ? null
            : dec.embed_tokens.forward(torch.tensor(decode.Select(p => (long)p.Id).ToArray(), device: dec.embed_tokens.weight.device).view(1, -1));
        int d = 0;
        var seqs = batch.Select(p => (p.Embeds ?? embedded!.narrow(1, d++, 1), p.Step!)).ToList();
        var hidden = dec.ForwardMany(seqs);
        // The decode steps' logits in one product: the head's weights are read once for the batch.
        var logits = decode.Count == 0 ? null
            : lm.Logits(torch.cat(batch.Select((p, i) => (p, i)).Where(x => x.p.IsDecode).Select(x => hidden[x.i].select(1, -1)).ToArray(), 0));
        var results = new Tensor[batch.Count];
        for (int i = 0, j = 0; i < batch.Count; i++)
            results[i] = (batch[i].IsDecode ? logits![j++] : hidden[i]).clone().DetachFromDisposeScope();
        return results;
    }

    public void Dispose()
    {
        lock (_gate) { _disposed = true; Monitor.PulseAll(_gate); }
        _thread?.Join();
    }
}
