using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Tests.Capture;

public class CaptureThreadTests
{
    [Fact]
    public void RunsASourceIntoTheSlot_DroppingWhatASlowTakerMisses_ThenEnds()
    {
        var profiler = new Profiler();
        using var source = new GeneratedFrameSource(i => TestMedia.Pattern(i), fps: 200, count: 100, realtime: true);
        using var slot = new LatestFrameSlot();
        using var capture = new CaptureThread(source, slot, profiler);
        capture.Start();

        var taken = new List<long>();
        while (slot.Take(TimeSpan.FromSeconds(10)) is { } f)
        {
            taken.Add(f.Index);
            f.Dispose();
            Thread.Sleep(20); // a slow "model": 50 fps against a 200 fps source
        }
        Assert.True(capture.EndOfStream);
        Assert.Null(capture.Error);
        Assert.Equal(100, capture.FramesCaptured);
        Assert.Equal(100, slot.Published);
        Assert.True(slot.Dropped > 30, $"dropped {slot.Dropped}");
        Assert.Equal(100, slot.Dropped + slot.Taken);
        Assert.Equal(99, taken[^1]);                 // the newest frame always wins
        Assert.True(taken.SequenceEqual(taken.Order())); // and never an older one after it
        Assert.Equal(100, profiler.Snapshot().Counter(Profiler.FramesCaptured)!.Total);
        Assert.Equal("ended", capture.Status);
    }

    [Fact]
    public void SourceErrors_EndTheStream_AndAreReported()
    {
        using var source = new GeneratedFrameSource(i => i < 3 ? TestMedia.Pattern(i) : throw new UserError("scene broke"), fps: 100);
        using var capture = new CaptureThread(source);
        capture.Start();
        while (((LatestFrameSlot)capture.Sink).Take(TimeSpan.FromSeconds(10)) is { } f) f.Dispose();
        Assert.True(capture.EndOfStream);
        Assert.IsType<UserError>(capture.Error);
        Assert.Equal("error: scene broke", capture.Status);
    }

    [Fact]
    public void Stop_EndsAnEndlessSourcePromptly()
    {
        using var source = new GeneratedFrameSource(i => TestMedia.Pattern(i), fps: 30, realtime: true);
        using var capture = new CaptureThread(source);
        capture.Start();
        using (var f = ((LatestFrameSlot)capture.Sink).Take(TimeSpan.FromSeconds(10))) Assert.NotNull(f);
        Assert.True(capture.Stop(TimeSpan.FromSeconds(3)));
        Assert.False(capture.IsRunning);
        Assert.True(((LatestFrameSlot)capture.Sink).IsCompleted);
    }
}
