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
/// Decoder passes of several sequences (decode steps, frame reads, prompts) batched into one
/// forward over their own caches: each sequence's hidden states and cache are its own forward's,
/// whatever the cache lengths, groups, plans, GQA or M-RoPE; and captions generated concurrently
/// through the batcher are the sequential ones.
/// </summary>
public class ForwardBatcherTests(ITestOutputHelper output)
{
    /// <summary>Caches of different lengths, prefilled with random embeddings (the same twice from one seed).</summary>
    internal static List<KvCache> Prefilled(Engine e, int[] lengths, int seed)
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

    /// <summary>A block of random embeddings [1, n, D] whose rows [2, 2+visual) are one image's tokens (the rest text).</summary>
    static (Tensor Embeds, List<RealtimeAssistant.Pruning.VisualSpan> Spans) Block(Engine e, int n, int visual, Generator g) =>
        (torch.randn(new long[] { 1, n, e.Text.HiddenSize }, generator: g).to(e.DType) * 0.5, [new RealtimeAssistant.Pruning.VisualSpan(2, visual, 0)]);

    /// <summary>
    /// Positions for a block of n after a cache of c: plain, or for an M-RoPE model t, h, w over
    /// the image's 2 × (visual/2) grid, as a frame's block lays them out.
    /// </summary>
    static PositionIds BlockPositions(Engine e, long c, int n, int visual)
    {
        if (e.Text.MropeSection is null) return PositionIds.Range(c, n);
        var t = new long[n]; var h = new long[n]; var w = new long[n];
        for (int i = 0; i < n; i++)
        {
            bool image = i >= 2 && i < 2 + visual;
            int v = i - 2;
            (t[i], h[i], w[i]) = image ? (c + 2, c + 2 + v / (visual / 2), c + 2 + v % (visual / 2)) : i < 2 ? (c + i, c + i, c + i) : (c + i - visual + visual / 2, c + i - visual + visual / 2, c + i - visual + visual / 2);
        }
        return new PositionIds(t, h, w);
    }

    /// <summary>
    /// One forward over several sequences: decode rows in either group, a plain block, a pruned
    /// frame read (the pruner's plan cuts rows layer by layer) and a masked block, all together.
    /// Each sequence's hidden states, kept rows and cache are exactly what its own forward gives.
    /// </summary>
    [Theory]
    [InlineData("tiny")]
    [InlineData("qwen2_vl")]
    public void ForwardMany_IsEachSequencesOwnForward_DecodeStepsAndPrunedReadsTogether(string model)
    {
        var dir = model == "tiny" ? AppTestSupport.TinyModel : Path.Combine(Families.QwenFixtures.Root, model);
        using var e = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        int layers = e.Text.NumHiddenLayers;
        int[] lengths = [3, 11, 7, 5, 9];
        var alone = Prefilled(e, lengths, 5);
        var batched = Prefilled(e, lengths, 5);
        var g = new Generator(11);
        // A shallow stage where the model is deep enough for one before the exit.
        var schedule = new RealtimeAssistant.Pruning.PruningConfig { ShallowLayers = Math.Min(1, layers - 2), FilterFrom = 1, Budget = 3, ExitLayer = layers - 1 };
        for (int round = 0; round < 2; round++)
        {
            var block = Block(e, 7, 4, g);
            var read = Block(e, 10, 6, g);
            var masked = Block(e, 4, 0, g);
            // A mask over the cache and the block: the block's rows skip the cache's first 2 entries.
            long maskedCache = alone[4].Layers[0].Source.Length;
            var mask = SelfAttention.CausalMask(4, maskedCache + 4, e.Device).clone();
            mask.narrow(1, 0, 2).fill_(false);
            DecoderStep[] Steps(List<KvCache> caches, Func<RealtimeAssistant.Pruning.PrunePlan> plan) =>
            [
                new() { Positions = new[] { (long)(lengths[0] + round) }, Cache = caches[0] },
                new() { Positions = new[] { (long)round }, Cache = caches[1], Group = CacheGroup.Target },
                new() { Positions = BlockPositions(e, caches[2].Layers[0].Source.Length, 7, 4), Cache = caches[2] },
                new() { Positions = BlockPositions(e, caches[3].Layers[0].Source.Length, 10, 6), Cache = caches[3], Plan = plan() },
                new() { Positions = PositionIds.Range(maskedCache, 4), Cache = caches[4], Mask = mask },
            ];
            var ids = torch.tensor(new long[] { 7 + round, 3 + round }).view(1, -1);
            var tokens = e.Decoder.embed_tokens.forward(ids);
            Tensor[] inputs = [tokens.narrow(1, 0, 1), tokens.narrow(1, 1, 1), block.Embeds, read.Embeds, masked.Embeds];
            RealtimeAssistant.Pruning.PrunePlan? planAlone = null, planBatched = null;
            var ownSteps = Steps(alone, () => planAlone = new RealtimeAssistant.Pruning.PrunePlan(e.Text, 10, read.Spans, schedule.CreatePruner(layers)));
            var own = inputs.Select((x, i) => e.Decoder.Forward(x, ownSteps[i])).ToArray();
            var manySteps = Steps(batched, () => planBatched = new RealtimeAssistant.Pruning.PrunePlan(e.Text, 10, read.Spans, schedule.CreatePruner(layers)));
            var many = e.Decoder.ForwardMany(inputs.Select((x, i) => (x, manySteps[i])).ToList());
            Assert.Equal(planAlone!.Rows, planBatched!.Rows);
            Assert.True(planBatched.Rows.Length < 10, $"the pruner kept all 10 rows of the read (round {round}): nothing was cut");
            for (int i = 0; i < own.Length; i++)
            {
                Assert.Equal(own[i].shape, many[i].shape);
                double err = (own[i] - many[i]).abs().max().item<float>();
                output.WriteLine($"{model} round {round} sequence {i}: rows {many[i].shape[1]}, max |Δh| {err:g3}");
                Assert.True(err < 1e-4, $"sequence {i} round {round}: max |Δh| {err}");
                for (int l = 0; l < layers; l++)
                {
                    var group = manySteps[i].Group;
                    Assert.Equal(alone[i].Layers[l][group].Positions.ToArray(), batched[i].Layers[l][group].Positions.ToArray());
                    double kerr = (alone[i].Layers[l][group].Keys - batched[i].Layers[l][group].Keys).abs().max().item<float>();
                    Assert.True(kerr < 1e-4, $"sequence {i} layer {l}: cached keys differ by {kerr}");
                }
            }
        }
        foreach (var c in alone.Concat(batched)) c.Dispose();
    }

    /// <summary>Streams whose reads are pruned by the governor's schedule read and caption through one batcher concurrently: their captions are the sequential ones, and reads shared batches.</summary>
    [Fact]
    public async Task ConcurrentPrunedStreamsThroughTheBatcher_CaptionAsEachAlone_AndTheirReadsShareBatches()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var data = new DemoDataset(DemoSplit.Eval);
        var clips = Enumerable.Range(0, 4).Select(i => data.CaptionSample(i, DemoModelSpec.ImageSize, 3)).ToList();
        var schedule = e.Layout.Schedule ?? throw new InvalidOperationException("the demo model ships a pruning schedule");
        var options = new RealtimeAssistant.Streaming.StreamingOptions { WindowFrames = 2, Pruning = schedule, Generation = new GenerationOptions { MaxNewTokens = 12 } };
        List<string> Run(int i)
        {
            using var session = new RealtimeAssistant.Streaming.GpeSession(e, options);
            var captions = new List<string>();
            foreach (var frame in clips[i].Frames)
            {
                session.Read(frame);
                captions.Add(string.Concat(session.Write().Select(t => t.Text)));
            }
            return captions;
        }
        var sequential = Enumerable.Range(0, clips.Count).Select(Run).ToList();
        try
        {
            var (together, batcher) = await AtOnceThroughABatcher(e, clips.Count, Run);
            var (batches, passes, largest) = batcher.Counters;
            output.WriteLine($"{passes} passes ({batcher.Blocks} blocks) in {batches} batches, largest {largest}");
            for (int i = 0; i < clips.Count; i++) Assert.Equal(sequential[i], together[i]);
            // Every read and every prompt went through the batcher, besides the decode steps.
            Assert.True(batcher.Blocks >= 2L * clips.Count * clips[0].Frames.Count, $"{batcher.Blocks} block passes for {clips.Count} streams of {clips[0].Frames.Count} frames");
            Assert.True(largest >= 2, $"no two passes ever shared a batch ({batches} batches of {passes})");
        }
        finally { foreach (var c in clips) c.Dispose(); }
    }

    /// <summary>
    /// <paramref name="callers"/> calls of <paramref name="run"/> started together on their own
    /// threads, with the engine's runner a new batcher; returns their results and the batcher
    /// (for its counters), and gives the engine back its direct runner.
    /// </summary>
    static async Task<(T[] Results, ForwardBatcher Batcher)> AtOnceThroughABatcher<T>(Engine e, int callers, Func<int, T> run)
    {
        var batcher = new ForwardBatcher(e.Language);
        e.Runner = batcher;
        try
        {
            using var start = new Barrier(callers);
            var results = await Task.WhenAll(Enumerable.Range(0, callers).Select(i => Task.Run(() => { start.SignalAndWait(); return run(i); })))
                .WaitAsync(TimeSpan.FromMinutes(2));
            return (results, batcher);
        }
        finally
        {
            e.Runner = DirectRunner.Instance;
            batcher.Dispose(); // its counters stay readable
        }
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
        try
        {
            var (batched, batcher) = await AtOnceThroughABatcher(e, samples.Count, Caption);
            var (batches, steps, largest) = batcher.Counters;
            output.WriteLine($"{steps} passes ({batcher.Blocks} prompts) in {batches} batches, largest {largest}");
            for (int i = 0; i < samples.Count; i++) Assert.Equal(sequential[i], batched[i]);
            // Each caption's prompt pass, then a step after each token: it gives the next one, or the
            // stop (none after the last of a caption cut at the limit).
            Assert.Equal(samples.Count, batcher.Blocks);
            Assert.Equal(sequential.Sum(s => s.Count == opts.MaxNewTokens ? s.Count - 1 : s.Count), steps - batcher.Blocks);
            Assert.True(largest >= 2, $"no two steps ever shared a batch ({batches} batches of {steps} steps)");
        }
        finally { foreach (var s in samples) s.Dispose(); }
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
        using var batcher = new ForwardBatcher(e.Language, Turn);
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

    /// <summary>An image no family prepared: its encode fails.</summary>
    sealed class ForeignImage : IPreparedImage { public void Dispose() { } }

    [Fact]
    public async Task EncodesThatFallDueTogether_RunAsOneEncode_EachCallerGetsItsOwnImages_AndABadOneFailsAlone()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var sample = new DemoDataset(DemoSplit.Eval).CaptionSample(0, DemoModelSpec.ImageSize, 3);
        var prepared = sample.Frames.Select(f => e.Model.Prepare(f, ImageUse.VideoFrame)).ToList();
        var alone = prepared.Select(p => e.Model.Encode([p])[0]).ToList();
        ForwardBatcher? batcher = null;
        int callers = 0;
        // The turn comes once every caller of the round is queued: they are one batch.
        Tensor[] Turn(Func<Tensor[]> batch)
        {
            Assert.True(SpinWait.SpinUntil(() => batcher!.Queued >= Volatile.Read(ref callers), TimeSpan.FromSeconds(30)), "the callers never all queued");
            return batch();
        }
        batcher = new ForwardBatcher(e.Language, Turn);
        Task<IReadOnlyList<EncodedImage>>[] Round(params IReadOnlyList<IPreparedImage>[] images)
        {
            Volatile.Write(ref callers, images.Length);
            return images.Select(i => Task.Run(() => batcher.Encode(e.Model, i))).ToArray();
        }
        static void AssertSame(EncodedImage expected, EncodedImage actual)
        {
            Assert.Equal(expected.TokenIds, actual.TokenIds);
            Assert.True((expected.Features - actual.Features).abs().max().item<float>() < 1e-5f, "an image encoded in company differs from its encode alone");
        }
        try
        {
            var both = await Task.WhenAll(Round([prepared[0]], [prepared[1], prepared[2]])).WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal((1L, 2L), batcher.Encodes);
            Assert.Single(both[0]);
            AssertSame(alone[0], both[0][0]);
            Assert.Equal(2, both[1].Count);
            AssertSame(alone[1], both[1][0]);
            AssertSame(alone[2], both[1][1]);

            var withABadOne = Round([prepared[2]], [new ForeignImage()]);
            await Assert.ThrowsAnyAsync<Exception>(() => withABadOne[1].WaitAsync(TimeSpan.FromMinutes(1)));
            var good = await withABadOne[0].WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal((2L, 4L), batcher.Encodes);
            AssertSame(alone[2], Assert.Single(good));
            foreach (var r in both.SelectMany(x => x).Concat(good)) r.Dispose();
            Assert.Equal((0L, 0L, 0L), batcher.Counters); // no decoder pass ran
        }
        finally
        {
            batcher.Dispose();
            foreach (var a in alone) a.Dispose();
            foreach (var p in prepared) p.Dispose();
            sample.Dispose();
        }
    }

    [Fact]
    public async Task AGenerationRunsAheadOfASlowReader_AndOneStoppedEarly_LeavesItsCacheAsTheDirectLoopWould()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        var greedy = new GenerationOptions { Temperature = 0 };
        int[] none = [];
        const int taken = 4, count = 20, beside = 30;
        // The direct loop, stopped after 4 tokens: 4 tokens fed back through the cache.
        using var direct = OneTokenCache(e);
        using var directSampler = new Sampler(greedy);
        var expected = DirectRunner.Instance.Decode(e.Language, 5, 1, direct, CacheGroup.Source, directSampler, none, count).Take(taken).ToList();

        using var batcher = new ForwardBatcher(e.Language);
        using var cache = OneTokenCache(e);
        using var other = OneTokenCache(e);
        using var sampler = new Sampler(greedy);
        using var otherSampler = new Sampler(greedy);
        // Another generation runs to its end beside it, read as it comes.
        var besideIt = Task.Run(() => batcher.Decode(e.Language, 7, 1, other, CacheGroup.Source, otherSampler, none, beside).Count());
        var got = await Task.Run(() =>
        {
            var ids = new List<int>();
            foreach (var (id, _) in batcher.Decode(e.Language, 5, 1, cache, CacheGroup.Source, sampler, none, count))
            {
                ids.Add(id);
                if (ids.Count == taken) break;
                Thread.Sleep(50); // a slow reader: the batches go on without it
            }
            return ids;
        }).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(beside, await besideIt.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Equal(expected.Select(t => t.Id), got);
        // Every step of both ran in the batches (the stopped one ran ahead to its end) ...
        Assert.Equal(count + beside, batcher.Counters.Steps);
        // ... yet its cache holds what the direct loop's holds, and the two go on alike.
        for (int l = 0; l < e.Text.NumHiddenLayers; l++)
        {
            var (a, b) = (direct.Layers[l].Source, cache.Layers[l].Source);
            Assert.Equal(1 + taken, b.Length);
            Assert.Equal(a.Positions.ToArray(), b.Positions.ToArray());
            Assert.True((a.Keys - b.Keys).abs().max().item<float>() < 1e-5f && (a.Values - b.Values).abs().max().item<float>() < 1e-5f, $"layer {l}: cached keys or values differ");
        }
        using var next = DirectRunner.Instance.Step(e.Language, got[^1], 1 + taken, cache, CacheGroup.Source);
        using var nextDirect = DirectRunner.Instance.Step(e.Language, expected[^1].Id, 1 + taken, direct, CacheGroup.Source);
        Assert.True((next - nextDirect).abs().max().item<float>() < 1e-4f);
    }

    [Fact]
    public async Task ClosingTheBatcher_EndsARunningGenerationWithAnError_NotAHang()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var turnAsked = new ManualResetEventSlim();
        using var turnGranted = new ManualResetEventSlim();
        Tensor[] Turn(Func<Tensor[]> batch) { turnAsked.Set(); turnGranted.Wait(); return batch(); }
        var batcher = new ForwardBatcher(e.Language, Turn);
        using var cache = OneTokenCache(e);
        using var sampler = new Sampler(new GenerationOptions { Temperature = 0 });
        var reading = Task.Run(() => batcher.Decode(e.Language, 5, 1, cache, CacheGroup.Source, sampler, [], 1000).Count());
        Assert.True(turnAsked.Wait(TimeSpan.FromSeconds(30)), "the generation never asked for a turn");
        var closing = Task.Run(batcher.Dispose);
        turnGranted.Set();
        await closing.WaitAsync(TimeSpan.FromMinutes(1));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => reading.WaitAsync(TimeSpan.FromMinutes(1)));
    }

    [Fact]
    public async Task AFailedTurn_FailsTheStepsWaitingForIt_AndTheBatcherGoesOn()
    {
        using var e = Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        int calls = 0;
        Tensor[] Turn(Func<Tensor[]> batch) => Interlocked.Increment(ref calls) == 1 ? throw new ObjectDisposedException("scheduler") : batch();
        using var batcher = new ForwardBatcher(e.Language, Turn);
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
        using var batcher = new ForwardBatcher(e.Language, regroup: TimeSpan.FromMilliseconds(300));
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
