using OpenCvSharp;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Output;

public class AnnotatedVideoWriterTests(ITestOutputHelper log)
{
    static void WriteFrames(AnnotatedVideoWriter w, int n, int width, int height)
    {
        for (int i = 0; i < n; i++)
        {
            using var m = TestMedia.Pattern(i, width, height);
            w.Write(m);
        }
    }

    /// <summary>Where the bright bar of <see cref="TestMedia.Pattern"/> stands in a decoded frame: the pattern's index.</summary>
    static int PatternIndex(Mat m)
    {
        using var grey = m.CvtColor(ColorConversionCodes.BGR2GRAY);
        using var row = grey.Row(grey.Rows / 2);
        row.MinMaxLoc(out _, out double _, out _, out Point brightest);
        return (int)Math.Round((brightest.X - 3.5) / 7);
    }

    /// <summary>
    /// A source whose rate changes: at 10 fps, frames shown at 0, 0.1, 0.4, 0.45 and 0.5 s become
    /// frames 0, 1, 1, 1, 2, (3 left out: it falls on frame 4's slot, taken by 2), 4: the video
    /// keeps the source's timing.
    /// </summary>
    [Fact]
    public void TimedFrames_AreRepeatedAcrossAGap_AndLeftOutWhereTheyCrowd()
    {
        var path = Path.Combine(TestMedia.TempDir("timed"), "annotated.mp4");
        double[] times = [0, 0.1, 0.4, 0.45, 0.5];
        using (var w = new AnnotatedVideoWriter(path, 10, VideoEncoder.OpenCvMp4v))
        {
            for (int i = 0; i < times.Length; i++)
            {
                using var m = TestMedia.Pattern(i, 160, 120);
                w.Write(m, TimeSpan.FromSeconds(times[i]));
            }
            Assert.Equal(6, w.FramesWritten);
            Assert.Equal(2, w.FramesRepeated);
            Assert.Equal(1, w.FramesLeftOut);
        }
        using var cap = new VideoCapture(path, VideoCaptureAPIs.FFMPEG);
        var shown = new List<int>();
        using var frame = new Mat();
        while (cap.Read(frame) && !frame.Empty()) shown.Add(PatternIndex(frame));
        Assert.Equal([0, 1, 1, 1, 2, 4], shown);
    }

    [Fact]
    public void TimedFramesAtTheVideosRate_AreWrittenFrameForFrame()
    {
        var path = Path.Combine(TestMedia.TempDir("timed-cfr"), "annotated.mp4");
        using var w = new AnnotatedVideoWriter(path, 30000 / 1001.0, VideoEncoder.OpenCvMp4v);
        for (int i = 0; i < 300; i++)
        {
            using var m = TestMedia.Pattern(i, 64, 48);
            w.Write(m, TimeSpan.FromSeconds(i * 1001 / 30000.0));
        }
        Assert.Equal(300, w.FramesWritten);
        Assert.Equal(0, w.FramesRepeated + w.FramesLeftOut);
    }

    [Fact]
    public void OpenCvMp4v_ReadsBackWithTheSameFramesAndSize()
    {
        var path = Path.Combine(TestMedia.TempDir("mp4v"), "annotated.mp4");
        using (var w = new AnnotatedVideoWriter(path, 15, VideoEncoder.OpenCvMp4v))
        {
            Assert.Equal("OpenCV mp4v", w.EncoderDescription);
            WriteFrames(w, 24, 200, 150);
            Assert.Equal(24, w.FramesWritten);
        }
        Assert.Equal((24, new Size(200, 150)), TestMedia.ReadBack(path));
    }

    [Fact]
    public void FfmpegH264_ReadsBackWithTheSameFramesAndSize()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH; H.264 output falls back to OpenCV mp4v");
        var path = Path.Combine(TestMedia.TempDir("h264"), "annotated.mp4");
        using (var w = new AnnotatedVideoWriter(path, 15))
        {
            Assert.Equal(VideoEncoder.FfmpegH264, w.Encoder);
            WriteFrames(w, 24, 200, 150);
            w.Finish();
            Assert.Null(w.Error);
        }
        Assert.Equal((24, new Size(200, 150)), TestMedia.ReadBack(path));
        using var cap = new VideoCapture(path);
        Assert.Equal("h264", FourCc(cap).ToLowerInvariant().Replace("avc1", "h264"));
    }

    [Fact]
    public void FfmpegH264_AKilledEncoderStillLeavesAPlayableFile()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        var path = Path.Combine(TestMedia.TempDir("h264-cut"), "annotated.mp4");
        var w = new AnnotatedVideoWriter(path, 10);
        WriteFrames(w, 45, 160, 120);
        Thread.Sleep(1500); // let ffmpeg encode what it can and write its fragments
        // SIGKILL, as a crash would: no trailer, no flush. A classic MP4 would now be unreadable.
        using (var ffmpeg = System.Diagnostics.Process.GetProcessById(w.EncoderProcessId!.Value)) ffmpeg.Kill();
        w.Dispose();
        Assert.NotNull(w.Error); // the writer noticed the encoder died
        log.WriteLine(w.Error);
        var (count, size) = TestMedia.ReadBack(path);
        log.WriteLine($"{count} of 45 frames survived the kill");
        Assert.Equal(new Size(160, 120), size);
        Assert.InRange(count, 10, 45); // at least the first one-second fragment
    }

    [Fact]
    public void OddSizes_ArePaddedForH264()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        var path = Path.Combine(TestMedia.TempDir("odd"), "annotated.mp4");
        using (var w = new AnnotatedVideoWriter(path, 10)) WriteFrames(w, 5, 161, 121);
        Assert.Equal((5, new Size(162, 122)), TestMedia.ReadBack(path));
    }

    [Fact]
    public void AFrameOfAnotherSize_IsRejected()
    {
        var path = Path.Combine(TestMedia.TempDir("size"), "annotated.mp4");
        using var w = new AnnotatedVideoWriter(path, 10, VideoEncoder.OpenCvMp4v);
        WriteFrames(w, 1, 160, 120);
        using var other = TestMedia.Pattern(0, 100, 100);
        Assert.Throws<ArgumentException>(() => w.Write(other));
    }

    [Fact]
    public void AnEncoderThatDied_FailsFinish_WithAUserErrorNamingTheFile()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        var path = Path.Combine(TestMedia.TempDir("h264-died"), "annotated.mp4");
        using var w = new AnnotatedVideoWriter(path, 10);
        WriteFrames(w, 5, 160, 120);
        using (var ffmpeg = System.Diagnostics.Process.GetProcessById(w.EncoderProcessId!.Value)) { ffmpeg.Kill(); ffmpeg.WaitForExit(); }
        var e = Assert.Throws<UserError>(() => w.Finish());
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void AnOutputThatCannotBeWritten_IsAUserError_NotAnIOException()
    {
        var dir = TestMedia.TempDir("unwritable");
        // Under a file: the folder cannot be made.
        var file = Path.Combine(dir, "a-file");
        File.WriteAllText(file, "");
        var e = Assert.Throws<UserError>(() => new AnnotatedVideoWriter(Path.Combine(file, "annotated.mp4"), 10));
        Assert.Contains("annotated.mp4", e.Message);
        // A folder where the video should be: OpenCV cannot open it for writing.
        var taken = Path.Combine(dir, "annotated.mp4");
        Directory.CreateDirectory(taken);
        using var w = new AnnotatedVideoWriter(taken, 10, VideoEncoder.OpenCvMp4v);
        using var frame = TestMedia.Pattern(0, 160, 120);
        e = Assert.Throws<UserError>(() => w.Write(frame));
        Assert.Contains(taken, e.Message);
    }

    static string FourCc(VideoCapture cap)
    {
        var code = (int)cap.Get(VideoCaptureProperties.FourCC);
        return new string(Enumerable.Range(0, 4).Select(i => (char)((code >> (8 * i)) & 0xFF)).ToArray());
    }
}

