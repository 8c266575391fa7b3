using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.App;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// TorchSharp's implicit Scalars (an operator's alpha, a double operand) have finalizers and no
/// GC.KeepAlive: a GC during the native call can free one while libtorch reads it. The decoder's
/// and every family's per-frame path pass rooted Scalars instead; here garbage collections and
/// finalizers run back to back on another thread while frames are read and captions decode,
/// which made the race show within seconds.
/// The tests run alone: their collections would race every other test's Scalars too (paths
/// outside the hot ones still pass implicit ones), and such a failure would not be theirs.
/// </summary>
[Collection("finalizer race")]
public class FinalizerRaceTests(ITestOutputHelper output)
{
    /// <summary>
    /// Runs <paramref name="work"/> for a few seconds while another thread collects garbage and
    /// runs finalizers back to back. Mostly gen-0 collections: a Scalar made for one call is
    /// younger than any collection, and a gen-0 one is so much cheaper than a full one that both
    /// the collections and the work between them come more often (before their fix the families'
    /// frame reads failed in every run this way, and in none of a run with full collections
    /// alone); every 16th is full.
    /// </summary>
    void BesideCollections(Action work, string what)
    {
        using var stop = new CancellationTokenSource();
        long collections = 0;
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect(Interlocked.Read(ref collections) % 16 == 15 ? GC.MaxGeneration : 0, GCCollectionMode.Forced, blocking: true);
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref collections);
            }
        }) { IsBackground = true };
        collector.Start();
        try
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(6);
            int runs = 0;
            for (; DateTime.UtcNow < until; runs++) work();
            output.WriteLine($"{runs} {what} beside {Interlocked.Read(ref collections)} collections");
        }
        finally { stop.Cancel(); collector.Join(); }
    }

    [Fact]
    public void DecodeStepsSurviveGarbageCollectionsRacingThem()
    {
        using var e = AppTestSupport.TinyEngine();
        using var _ = torch.inference_mode();
        BesideCollections(() =>
        {
            using var cache = new KvCache(e.Text.NumHiddenLayers);
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(1, 6, e.Text.HiddenSize);
            e.Decoder.Forward(x, new DecoderStep { Positions = new long[] { 0, 1, 2, 3, 4, 5 }, Cache = cache });
            for (int s = 0; s < 20; s++)
                e.Decoder.Forward(e.Decoder.embed_tokens.forward(torch.tensor(new long[] { 3 + s }).view(1, 1)), new DecoderStep { Positions = new long[] { 6 + s }, Cache = cache });
        }, "prompts of 20 decode steps");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StreamingReadsAndCaptionsSurviveGarbageCollectionsRacingThem(bool pruned)
    {
        using var e = AppTestSupport.TinyEngine();
        using var session = new RealtimeAssistant.Streaming.GpeSession(e, AppTestSupport.TinyOptions(pruning: pruned ? AppTestSupport.TinySchedule : null));
        var clip = RealtimeAssistant.Demo.ClipGenerator.Generate(7, 40, 15);
        int frame = 0;
        BesideCollections(() =>
        {
            using var img = clip.Render(frame++ % clip.FrameCount, 32, 32);
            session.Read(img);
            if (frame % 3 == 0) foreach (var _ in session.Write()) { }
        }, $"frame reads{(pruned ? ", pruned," : "")} (a caption every third)");
    }

    /// <summary>
    /// The other families' own per-frame paths (their image processors, vision towers, mergers and
    /// connectors, M-RoPE positions) on their tiny Hub fixtures: frames read through the session's
    /// Mat path, a caption every third, the window evicting.
    /// </summary>
    [Theory]
    [InlineData("qwen2_vl", false)]
    [InlineData("qwen2_vl", true)]
    [InlineData("qwen2_5_vl", false)]
    [InlineData("smolvlm", false)]
    [InlineData("smolvlm", true)]
    [InlineData("idefics3", false)]
    [InlineData("llava_onevision", false)]
    public void FamilyStreamingReadsAndCaptionsSurviveGarbageCollectionsRacingThem(string family, bool pruned)
    {
        using var e = Engine.Load(Path.Combine(Families.HfFixture.Root, family), new EngineOptions { Device = "cpu" });
        var options = new RealtimeAssistant.Streaming.StreamingOptions
        {
            WindowFrames = 2, Generation = new GenerationOptions { MaxNewTokens = 6, StopTokens = Array.Empty<int>() },
            // VisiPruner keeps two visual tokens a frame after layer 0 (the fixtures have two decoder layers).
            Pruning = pruned ? new RealtimeAssistant.Pruning.PruningConfig { ShallowLayers = 0, FilterFrom = 0, Budget = 2, DeadlineLayer = 0, LayerThreshold = 1.0 } : null,
        };
        using var session = new RealtimeAssistant.Streaming.GpeSession(e, options);
        var frames = Enumerable.Range(0, 4).Select(i => Families.HfFixture.Image($"images/frame{i}_40x30.png")).ToArray();
        try
        {
            int frame = 0;
            BesideCollections(() =>
            {
                session.Read(frames[frame++ % frames.Length]);
                if (frame % 3 == 0) foreach (var _ in session.Write()) { }
            }, $"{family} frame reads{(pruned ? ", pruned," : "")} (a caption every third)");
        }
        finally { foreach (var f in frames) f.Dispose(); }
    }
}

[CollectionDefinition("finalizer race", DisableParallelization = true)]
public sealed class FinalizerRaceCollection;
