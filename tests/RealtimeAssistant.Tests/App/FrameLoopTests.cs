using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.Capture;
using RealtimeAssistant.Tests.Streaming;

namespace RealtimeAssistant.Tests.App;

/// <summary>
/// The one frame loop and its three pacings: live drops frames when the model is slow and never
/// queues them (render never waits); file renders every frame in order and drops none; headless
/// reads every stride-th frame in order.
/// </summary>
[Collection("GL")]
public class FrameLoopTests(ITestOutputHelper log)
{
    static GeneratedFrameSource Stamped(int count, double fps, bool realtime) =>
        new(i => { var m = TestMedia.Pattern(i); SlowSession.MarkFrame(m, i); return m; }, fps, count: count, realtime: realtime);

    /// <summary>Live pacing: takes (and drops) display frames as a renderer would until the source ended and inference stopped, or the time is up.</summary>
    static bool RenderUntilTheEnd(FrameLoop loop, TimeSpan limit, int sleepMs)
    {
        var deadline = DateTime.UtcNow + limit;
        while (!(loop.Ended && loop.InferenceStopped) && DateTime.UtcNow < deadline)
        {
            if (loop.TryTakeDisplayFrame(out var f)) f!.Dispose();
            Thread.Sleep(sleepMs);
        }
        return loop.Ended && loop.InferenceStopped;
    }

    [Fact]
    public void LivePacing_SlowModelGetsTheNewestFrame_AndOlderOnesAreDropped()
    {
        // 30 fps, each frame stamped with its index; a read + caption of 300 ms sees about one frame in nine.
        var slow = new SlowSession(TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(280));
        using var loop = new FrameLoop(Stamped(60, 30, realtime: true), slow, new Profiler(), AppTestSupport.Loop(Pacing.Live, stride: 3, policy: "finished"));
        loop.Start();
        Assert.True(RenderUntilTheEnd(loop, TimeSpan.FromSeconds(15), 5), "the loop did not finish its 2 s source in 15 s");
        log.WriteLine($"captured {loop.FramesCaptured}, read {string.Join(",", slow.Seen)}, captions {loop.Captions}, dropped for inference {loop.DroppedForInference}");
        Assert.Null(loop.InferenceError);
        Assert.Equal(60, loop.FramesCaptured);
        Assert.InRange(loop.Captions, 2, 20);
        Assert.Equal(1, slow.MaxInFlight);
        // Frames read move forward and are spread out: nothing was queued behind the model.
        Assert.Equal(slow.Seen.Order(), slow.Seen);
        Assert.True(slow.Seen.Zip(slow.Seen.Skip(1)).All(p => p.Second - p.First >= 3), $"read frames {string.Join(",", slow.Seen)} are not spread out: frames were queued");
        // A frame the model did not take was replaced by a newer one: dropped, and counted.
        Assert.True(loop.DroppedForInference >= 60 - slow.Seen.Count - 20, $"{slow.Seen.Count} read, only {loop.DroppedForInference} dropped");
        Assert.Equal("a red circle moves left", loop.Board.View.Text);
    }

    [Fact]
    public void LivePacing_ReadsAtMostOneFramePerStride_WhenTheModelIsFast()
    {
        var fast = new SlowSession(TimeSpan.Zero, TimeSpan.Zero);
        using var loop = new FrameLoop(Stamped(60, 60, realtime: true), fast, new Profiler(), AppTestSupport.Loop(Pacing.Live, stride: 4, policy: "finished"));
        loop.Start();
        RenderUntilTheEnd(loop, TimeSpan.FromSeconds(15), 2);
        Assert.True(loop.InferenceStopped);
        Assert.True(fast.Seen.Zip(fast.Seen.Skip(1)).All(p => p.Second - p.First >= 4), $"read frames {string.Join(",", fast.Seen)}: closer than the stride");
        Assert.InRange(fast.Seen.Count, 10, 15);
    }

    [Fact]
    public void LivePacing_UnderABudgetFarBelowTheStride_AStallIsPaidBackByTheSourcesClock_NotBySkippedFrames()
    {
        // 30 fps at stride 6: a read every 200 ms of source, against a budget of 12 ms that no read
        // meets (each is slowed by 20 ms), and one read stalled for 1.5 s. The slot drops what
        // arrives meanwhile; every 200 ms of source pays 200 ms of overrun back, so the governor has
        // nothing to skip and the model reads on at one frame per stride. Counted in strides
        // instead of budgets, the stall's debt took about 125 strides (25 s) of skipped frames.
        using var engine = AppTestSupport.TinyEngine();
        using var slowed = new SlowedSession(new GpeSession(engine, AppTestSupport.TinyOptions())) { ExtraMs = (_, read) => read == 2 ? 1500 : 20 };
        using var loop = new FrameLoop(new GeneratedFrameSource(i => TestMedia.Pattern(i), 30, count: 120, realtime: true), slowed, new Profiler(),
            AppTestSupport.Loop(Pacing.Live, stride: 6, policy: "every:1000", budgetMs: 12, schedule: AppTestSupport.TinySchedule));
        loop.Start();
        Assert.True(RenderUntilTheEnd(loop, TimeSpan.FromSeconds(20), 5), "the loop did not finish its 4 s source in 20 s");
        Assert.Null(loop.InferenceError);
        var stats = loop.Driver.Stats;
        log.WriteLine($"read {stats.Read}, over budget {stats.OverBudget}, skipped by the governor {stats.BudgetSkipped}, dropped for inference {loop.DroppedForInference}");
        Assert.Equal(0, stats.BudgetSkipped);
        // About 2.5 s of source after the stall: about 12 strides, each read.
        Assert.True(stats.Read >= 9, $"only {stats.Read} reads in a 4 s source at one per 200 ms with one 1.5 s stall");
        Assert.Equal(stats.Read, stats.OverBudget);
    }

    [Fact]
    public void LivePacing_QuestionsAreAnsweredInTheCaptionArea_AndTheStreamGoesOn()
    {
        var slow = new SlowSession(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(50));
        using var loop = new FrameLoop(new GeneratedFrameSource(i => TestMedia.Pattern(i), 30, count: null, realtime: true), slow, new Profiler(),
            AppTestSupport.Loop(Pacing.Live, policy: "finished"));
        loop.Start();
        loop.Ask("what colour is the circle ?");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (loop.Board.View.Question is null && DateTime.UtcNow < deadline) Thread.Sleep(10);
        while (loop.Board.View.Streaming && DateTime.UtcNow < deadline) Thread.Sleep(10);
        var view = loop.Board.View;
        Assert.Equal("what colour is the circle ?", view.Question);
        Assert.StartsWith("Q: what colour is the circle ?  A: a red", view.Text);
        int reads = slow.Seen.Count;
        while (slow.Seen.Count < reads + 2 && DateTime.UtcNow < deadline.AddSeconds(10)) Thread.Sleep(20);
        Assert.True(slow.Seen.Count >= reads + 2, "the stream stopped after the answer");
        Assert.Contains("what colour is the circle ?", slow.Questions);
    }

    [Fact]
    public void FilePacing_RendersEveryFrameInOrder_AndReadsEveryStrideFrameOnce()
    {
        var slow = new SlowSession(TimeSpan.FromMilliseconds(2), TimeSpan.FromMilliseconds(20));
        using var loop = new FrameLoop(Stamped(47, 30, realtime: false), slow, new Profiler(), AppTestSupport.Loop(Pacing.File, stride: 5, policy: "every:2"));
        var shown = new List<(long Frame, long Key)>();
        var segments = new List<CaptionSegment>();
        var result = loop.RunFile((f, v) => shown.Add((f.Index, v.FrameIndex)), segments.Add, null, CancellationToken.None);
        Assert.Equal(47, result.FramesRendered);
        Assert.Equal(Enumerable.Range(0, 47).Select(i => (long)i), shown.Select(s => s.Frame));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 5 * i), slow.Seen);   // 0, 5, …, 45: each once, in order
        // A caption at the first read and every two reads after (frames 0, 10, 20, 30, 40), shown from its frame until the next one.
        Assert.Equal(new long[] { 0, 10, 20, 30, 40 }, segments.Select(s => s.KeyFrame));
        Assert.Equal(new long[] { 10, 20, 30, 40, 47 }, segments.Select(s => s.EndFrame));
        Assert.All(shown, s => Assert.Equal(s.Frame - s.Frame % 10, s.Key));
    }

    /// <summary>A live source that gives the frames it was not too slow for: indices with gaps.</summary>
    sealed class SkippingLiveSource(long[] indices) : IFrameSource
    {
        int _next;
        public string Description => "skipping camera";
        public double Fps => 30;
        public bool IsLive => true;
        public long? FrameCount => null;
        public string Status => "live";
        public Frame? Read(CancellationToken ct = default)
        {
            if (_next == indices.Length) return null;
            var i = indices[_next++];
            var m = TestMedia.Pattern(i);
            SlowSession.MarkFrame(m, i);
            return new Frame(m, i, TimeSpan.FromSeconds(i / 30.0), System.Diagnostics.Stopwatch.GetTimestamp());
        }
        public void Dispose() { }
    }

    /// <summary>
    /// A live source's indices skip the frames it dropped, and may skip every multiple of the
    /// stride: the model then takes the first frame a stride or more after the last it took.
    /// </summary>
    [Theory]
    [InlineData(Pacing.Headless)]
    [InlineData(Pacing.File)]
    public void FromALiveSourceThatDropsFrames_TheModelReadsTheFirstFrameAStrideAfterTheLast(Pacing pacing)
    {
        var slow = new SlowSession(TimeSpan.Zero, TimeSpan.Zero);
        using var loop = new FrameLoop(new SkippingLiveSource([1, 3, 8, 9, 11, 17, 23, 24, 26, 31, 34]), slow, new Profiler(),
            AppTestSupport.Loop(pacing, stride: 5, policy: "every:1"));
        if (pacing == Pacing.Headless) loop.RunHeadless(CancellationToken.None);
        else loop.RunFile((_, _) => { }, _ => { }, null, CancellationToken.None);
        Assert.Equal(new[] { 1, 8, 17, 23, 31 }, slow.Seen);   // none is a multiple of 5
    }

    [Fact]
    public void HeadlessPacing_ReadsEveryStrideFrameInOrder_UntilMaxFrames()
    {
        var slow = new SlowSession(TimeSpan.Zero, TimeSpan.FromMilliseconds(5));
        var written = new List<long>();
        using var loop = new FrameLoop(Stamped(100, 30, realtime: false), slow, new Profiler(),
            AppTestSupport.Loop(Pacing.Headless, stride: 4, policy: "every:3") with { MaxFrames = 50 })
        { Written = (s, _) => written.Add(s.FrameIndex) };
        var result = loop.RunHeadless(CancellationToken.None);
        Assert.Equal(Enumerable.Range(0, 13).Select(i => 4 * i), slow.Seen);  // frames 0..48 of the first 50
        Assert.Equal(new long[] { 0, 12, 24, 36, 48 }, written);
        Assert.Equal(13, result.Stats.Read);
    }

    [Fact]
    public async Task Fifo_StandsInForACamera_SlowModelDropsFrames_RenderKeepsGoing()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to feed the FIFO");
        var fifo = TestMedia.Fifo("app-fifo", "camera.avi");
        var writer = Task.Run(() => TestMedia.Run(ffmpeg,
            ["-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-t", "4", "-f", "avi", fifo],
            TimeSpan.FromSeconds(30)));
        var slow = new SlowSession(TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(480));
        var stats = LiveApp.Run(null, new LiveAppOptions { Source = fifo, DisplayFps = 30, Duration = TimeSpan.FromSeconds(6), Width = 320, Height = 240 },
            slow, AppTestSupport.Loop(Pacing.Live, stride: 1, policy: "finished"), CancellationToken.None);
        await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(30)));
        log.WriteLine($"rendered {stats.FramesRendered} at {stats.RenderFps:0.0} fps, captured {stats.FramesCaptured}, captions {stats.Captions}, " +
                      $"dropped {stats.DroppedForInference} (display {stats.DroppedForDisplay}), latency p50 {stats.LatencyP50:0} ms; {stats.Error}");
        Assert.Null(stats.Error);
        Assert.InRange(stats.FramesCaptured, 20, 70);
        Assert.InRange(stats.Captions, 1, 14);
        Assert.Equal(1, slow.MaxInFlight);
        Assert.True(stats.DroppedForInference >= stats.FramesCaptured - slow.Seen.Count - 1,
            $"{stats.FramesCaptured} captured, {slow.Seen.Count} read, only {stats.DroppedForInference} dropped: frames were queued");
        // The render loop drew more frames than the model made captions: it did not wait on the model.
        Assert.True(stats.FramesRendered > 3 * stats.Captions, $"{stats.FramesRendered} frames rendered for {stats.Captions} captions");
        Assert.True(stats.LatencyP50 > 0);
    }
}
