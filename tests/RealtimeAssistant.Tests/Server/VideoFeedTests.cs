using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Server.Streams;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>A stream's MJPEG video thread against the stream going away under it.</summary>
public class VideoFeedTests
{
    /// <summary>An overlay whose drawing waits for the test: holds the video thread between its stop check and publishing the frame.</summary>
    sealed class GatedOverlay(ManualResetEventSlim entered, ManualResetEventSlim release) : IStreamOverlay
    {
        public Mat Draw(Mat video, CaptionView caption)
        {
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(30));
            return video.Clone();
        }
        public void Dispose() { }
    }

    [Fact]
    public async Task AStreamDeletedWhileAFrameIsDrawn_EndsItsVideoQuietly()
    {
        var log = new StreamServer.WarningLog();
        using var loop = new FrameLoop(new GeneratedFrameSource(i => TestMedia.Pattern(i), 30, realtime: true),
            new SlowSession(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(20)), new Profiler(), AppTestSupport.Loop(Pacing.Live, policy: "finished"));
        loop.Start();
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var feed = new VideoFeed(loop, (_, _, _) => new GatedOverlay(entered, release), 15, log.CreateLogger("video"));
        using (feed.Attach())
        {
            Assert.True(entered.Wait(TimeSpan.FromSeconds(10)), "the video thread drew no frame");
            var woken = feed.NextAsync(long.MaxValue, TestContext.Current.CancellationToken);
            var disposing = Task.Run(feed.Dispose, TestContext.Current.CancellationToken);
            Assert.Null(await woken.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken)); // the viewer was told the video ended
            release.Set(); // the frame drawn meanwhile is published after the feed stopped
            await disposing.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        }
        Assert.False(feed.Running);
        Assert.Equal("", log.Text);
    }
}
