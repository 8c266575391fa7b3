using System.Diagnostics;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>Bad input becomes a one-line UserError, quickly: never a hang, never zero frames in silence.</summary>
public class BadInputTests(ITestOutputHelper log)
{
    static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public void MissingFile_NamesIt()
    {
        var path = Path.Combine(TestMedia.TempDir("missing"), "nope.mp4");
        var e = Assert.Throws<UserError>(() => FrameSources.Open(path));
        Assert.Contains("not found", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void CorruptFile_IsAUserError_WithinABoundedTime()
    {
        var path = Path.Combine(TestMedia.TempDir("corrupt"), "random.mp4");
        var bytes = new byte[200_000];
        new Random(42).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);

        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => FrameSources.Open(path, new FrameSourceOptions { OpenTimeout = TimeSpan.FromSeconds(3) }));
        Assert.True(sw.Elapsed < Bound, $"took {sw.Elapsed}");
        Assert.Contains("cannot decode random.mp4", e.Message);
        log.WriteLine(e.Message);
    }

    [Fact]
    public void TextFileWithVideoName_IsAUserError()
    {
        var path = Path.Combine(TestMedia.TempDir("text"), "notes.avi");
        File.WriteAllText(path, "this is not a video\n");
        var e = Assert.Throws<UserError>(() => FrameSources.Open(path));
        Assert.Contains("cannot decode notes.avi", e.Message);
    }

    [Fact]
    public void Av1_WithoutFfmpegToDecodeIt_IsAUserErrorNamingTheCodec_WithinABoundedTime()
    {
        var path = TestMedia.Av1Clip(TestMedia.TempDir("av1"), 10, log);
        var sw = Stopwatch.StartNew();
        try
        {
            using var source = FrameSources.Open(path, new FrameSourceOptions { OpenTimeout = TimeSpan.FromSeconds(3), DecodeWithFfmpeg = false });
            // If a future OpenCV decodes AV1, the file must really give frames: never zero in silence.
            int n = 0;
            while (source.Read() is { } f) { f.Dispose(); n++; }
            Assert.Equal(10, n);
            log.WriteLine($"this OpenCV decodes AV1; {n} frames");
        }
        catch (UserError e)
        {
            log.WriteLine($"{e.Message} after {sw.Elapsed.TotalSeconds:0.0} s");
            Assert.Contains("AV1", e.Message);
            Assert.Contains("clip.mp4", e.Message);
            Assert.Contains("apt-get install ffmpeg", e.Message);
        }
        Assert.True(sw.Elapsed < Bound, $"took {sw.Elapsed}");
    }

    [Fact]
    public void MissingCameraDevice_IsAUserError_ThatSaysWhichCamerasThereAre()
    {
        var e = Assert.Throws<UserError>(() => FrameSources.Open("/dev/video97"));
        Assert.Contains("/dev/video97", e.Message);
        Assert.Matches("cameras here: /dev/video|this machine has no camera", e.Message);
    }

    /// <summary>
    /// A camera index opens /dev/videoN. One with no such node fails at once, as its path does,
    /// before any model loads: not after --give-up-after seconds of reconnecting to nothing.
    /// </summary>
    [Fact]
    public void ACameraIndexWithNoDevice_IsAUserErrorAtOnce()
    {
        if (File.Exists("/dev/video97")) Assert.Skip("this machine has a /dev/video97");
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => FrameSources.Open("97", new FrameSourceOptions { GiveUpAfter = TimeSpan.FromSeconds(30) }));
        Assert.Contains("camera 97 not found (no /dev/video97)", e.Message);
        Assert.Throws<UserError>(() => FrameSources.Check("97"));
        Assert.InRange(sw.Elapsed.TotalSeconds, 0, 5);
    }

    [Fact]
    public void AFileWhoseOpenNeverReturns_IsAUserErrorAfterTheTimeout()
    {
        // A FIFO with no writer, opened as a file, blocks inside FFmpeg forever: the stand-in for any stuck decoder.
        var fifo = TestMedia.Fifo("stuck", "stuck.mp4");
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => new VideoFileSource(fifo, new FrameSourceOptions { OpenTimeout = TimeSpan.FromSeconds(1) }));
        Assert.InRange(sw.Elapsed.TotalSeconds, 0.9, 5);
        Assert.Contains("stuck.mp4 within 1 s", e.Message); // a FIFO is a pipe, and says what it waited for
        // Release the abandoned open so its thread ends (opening read-write never blocks).
        using (new FileStream(fifo, FileMode.Open, FileAccess.ReadWrite)) { }
    }
}
