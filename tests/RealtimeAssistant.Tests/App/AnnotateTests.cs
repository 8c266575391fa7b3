using System.Diagnostics;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Output;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.App;

/// <summary>annotate end to end: real model path (tiny weights), headless GL, ffmpeg/OpenCV encoders, caption files.</summary>
[Collection("GL")]
public class AnnotateTests(ITestOutputHelper log)
{
    /// <summary>annotate with a caption every <paramref name="every"/> frames: one read each (stride = every), a write after each read.</summary>
    static AnnotateReport Annotate(string input, string dir, int every, bool resume = false, bool force = false, ICaptionSession? session = null,
        CancellationToken ct = default, IReadOnlyList<(TimeSpan, string)>? questions = null)
    {
        using var engine = session is null ? AppTestSupport.TinyEngine() : null;
        using var own = session is null ? new GpeSession(engine!, AppTestSupport.TinyOptions()) : null;
        return Annotator.Run(new AnnotateOptions { Input = input, OutputDir = dir, Resume = resume, Force = force, Console = AnnotateConsole.Quiet },
            session ?? own!, AppTestSupport.Loop(Pacing.File, stride: every, policy: "every:1") with { Questions = questions ?? [] }, ct);
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
        long shown;
        using (var source = new RealtimeAssistant.Capture.VideoFileSource(input)) shown = source.FrameCount!.Value;
        var dir = Path.Combine(TestMedia.TempDir("ann-real"), "out");
        var report = Annotate(input, dir, every);
        Assert.Equal(frames, report.FramesRendered);
        // tree.avi decodes to 68 pictures held over 444 frames' time (29.6 s): the annotated video
        // lasts as long, each picture repeated while the source holds it.
        CheckOutputs(dir, (int)shown, (frames + every - 1) / every);
        log.WriteLine($"{name}: {frames} pictures, {shown} frames' time; {report.Encoder}");
    }

    [Fact]
    public void Interrupted_LeavesValidOutputs_AndResumeFinishesTheRest()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("ann-int"), frames: 40, fps: 10);
        var dir = Path.Combine(TestMedia.TempDir("ann-int-out"), "out");
        using var cts = new CancellationTokenSource();
        int calls = 0;
        var slow = new SlowSession(TimeSpan.FromMilliseconds(2), TimeSpan.FromMilliseconds(50));
        slow.OnWrite = () => { if (++calls == 3) cts.Cancel(); };   // Ctrl+C during the third caption
        var first = Annotate(input, dir, every: 5, session: slow, ct: cts.Token);
        Assert.True(first.Cancelled);
        Assert.InRange(first.FramesRendered, 1, 39);
        CheckOutputs(dir, (int)first.FramesRendered, first.Captions);

        // Running again without a flag refuses; --resume continues after the last caption.
        var e = Assert.Throws<UserError>(() => Annotate(input, dir, every: 5, session: slow));
        Assert.Contains("--resume", e.Message);
        var second = Annotate(input, dir, every: 5, resume: true, session: new SlowSession(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10)));
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
        var e = Assert.Throws<UserError>(() => Annotate(path, Path.Combine(TestMedia.TempDir("ann-bad-out"), "out"), 5, session: new SlowSession(TimeSpan.Zero, TimeSpan.Zero)));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
        Assert.Contains("cannot decode broken.mp4", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>AV1, which OpenCV's FFmpeg cannot decode, is annotated as any file: Debian's ffmpeg decodes it.</summary>
    [Fact]
    public void Av1File_IsAnnotatedFrameForFrame()
    {
        var path = TestMedia.Av1Clip(TestMedia.TempDir("ann-av1"), 10, log);
        var dir = Path.Combine(TestMedia.TempDir("ann-av1-out"), "out");
        var report = Annotate(path, dir, every: 5);
        Assert.False(report.Cancelled);
        Assert.Equal(10, report.FramesRendered);
        Assert.Equal(2, report.Captions);
        CheckOutputs(dir, 10, 2);
    }

    /// <summary>
    /// A recording whose rate changes (30 frames at 30 fps, then 30 at 10 fps): the captions start
    /// when their frames are shown, and the video, at one rate, keeps that timing.
    /// </summary>
    [Fact]
    public void AVariableRateFile_IsCaptionedOnItsOwnClock()
    {
        var input = TestMedia.VariableRateClip(TestMedia.TempDir("ann-vfr"));
        var dir = Path.Combine(TestMedia.TempDir("ann-vfr-out"), "out");
        var report = Annotate(input, dir, every: 10);
        Assert.Equal(60, report.FramesRendered);
        var cues = SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName)));
        Assert.Equal(new[] { 0, 10, 20, 30, 40, 50 }.Select(n => (int)Math.Round(1000 * TestMedia.VariableRateTime(n))), cues.Select(c => (int)Math.Round(c.Start.TotalMilliseconds)));
        Assert.Equal(4000, cues[^1].End.TotalMilliseconds, tolerance: 100);
        using var video = new OpenCvSharp.VideoCapture(Path.Combine(dir, OutputFolder.VideoName), OpenCvSharp.VideoCaptureAPIs.FFMPEG);
        var (frames, _) = TestMedia.ReadBack(Path.Combine(dir, OutputFolder.VideoName));
        var seconds = frames / video.Fps;
        log.WriteLine($"{frames} frames at {video.Fps:0.##} fps: {seconds:0.000} s; {report.Encoder}");
        // At the clip's base rate (30 fps, where OpenCV gives the mean 15.8) no frame is left out,
        // and the slower stretch's frames are repeated: the video ends with the last frame's slot.
        Assert.Equal(30, video.Fps, 3);
        Assert.Contains("58 frames repeated and 0 left out", report.Encoder);
        Assert.Equal(TestMedia.VariableRateTime(59) + 1 / video.Fps, seconds, tolerance: 0.5 / video.Fps);
    }

    /// <summary>The annotated video of a file with sound has that sound, as long as the video.</summary>
    [Fact]
    public void AFileWithSound_GivesAnAnnotatedVideoWithItsSound()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        var ffprobe = RealtimeAssistant.Output.Executables.Find("ffprobe");
        if (ffmpeg is null || ffprobe is null) Assert.Skip("no ffmpeg and ffprobe on PATH to make and probe a clip with sound");
        var input = Path.Combine(TestMedia.TempDir("ann-sound"), "talk.mkv");
        var (code, errors) = TestMedia.Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=3",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus", input], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, errors);
        var dir = Path.Combine(TestMedia.TempDir("ann-sound-out"), "out");
        var report = Annotate(input, dir, every: 15);
        Assert.Contains("with the source's sound", report.Encoder);
        CheckOutputs(dir, 45, 3);
        var streams = Probe(ffprobe, Path.Combine(dir, OutputFolder.VideoName));
        log.WriteLine(string.Join("; ", streams));
        Assert.Equal(2, streams.Count);
        var (video, audio) = (streams.Single(s => s.Type == "video"), streams.Single(s => s.Type == "audio"));
        Assert.Equal("aac", audio.Codec);
        Assert.Equal(video.Seconds, audio.Seconds, tolerance: 0.15);

        // Without sound, no audio track.
        var silent = TestMedia.WriteClip(TestMedia.TempDir("ann-silent"), frames: 30, fps: 15);
        var silentDir = Path.Combine(TestMedia.TempDir("ann-silent-out"), "out");
        Assert.DoesNotContain("sound", Annotate(silent, silentDir, every: 15).Encoder);
        Assert.Equal(["video"], Probe(ffprobe, Path.Combine(silentDir, OutputFolder.VideoName)).Select(s => s.Type));
    }

    static List<(string Type, string Codec, double Seconds)> Probe(string ffprobe, string file)
    {
        var psi = new ProcessStartInfo(ffprobe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json", file }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var json = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var seconds = double.Parse(doc.RootElement.GetProperty("format").GetProperty("duration").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        // Per-stream durations are missing in a fragmented MP4: each track's length comes from decoding it.
        return doc.RootElement.GetProperty("streams").EnumerateArray().Select(s => (s.GetProperty("codec_type").GetString()!, s.GetProperty("codec_name").GetString()!,
            TrackSeconds(ffprobe, file, s.GetProperty("codec_type").GetString()![0..1]))).ToList();
    }

    /// <summary>The time of the last packet's end in a track ("v" or "a").</summary>
    static double TrackSeconds(string ffprobe, string file, string track)
    {
        var psi = new ProcessStartInfo(ffprobe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-v", "error", "-select_streams", track, "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", file }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        p.WaitForExit();
        return lines.Select(l => l.Split(',')).Where(f => f.Length == 2 && f[0] != "N/A" && f[1] != "N/A")
            .Max(f => double.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture) + double.Parse(f[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void TwoRunsOverTheSameFile_GiveIdenticalCaptionFiles()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("ann-twice"), frames: 36, fps: 15, width: 96, height: 64);
        string Run(string name)
        {
            var dir = Path.Combine(TestMedia.TempDir(name), "out");
            var report = Annotate(input, dir, every: 4);
            Assert.Equal(36, report.FramesRendered);
            return dir;
        }
        var a = Run("ann-twice-a");
        var b = Run("ann-twice-b");
        foreach (var name in new[] { OutputFolder.SrtName, OutputFolder.VttName })
            Assert.Equal(File.ReadAllText(Path.Combine(a, name)), File.ReadAllText(Path.Combine(b, name)));
        static IEnumerable<string?> Texts(string d) => CaptionJsonl.Read(Path.Combine(d, OutputFolder.JsonlName)).Select(e => $"{e.Frame} {e.Start} {e.End} {e.Text}");
        Assert.Equal(Texts(a), Texts(b));
        Assert.Equal(9, CaptionJsonl.Read(Path.Combine(a, OutputFolder.JsonlName)).Count);
    }

    [Fact]
    public void AQuestionMidFile_IsAnsweredInTheOutputs_AndTheCaptionsGoOn()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("ann-ask"), frames: 40, fps: 10, width: 96, height: 64);
        var dir = Path.Combine(TestMedia.TempDir("ann-ask-out"), "out");
        var report = Annotate(input, dir, every: 5, questions: [(TimeSpan.FromSeconds(1.6), "w7 w8")]);
        var entries = CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName));
        var answer = Assert.Single(entries, e => e.Extra?.ContainsKey("question") == true);
        // Asked at 1.6 s: answered at the first frame read at or after it (frame 20, at 2.0 s).
        Assert.Equal(20, answer.Frame);
        Assert.StartsWith("Q: w7 w8  A: ", answer.Text);
        var after = entries.Where(e => e.Frame > answer.Frame).ToList();
        Assert.NotEmpty(after);
        Assert.All(after, e => Assert.False(e.Extra?.ContainsKey("question") == true));
        var srt = SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName)));
        Assert.Contains(srt, c => c.Text.StartsWith("Q: w7 w8  A: "));
        Assert.Equal(entries.Count, report.Captions);
    }
}
