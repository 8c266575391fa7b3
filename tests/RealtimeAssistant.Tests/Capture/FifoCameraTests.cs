using System.Diagnostics;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A FIFO fed by ffmpeg in real time stands in for a camera (these machines have no /dev/video*).
/// Every ffmpeg here runs under a timeout and is killed if it outlives it.
/// </summary>
public class FifoCameraTests(ITestOutputHelper log)
{
    static string MakeFifo() => TestMedia.Fifo("fifo", "camera.avi");

    static Task<(int, string)> StartWriter(string ffmpeg, string fifo, double seconds) => Task.Run(() =>
        TestMedia.Run(ffmpeg,
            ["-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
             "-t", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-f", "avi", fifo],
            TimeSpan.FromSeconds(seconds + 15)));

    /// <summary>Reads until <paramref name="count"/> frames came or the deadline passed.</summary>
    static List<Frame> ReadFrames(IFrameSource source, int count, TimeSpan deadline)
    {
        using var cts = new CancellationTokenSource(deadline);
        var frames = new List<Frame>();
        try
        {
            while (frames.Count < count && source.Read(cts.Token) is { } f) frames.Add(f);
        }
        catch (OperationCanceledException) { }
        return frames;
    }

    [Fact]
    public async Task ReadsLiveFrames_ThenReportsTheLoss_AndGivesUpWithoutCrashing()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to feed the FIFO");
        var fifo = MakeFifo();
        using var source = FrameSources.Open(fifo, new FrameSourceOptions { GiveUpAfter = TimeSpan.FromSeconds(2) });
        Assert.IsType<LiveFrameSource>(source);
        Assert.True(source.IsLive);
        var writer = StartWriter(ffmpeg, fifo, 2);

        var sw = Stopwatch.StartNew();
        var frames = ReadFrames(source, 15, TimeSpan.FromSeconds(10));
        Assert.True(frames.Count == 15, $"got {frames.Count} frames; status {source.Status}");
        Assert.All(frames, f => Assert.Equal(new OpenCvSharp.Size(320, 240), f.Image.Size()));
        Assert.Equal(15, source.Fps, 1);
        // Live means paced by the writer: 15 frames at 15 fps take most of a second.
        Assert.True(sw.Elapsed.TotalSeconds > 0.5, $"15 live frames came in {sw.Elapsed.TotalSeconds:0.00} s");
        Assert.True(frames.Zip(frames.Skip(1)).All(p => p.Second.Index > p.First.Index));
        frames.ForEach(f => f.Dispose());

        var (code, errors) = await writer.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(code == 0, $"ffmpeg writer: {errors}");
        // Drain what is left; the source must then end (GiveUpAfter), not hang or throw.
        sw.Restart();
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
            while (source.Read(cts.Token) is { } f) f.Dispose();
        log.WriteLine($"ended after {sw.Elapsed.TotalSeconds:0.0} s: {source.Status}");
        Assert.InRange(sw.Elapsed.TotalSeconds, 0, 10);
        Assert.StartsWith("gave up", source.Status);
        // What `live` prints when it stops for this: what was lost, how long and how often it was retried.
        var reason = ((LiveFrameSource)source).LostReason;
        log.WriteLine(reason);
        Assert.NotNull(reason);
        Assert.Matches(@"camera\.avi.* lost: no frame for 2 s, \d+ reconnect attempts; gave up", reason);

        var disposing = Stopwatch.StartNew();
        source.Dispose(); // the grabber is blocked opening the FIFO again: dispose must release it
        Assert.True(disposing.Elapsed < TimeSpan.FromSeconds(3), $"dispose took {disposing.Elapsed}");
    }

    [Fact]
    public async Task WriterComesBack_SourceReconnectsAndKeepsCounting()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to feed the FIFO");
        var fifo = MakeFifo();
        using var source = FrameSources.Open(fifo);
        var first = StartWriter(ffmpeg, fifo, 1);
        var before = ReadFrames(source, 5, TimeSpan.FromSeconds(10));
        Assert.Equal(5, before.Count);
        await first.WaitAsync(TimeSpan.FromSeconds(20));

        // Between writers the source says it lost the stream.
        var deadline = Stopwatch.StartNew();
        while (!source.Status.Contains("lost") && deadline.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
        log.WriteLine($"between writers: {source.Status}");
        Assert.Contains("lost", source.Status);

        var second = StartWriter(ffmpeg, fifo, 1);
        var after = ReadFrames(source, 5, TimeSpan.FromSeconds(10));
        Assert.Equal(5, after.Count);
        Assert.True(after[0].Index > before[^1].Index);
        Assert.Equal("live", source.Status);
        await second.WaitAsync(TimeSpan.FromSeconds(20));
        before.Concat(after).ToList().ForEach(f => f.Dispose());
    }

    [Fact]
    public void FifoWithNoWriter_GivesUpWithAUserError_AndDisposesPromptly()
    {
        var fifo = MakeFifo();
        var source = FrameSources.Open(fifo, new FrameSourceOptions { GiveUpAfter = TimeSpan.FromSeconds(1) });
        var e = Assert.Throws<UserError>(() => source.Read());
        Assert.Contains("camera.avi", e.Message);
        var sw = Stopwatch.StartNew();
        source.Dispose();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(3), $"dispose took {sw.Elapsed}");
    }
}
