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
    public void Av1_IsAUserErrorNamingTheCodec_WithinABoundedTime()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to make an AV1 clip (apt-get install ffmpeg)");
        var path = Path.Combine(TestMedia.TempDir("av1"), "clip.mp4");
        string? made = null;
        foreach (var encoder in new[] { "libsvtav1", "libaom-av1" })
        {
            var extra = encoder == "libaom-av1" ? new[] { "-cpu-used", "8" } : ["-preset", "12"];
            var (code, errors) = TestMedia.Run(ffmpeg,
                ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1",
                 "-c:v", encoder, .. extra, "-pix_fmt", "yuv420p", path], TimeSpan.FromSeconds(60));
            if (code == 0 && File.Exists(path)) { made = encoder; break; }
            log.WriteLine($"{encoder}: exit {code}: {errors}");
        }
        if (made is null) Assert.Skip("this ffmpeg has no working AV1 encoder (libsvtav1, libaom-av1)");

        var sw = Stopwatch.StartNew();
        try
        {
            using var source = FrameSources.Open(path, new FrameSourceOptions { OpenTimeout = TimeSpan.FromSeconds(3) });
            // If a future OpenCV decodes AV1, the file must really give frames: never zero in silence.
            int n = 0;
            while (source.Read() is { } f) { f.Dispose(); n++; }
            Assert.Equal(10, n);
            log.WriteLine($"this OpenCV decodes AV1 ({made}); {n} frames");
        }
        catch (UserError e)
        {
            log.WriteLine($"{made}: {e.Message} after {sw.Elapsed.TotalSeconds:0.0} s");
            Assert.Contains("AV1", e.Message);
            Assert.Contains("clip.mp4", e.Message);
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
        var fifo = Path.Combine(TestMedia.TempDir("stuck"), "stuck.mp4");
        Assert.Equal(0, TestMedia.Run("mkfifo", [fifo], TimeSpan.FromSeconds(5)).Code);
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => new VideoFileSource(fifo, new FrameSourceOptions { OpenTimeout = TimeSpan.FromSeconds(1) }));
        Assert.InRange(sw.Elapsed.TotalSeconds, 0.9, 5);
        Assert.Contains("longer than 1 s", e.Message);
        // Release the abandoned open so its thread ends (opening read-write never blocks).
        using (new FileStream(fifo, FileMode.Open, FileAccess.ReadWrite)) { }
    }
}
