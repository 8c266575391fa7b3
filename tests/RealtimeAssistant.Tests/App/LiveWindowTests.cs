using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Rendering;
using RealtimeAssistant.Tests.Capture;
using RealtimeAssistant.Tests.Rendering;

namespace RealtimeAssistant.Tests.App;

/// <summary>The live app in a real GLFW window (under Xvfb), and its headless fallback.</summary>
[Collection("GL")]
public class LiveWindowTests(ITestOutputHelper log)
{
    [Fact]
    public void LiveApp_InAWindowUnderXvfb_RendersCaptionsAndSavesASnapshot()
    {
        using var xvfb = Xvfb.TryStart(out var why);
        if (xvfb is null)
        {
            Assert.False(Xvfb.IsInstalled, $"Xvfb is installed but did not start: {why}");
            Assert.Skip($"{why}");
        }
        var saved = Environment.GetEnvironmentVariable("DISPLAY");
        ProcessEnv.Set("DISPLAY", xvfb.Display);
        try
        {
            var window = LiveApp.TryOpenWindow(480, 360, "ra-app-test", out var reason);
            Assert.True(window is not null, reason);
            Assert.True(window!.IsWindow);
            var png = Path.Combine(TestMedia.TempDir("app-win"), "snap.png");
            var stats = LiveApp.Run(window, new LiveAppOptions
            {
                Source = TestMedia.WriteClip(TestMedia.TempDir("app-win-in"), frames: 45, fps: 15),
                Realtime = true, DisplayFps = 30, SnapshotPath = png,
            }, new SlowSession(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(100)), AppTestSupport.Loop(Pacing.Live, policy: "finished"), CancellationToken.None);
            log.WriteLine($"{stats.Context}: {stats.FramesRendered} frames at {stats.RenderFps:0.0} fps, {stats.Captions} captions");
            Assert.Null(stats.Error);
            Assert.StartsWith("GLFW window", stats.Context);
            Assert.Equal(45, stats.FramesCaptured);        // the file ended: the loop stopped by itself
            Assert.True(stats.Captions >= 1);
            using var img = OpenCvSharp.Cv2.ImRead(png);
            Assert.Equal(new OpenCvSharp.Size(480, 360), img.Size());
            // The caption band at the bottom holds white text.
            Assert.True(GlTestSupport.CountWhiteish(img, new OpenCvSharp.Rect(0, 300, 480, 60)) > 50, "no caption text in the window's snapshot");
        }
        finally
        {
            ProcessEnv.Set("DISPLAY", saved);
        }
    }

    [Fact]
    public void NoDisplay_TryOpenWindowSaysWhy_AndTheAppRunsHeadless()
    {
        var saved = Environment.GetEnvironmentVariable("DISPLAY");
        ProcessEnv.Set("DISPLAY", null);
        try
        {
            Assert.Null(LiveApp.TryOpenWindow(320, 240, "x", out var why));
            Assert.Contains("no display", why);
            var stats = LiveApp.Run(null, new LiveAppOptions
            {
                Source = TestMedia.WriteClip(TestMedia.TempDir("app-headless"), frames: 20, fps: 20), Realtime = true, DisplayFps = 30, Width = 160, Height = 120,
            }, new SlowSession(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(50)), AppTestSupport.Loop(Pacing.Live, policy: "finished"), CancellationToken.None);
            Assert.Null(stats.Error);
            Assert.StartsWith("EGL", stats.Context);
            Assert.True(stats.FramesRendered > 0);
        }
        finally
        {
            ProcessEnv.Set("DISPLAY", saved);
        }
    }
    [Fact]
    public void LiveApp_CountsTheLevelsOfTheReadsAfterItsWarmUp_BesideTheWholeRunsCounts()
    {
        // A 4 s clip at 20 fps read in real time: 1.5 s of warm-up, then the rest measured.
        var stats = RunOnAClip("app-levels", frames: 80, writeMs: 20, o => o with { WarmupSeconds = 1.5 });
        Assert.Null(stats.Error);
        long all = stats.Stream.Levels.Values.Sum(), measured = stats.LevelsMeasured.Values.Sum();
        log.WriteLine($"reads {all}, after the warm-up {measured}");
        Assert.Equal(["unpruned"], stats.LevelsMeasured.Keys); // a stand-in session prunes nothing
        Assert.InRange(measured, 1, all - 1);
    }

    [Fact]
    public void LiveApp_TimesEachCaptionOnce_OnScreen_BesideWhenTheModelFinishedIt()
    {
        var stats = RunOnAClip("app-glass", frames: 60, writeMs: 100);
        Assert.Null(stats.Error);
        var glass = stats.Profiler.Series(RealtimeAssistant.Pipeline.Profiler.GlassToCaption);
        var ready = stats.Profiler.Series(RealtimeAssistant.Pipeline.Profiler.CaptionReady);
        log.WriteLine($"{stats.Captions} captions; on screen {glass.Count}, ready {ready.Count}");
        Assert.True(ready.Count >= 3, $"only {ready.Count} captions");
        // One sample a caption in each stage: the loop's when the model finished it, the renderer's when it was shown
        // (a caption overtaken before a render came is never on screen, so at most a stalled render's few fewer).
        Assert.InRange(glass.Count, ready.Count - 3, ready.Count);
        // Each caption on screen is the newest one ready by then, shown a render or so later, never sooner.
        foreach (var (at, ms) in glass)
        {
            var newest = ready.Last(r => r.Seconds <= at);
            Assert.InRange(ms - newest.Ms, 0, 500);
        }
    }

    [Fact]
    public void LiveApp_AfterWarmUpCaptions_RecordsFromThere_AndKeepsTheColdStartApart()
    {
        var stats = RunOnAClip("app-warm", frames: 60, writeMs: 100, o => o with { WarmupCaptions = 2 });
        Assert.Null(stats.Error);
        var (at, latency) = stats.FirstCaption!.Value;
        Assert.InRange(at, 0.1, 3);          // after a read and a 100 ms write, well before the clip ends
        Assert.InRange(latency, 100, 3000);
        // The record starts after the second caption: the profiler forgot the warm-up, and it and the run's own list hold the same captions.
        var glass = stats.Profiler.Series(RealtimeAssistant.Pipeline.Profiler.GlassToCaption);
        Assert.True(stats.Latencies.Count >= 3, $"{stats.Latencies.Count} captions measured");
        Assert.Equal(stats.Latencies, glass.Select(g => g.Ms));
        Assert.True(glass[0].Seconds > at, "the first caption is the cold start, not in the record");
    }

    /// <summary>
    /// A run that ends before its warm-up did (more warm-up captions asked for than the clip
    /// gives) records the whole run and says so, instead of a record of nothing: render fps 0 and
    /// glass-to-caption 0 ms, under a line that said the figures counted from a caption never shown.
    /// </summary>
    [Fact]
    public void LiveApp_EndingDuringTheWarmUp_RecordsTheWholeRun_AndSaysSo()
    {
        var stats = RunOnAClip("app-warm-short", frames: 30, writeMs: 100, o => o with { WarmupCaptions = 1000 });
        Assert.Null(stats.Error);
        var (shown, asked) = Assert.NotNull(stats.WarmupUnfinished);
        Assert.Equal(1000, asked);
        Assert.True(shown >= 1, "the clip gave no caption");
        Assert.Equal(0, stats.WarmupCaptions);
        Assert.Equal(shown, stats.Latencies.Count);                     // every caption, the first included
        Assert.Equal(stats.FirstCaption!.Value.LatencyMs, stats.Latencies[0]);
        Assert.True(stats.LatencyP50 > 0);
        Assert.InRange(stats.RenderFps, 5, 40);                         // the frames rendered, not none
        Assert.Equal(stats.FramesRendered, stats.FrameTimesMs.Count);
        var report = ProfileReport.Summary(stats);
        Assert.Equal(R(stats.LatencyP95), report["latency_ms_p95"]);
        Assert.Equal(false, report["warmup_ended"]);
        Assert.Equal(0, report["warmup_captions"]);
        // A record with no caption in it (a run too short for one after its warm-up) has no latency, not 0 ms.
        var none = ProfileReport.Summary(stats with { Latencies = [] });
        Assert.Null(none["latency_ms_p50"]);
        Assert.Null(none["latency_ms_p95"]);
    }

    static double R(double v) => Math.Round(v, 2);

    /// <summary>A generated clip at 20 fps played in real time, headless, to a session that reads in 5 ms and writes in <paramref name="writeMs"/>, captions back to back.</summary>
    static LiveStats RunOnAClip(string name, int frames, int writeMs, Func<LiveAppOptions, LiveAppOptions>? options = null)
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir(name), frames: frames, fps: 20);
        var o = new LiveAppOptions { Source = clip, Realtime = true, DisplayFps = 30, Width = 160, Height = 120 };
        return LiveApp.Run(null, options?.Invoke(o) ?? o, new SlowSession(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(writeMs)),
            AppTestSupport.Loop(Pacing.Live, policy: "finished"), CancellationToken.None);
    }
}
