using OpenCvSharp;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Decode steps of several sequences batched into one forward over their own caches: each row's
/// hidden state and cache update are its own step's, whatever the cache lengths, groups, GQA or
/// M-RoPE; and captions generated concurrently through the batcher are the sequential ones.
/// </summary>
public class DecodeBatcherTests(ITestOutputHelper output)
{
    /// <summary>Caches of different lengths, prefilled with random embeddings (the same twice from one seed).</summary>
    static List<KvCache> Prefilled(Engine e, int[] lengths, int seed)
    {
        var g = new Generator((ulong)seed);
        var caches = new List<KvCache>();
        foreach (var n in lengths)
        {
            var cache = new KvCache(e.Text.NumHiddenLayers);
            var x = torch.randn(new long[] { 1, n, e.Text.HiddenSize }, generator: g).to(e.DType) * 0.5;
            e.Decoder.Forward(x, new DecoderStep { Positions = Enumerable.Range(0, n).Select(i => (long)i).ToArray(), Cache = cache }).Dispose();
            caches.Add(cache);
        }
        return caches;
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("qwen2_vl")]
    public void ForwardRows_IsEachRowsOwnStep_OverTwoSteps(string model)
    {
        var dir = model == "tiny" ? AppTestSupport.TinyModel : Path.Combine(Families.QwenFixtures.Root, model);
        using var e = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int[] lengths = [3, 11, 7, 1];
        // Row 1 decodes in the target group from φ = 0, as GPE captions do; the others follow their prompts.
        var groups = new[] { CacheGroup.Source, CacheGroup.Target, CacheGroup.Source, CacheGroup.Source };
        var alone = Prefilled(e, lengths, 5);
        var batched = Prefilled(e, lengths, 5);
        int[] tokens = [7, 3, 12, 5];
        for (int step = 0; step < 2; step++)
        {
            var positions = lengths.Select((n, i) => groups[i] == CacheGroup.Target ? (long)step : n + step).ToArray();
            var ids = torch.tensor(tokens.Select(t => (long)(t + step)).ToArray()).view(-1, 1);
            var h = e.Decoder.ForwardRows(e.Decoder.embed_tokens.forward(ids),
                Enumerable.Range(0, tokens.Length).Select(i => new DecoderModel.RowStep(positions[i], batched[i], groups[i])).ToList());
            for (int i = 0; i < tokens.Length; i++)
            {
                var own = e.Decoder.Forward(e.Decoder.embed_tokens.forward(ids[i].view(1, 1)),
                    new DecoderStep { Positions = new[] { positions[i] }, Cache = alone[i], Group = groups[i] });
                double err = (h[i] - own[0]).abs().max().item<float>();
                output.WriteLine($"{model} step {step} row {i}: max |Δh| {err:g3}");
                Assert.True(err < 1e-4, $"row {i} step {step}: max |Δh| {err}");
                Assert.Equal(alone[i].Layers[0][groups[i]].Length, batched[i].Layers[0][groups[i]].Length);
            }
        }
        foreach (var c in alone.Concat(batched)) c.Dispose();
    }

    [Fact]
    public async Task ConcurrentCaptionsThroughTheBatcher_AreTheSequentialCaptions_InSharedBatches()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var data = new DemoDataset(DemoSplit.Eval);
        var samples = Enumerable.Range(0, 4).Select(i => data.CaptionSample(i, DemoModelSpec.ImageSize, 1)).ToList();
        var opts = new GenerationOptions { MaxNewTokens = 24 };
        List<int> Caption(int i) => new Captioner(e).Caption(samples[i].Frames, null, opts, new CaptionTimings()).Where(t => t.Id >= 0).Select(t => t.Id).ToList();
        var sequential = Enumerable.Range(0, samples.Count).Select(Caption).ToList();
        using var batcher = new DecodeBatcher(e.Language);
        e.Stepper = batcher;
        try
        {
            using var start = new Barrier(samples.Count);
            var batched = await Task.WhenAll(Enumerable.Range(0, samples.Count).Select(i => Task.Run(() => { start.SignalAndWait(); return Caption(i); })))
                .WaitAsync(TimeSpan.FromMinutes(2));
            var (batches, steps, largest) = batcher.Counters;
            output.WriteLine($"{steps} decode steps in {batches} batches, largest {largest}");
            for (int i = 0; i < samples.Count; i++) Assert.Equal(sequential[i], batched[i]);
            // A step after each token: it gives the next one, or the stop (none after the last of a caption cut at the limit).
            Assert.Equal(sequential.Sum(s => s.Count == opts.MaxNewTokens ? s.Count - 1 : s.Count), steps);
            Assert.True(largest >= 2, $"no two steps ever shared a batch ({batches} batches of {steps} steps)");
        }
        finally
        {
            e.Stepper = null;
            foreach (var s in samples) s.Dispose();
        }
    }

    /// <summary>A cache holding one prompt token, and that token's id, to decode from.</summary>
    static KvCache OneTokenCache(Engine e)
    {
        var cache = new KvCache(e.Text.NumHiddenLayers);
        using var ids = torch.tensor(new long[] { 3 }).view(1, 1);
        e.Decoder.Forward(e.Decoder.embed_tokens.forward(ids), new DecoderStep { Positions = new[] { 0L }, Cache = cache }).Dispose();
        return cache;
    }

    [Fact]
    public async Task StepsThatFallDueWhileTheBatchWaitsForItsTurn_JoinThatBatch()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var turnAsked = new ManualResetEventSlim();
        using var turnGranted = new ManualResetEventSlim();
        // The model's turn is held by someone else (another stream's read) until we grant it.
        Tensor[] Turn(Func<Tensor[]> batch) { turnAsked.Set(); turnGranted.Wait(); return batch(); }
        using var batcher = new DecodeBatcher(e.Language, Turn);
        var caches = Enumerable.Range(0, 3).Select(_ => OneTokenCache(e)).ToList();
        try
        {
            var first = Task.Run(() => batcher.Step(e.Language, 5, 1, caches[0], CacheGroup.Source));
            Assert.True(turnAsked.Wait(TimeSpan.FromSeconds(30)), "the batcher never asked for a turn");
            var later = caches.Skip(1).Select(c => Task.Run(() => batcher.Step(e.Language, 5, 1, c, CacheGroup.Source))).ToList();
            // The first step and both later ones are queued before the turn comes.
            while (batcher.Queued < 3) await Task.Delay(5);
            turnGranted.Set();
            var logits = await Task.WhenAll(later.Prepend(first)).WaitAsync(TimeSpan.FromMinutes(1));
            var (batches, steps, largest) = batcher.Counters;
            Assert.Equal((1L, 3L, 3L), (batches, steps, largest));
            // The same token at the same position over equal caches: the same logits in every row.
            for (int i = 1; i < 3; i++) Assert.True((logits[i] - logits[0]).abs().max().item<float>() < 1e-4);
            foreach (var l in logits) l.Dispose();
        }
        finally { foreach (var c in caches) c.Dispose(); }
    }

    [Fact]
    public async Task AFailedTurn_FailsTheStepsWaitingForIt_AndTheBatcherGoesOn()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        int calls = 0;
        Tensor[] Turn(Func<Tensor[]> batch) => Interlocked.Increment(ref calls) == 1 ? throw new ObjectDisposedException("scheduler") : batch();
        using var batcher = new DecodeBatcher(e.Language, Turn);
        using var cache = OneTokenCache(e);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Task.Run(() => batcher.Step(e.Language, 5, 1, cache, CacheGroup.Source)).WaitAsync(TimeSpan.FromMinutes(1)));
        using var next = await Task.Run(() => batcher.Step(e.Language, 5, 1, cache, CacheGroup.Source)).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(1, next.dim());
        Assert.False(next.isnan().any().item<bool>());
    }

    [Fact]
    public async Task CallersThatSampleBetweenSteps_StayInOneBatch_AndOneThatFinishes_IsNotWaitedForAgain()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        // A generous regroup wait, so thread scheduling cannot split a batch; callers take 3 ms
        // between steps (their sampling), far longer than the batcher takes to start a batch.
        using var batcher = new DecodeBatcher(e.Language, regroup: TimeSpan.FromMilliseconds(300));
        int[] stepsOf = [4, 6, 8, 10];
        var caches = stepsOf.Select(_ => OneTokenCache(e)).ToList();
        try
        {
            using var start = new Barrier(stepsOf.Length);
            await Task.WhenAll(stepsOf.Select((n, i) => Task.Run(() =>
            {
                start.SignalAndWait();
                for (int s = 0; s < n; s++)
                {
                    batcher.Step(e.Language, 5 + s, 1 + s, caches[i], CacheGroup.Source).Dispose();
                    Thread.Sleep(3);
                }
            }))).WaitAsync(TimeSpan.FromMinutes(1));
            var (batches, steps, largest) = batcher.Counters;
            output.WriteLine($"{steps} steps in {batches} batches, largest {largest}");
            Assert.Equal(stepsOf.Sum(), steps);
            Assert.Equal(4, largest);
            // One batch per round (4 of 4, 2 of 3, 2 of 2, 2 of 1) once the callers are in step; the
            // very first round may split, as the batcher expects nobody before its first batch.
            Assert.InRange(batches, stepsOf.Max(), stepsOf.Max() + 2);
        }
        finally { foreach (var c in caches) c.Dispose(); }
    }
}
