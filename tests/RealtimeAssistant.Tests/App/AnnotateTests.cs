using System.Diagnostics;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.App;

/// <summary>annotate end to end: real model path (tiny weights), headless GL, ffmpeg/OpenCV encoders, caption files.</summary>
[Collection("GL")]
public class AnnotateTests(ITestOutputHelper log)
{
    static AnnotateReport Annotate(string input, string dir, int every, bool resume = false, bool force = false, RealtimeAssistant.Pipeline.IFrameCaptioner? captioner = null, CancellationToken ct = default)
    {
        using var own = captioner is null ? AppTestSupport.TinyCaptioner() : null;
        return Annotator.Run(new AnnotateOptions { Input = input, OutputDir = dir, Every = every, Resume = resume, Force = force, Console = AnnotateConsole.Quiet },
            captioner ?? own!, ct);
    }

    /// <summary>The outputs agree: SRT and VTT parse with one cue per caption, the JSONL matches, the video has every frame.</summary>
    void CheckOutputs(string dir, int expectedFrames, int expectedCaptions, string video = OutputFolder.VideoName)
    {
        var srt = SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName)));
        var vtt = SubtitleParser.ParseVtt(File.ReadAllText(Path.Combine(dir, OutputFolder.VttName)));
        var jsonl = CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName));
        Assert.Equal(expectedCaptions, srt.Count);
        Assert.Equal(expectedCaptions, vtt.Count);
        Assert.Equal(expectedCaptions, jsonl.Count);
        for (int i = 0; i < srt.Count; i++)
        {
            Assert.Equal(srt[i].Start, vtt[i].Start);
            Assert.Equal(srt[i].End, vtt[i].End);
            Assert.True(srt[i].End > srt[i].Start, $"cue {i + 1} is empty");
            if (i > 0) Assert.Equal(srt[i - 1].End, srt[i].Start);   // segments tile the video
            Assert.NotNull(jsonl[i].LatencyMs);
            Assert.NotNull(jsonl[i].KeptTokens);
            Assert.NotNull(jsonl[i].Frame);
        }
        var (frames, size) = TestMedia.ReadBack(Path.Combine(dir, video));
        Assert.Equal(expectedFrames, frames);
        log.WriteLine($"{dir}: {frames} frames {size.Width}x{size.Height}, {srt.Count} cues; first: {srt.FirstOrDefault()?.Text}");
    }

    [Fact]
    public void GeneratedClip_WritesVideoWithEveryFrame_AndParsableSubtitles()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("ann-in"), frames: 30, fps: 15, width: 160, height: 120);
        var dir = Path.Combine(TestMedia.TempDir("ann-out"), "out");
        var report = Annotate(input, dir, every: 5);
        Assert.False(report.Cancelled);
        Assert.Equal(30, report.FramesRendered);
        Assert.Equal(6, report.Captions);
        CheckOutputs(dir, 30, 6);
        var first = SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName)))[0];
        Assert.Equal(TimeSpan.Zero, first.Start);
        Assert.Equal(TimeSpan.FromSeconds(5 / 15.0).TotalMilliseconds, first.End.TotalMilliseconds, tolerance: 1.0);
    }

    [Theory]
    [InlineData("tree.avi", 17)]       // 320×240 Cinepak, 15 fps
    [InlineData("Megamind.avi", 48)]   // 720×528 MPEG-4, 24 fps
    public void RealWorldClips_OfOtherSizesAndCodecs(string name, int every)
    {
        var input = TestMedia.Sample(name);
        var (frames, _) = TestMedia.ReadBack(input);
        var dir = Path.Combine(TestMedia.TempDir("ann-real"), "out");
        var report = Annotate(input, dir, every);
        Assert.Equal(frames, report.FramesRendered);
        CheckOutputs(dir, frames, (frames + every - 1) / every);
    }

    [Fact]
    public void Interrupted_LeavesValidOutputs_AndResumeFinishesTheRest()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("ann-int"), frames: 40, fps: 10);
        var dir = Path.Combine(TestMedia.TempDir("ann-int-out"), "out");
        using var cts = new CancellationTokenSource();
        int calls = 0;
        var slow = new SlowCaptioner(TimeSpan.FromMilliseconds(50)) { };
        slow.OnCaption = () => { if (++calls == 3) cts.Cancel(); };   // Ctrl+C during the third caption
        var first = Annotate(input, dir, every: 5, captioner: slow, ct: cts.Token);
        Assert.True(first.Cancelled);
        Assert.InRange(first.FramesRendered, 1, 39);
        CheckOutputs(dir, (int)first.FramesRendered, first.Captions);

        // Running again without a flag refuses; --resume continues after the last caption.
        var e = Assert.Throws<UserError>(() => Annotate(input, dir, every: 5, captioner: slow));
        Assert.Contains("--resume", e.Message);
        var second = Annotate(input, dir, every: 5, resume: true, captioner: new SlowCaptioner(TimeSpan.FromMilliseconds(10)));
        Assert.False(second.Cancelled);
        Assert.Equal(40, first.FramesRendered + second.FramesRendered);
        var srt = SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName)));
        Assert.Equal(first.Captions + second.Captions, srt.Count);
        Assert.Equal(4000, srt[^1].End.TotalMilliseconds, 2.0);
        Assert.Equal(second.FramesRendered, TestMedia.ReadBack(Path.Combine(dir, "annotated.part2.mp4")).Count);
    }

    [Fact]
    public void CorruptFile_IsAOneLineError_WithoutHanging()
    {
        var path = Path.Combine(TestMedia.TempDir("ann-bad"), "broken.mp4");
        var bytes = new byte[100_000];
        new Random(7).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => Annotate(path, Path.Combine(TestMedia.TempDir("ann-bad-out"), "out"), 5, captioner: new SlowCaptioner(TimeSpan.Zero)));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
        Assert.Contains("cannot decode broken.mp4", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Av1File_IsAOneLineErrorNamingTheCodec_WithoutHanging()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg to make an AV1 clip");
        var path = Path.Combine(TestMedia.TempDir("ann-av1"), "clip.mp4");
        var made = false;
        foreach (var (encoder, extra) in new[] { ("libsvtav1", new[] { "-preset", "12" }), ("libaom-av1", new[] { "-cpu-used", "8" }) })
        {
            var (code, errors) = TestMedia.Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1",
                "-c:v", encoder, .. extra, "-pix_fmt", "yuv420p", path], TimeSpan.FromSeconds(60));
            if (code == 0 && File.Exists(path)) { made = true; break; }
            log.WriteLine($"{encoder}: {errors}");
        }
        if (!made) Assert.Skip("this ffmpeg has no AV1 encoder");
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => Annotate(path, Path.Combine(TestMedia.TempDir("ann-av1-out"), "out"), 5, captioner: new SlowCaptioner(TimeSpan.Zero)));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
        Assert.Contains("av1", e.Message, StringComparison.OrdinalIgnoreCase);
        log.WriteLine(e.Message);
    }
}
