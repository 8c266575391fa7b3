using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Output;

public class MediaProbeTests
{
    /// <summary>The base rate writes the video where it bounds the frames sanely; a browser's 1000 fps time base, or a rate under the mean, does not.</summary>
    [Theory]
    [InlineData(30.0, 15.79, 30.0)]      // a variable-rate recording: its fastest stretch
    [InlineData(23.976, 23.976, 23.976)] // a constant rate
    [InlineData(1000.0, 29.5, 29.5)]     // a time base, not a rate
    [InlineData(10.0, 15.0, 15.0)]       // under the mean: frames would be left out
    public void VideoFps_IsTheBaseRate_OnlyWhereItBoundsTheFrames(double baseFps, double meanFps, double expected) =>
        Assert.Equal(expected, new MediaProbe(false, baseFps).VideoFps(meanFps), 6);

    [Fact]
    public void Of_AVariableRateClip_GivesItsBaseRate_AndNoSound()
    {
        if (Executables.Find("ffprobe") is null) Assert.Skip("no ffprobe on PATH (Debian: apt-get install ffmpeg)");
        var probe = MediaProbe.Of(TestMedia.VariableRateClip(TestMedia.TempDir("probe-vfr")));
        Assert.NotNull(probe);
        Assert.Equal(30, probe.BaseFps!.Value, 6);
        Assert.False(probe.HasSound);
        Assert.Null(MediaProbe.Of(Path.Combine(TestMedia.TempDir("probe-none"), "missing.mp4")));
    }
}
