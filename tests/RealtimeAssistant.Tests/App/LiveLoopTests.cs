using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.App;

/// <summary>The live loop drops frames when the model is slow; it never queues them, and render never waits.</summary>
[Collection("GL")]
public class LiveLoopTests(ITestOutputHelper log)
{
    [Fact]
    public void SlowModel_GetsTheNewestFrame_AndOlderOnesAreDropped()
    {
        // 30 fps, each frame stamped with its index; a model taking 300 ms can see about one in nine.
        var source = new GeneratedFrameSource(i => { var m = TestMedia.Pattern(i); SlowCaptioner.MarkFrame(m, i); return m; }, 30, count: 60, realtime: true);
        var slow = new SlowCaptioner(TimeSpan.FromMilliseconds(300), framesPerCaption: 2, stride: 3);
        long capturedAtCall = 0;
        using var loop = new LiveLoop(source, slow, new Profiler());
        slow.OnCaption = () => Interlocked.Exchange(ref capturedAtCall, loop.FramesCaptured);
        var newestWhenAsked = new List<(int Frame, long Captured)>();
        loop.Start();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!(loop.Ended && loop.InferenceStopped) && DateTime.UtcNow < deadline)
        {
            if (loop.TryTakeDisplayFrame(out var f)) f!.Dispose();
            Thread.Sleep(5);
        }
        Assert.True(loop.Ended && loop.InferenceStopped, "the loop did not finish its 2 s source in 15 s");
        log.WriteLine($"captured {loop.FramesCaptured}, captions {loop.Captions}, dropped for inference {loop.DroppedForInference}");
        Assert.Equal(60, loop.FramesCaptured);
        Assert.InRange(loop.Captions, 2, 20);
        Assert.Equal(1, slow.MaxInFlight);
        // Every frame is either captioned or dropped (the last may still be in the slot when the source ends).
        Assert.InRange(loop.DroppedForInference, 60 - loop.Captions - 1, 60 - loop.Captions);
        // Pairs are the frame and the one `stride` before it (or the nearest held), newest last, and they move forward.
        var newest = slow.Seen.Select(s => s[^1]).ToList();
        Assert.Equal(newest.Order(), newest);
        Assert.True(newest.Zip(newest.Skip(1)).All(p => p.Second - p.First > 3), $"captioned frames {string.Join(",", newest)} are not spread out: frames were queued");
        Assert.All(slow.Seen.Skip(1), s => Assert.InRange(s[^1] - s[0], 1, 3));
        Assert.Equal("a red circle moves left", loop.Board.View.Text);
    }

    [Fact]
    public void Questions_AreAnsweredInTheCaptionArea()
    {
        var source = new GeneratedFrameSource(i => TestMedia.Pattern(i), 30, count: null, realtime: true);
        var slow = new SlowCaptioner(TimeSpan.FromMilliseconds(50));
        using var loop = new LiveLoop(source, slow, new Profiler());
        loop.Start();
        loop.Ask("what colour is the circle ?");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (loop.Board.View.Question is null && DateTime.UtcNow < deadline) Thread.Sleep(10);
        while (loop.Board.View.Streaming && DateTime.UtcNow < deadline) Thread.Sleep(10);
        var view = loop.Board.View;
        Assert.Equal("what colour is the circle ?", view.Question);
        Assert.StartsWith("Q: what colour is the circle ?  A: a red", view.Text);
        Assert.Contains("what colour is the circle ?", slow.Questions);
    }

    [Fact]
    public async Task Fifo_StandsInForACamera_SlowModelDropsFrames_RenderKeepsGoing()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to feed the FIFO");
        var fifo = Path.Combine(TestMedia.TempDir("app-fifo"), "camera.avi");
        Assert.Equal(0, TestMedia.Run("mkfifo", [fifo], TimeSpan.FromSeconds(5)).Code);
        var writer = Task.Run(() => TestMedia.Run(ffmpeg,
            ["-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-t", "4", "-f", "avi", fifo],
            TimeSpan.FromSeconds(30)));
        var slow = new SlowCaptioner(TimeSpan.FromMilliseconds(500));
        var stats = LiveApp.Run(null, new LiveAppOptions { Source = fifo, DisplayFps = 30, Duration = TimeSpan.FromSeconds(6), Width = 320, Height = 240 },
            slow, CancellationToken.None);
        await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(30)));
        log.WriteLine($"rendered {stats.FramesRendered} at {stats.RenderFps:0.0} fps, captured {stats.FramesCaptured}, captions {stats.Captions}, " +
                      $"dropped {stats.DroppedForInference} (display {stats.DroppedForDisplay}), latency p50 {stats.LatencyP50:0} ms; {stats.Error}");
        Assert.Null(stats.Error);
        Assert.InRange(stats.FramesCaptured, 20, 70);
        Assert.InRange(stats.Captions, 1, 14);
        Assert.Equal(1, slow.MaxInFlight);
        Assert.True(stats.DroppedForInference >= stats.FramesCaptured - stats.Captions - 1,
            $"{stats.FramesCaptured} captured, {stats.Captions} captioned, only {stats.DroppedForInference} dropped: frames were queued");
        // The render loop drew more frames than the model made captions: it did not wait on the model.
        Assert.True(stats.FramesRendered > 3 * stats.Captions, $"{stats.FramesRendered} frames rendered for {stats.Captions} captions");
        Assert.True(stats.LatencyP50 > 0);
    }
}
