using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

public class FileSourceTests
{
    [Fact]
    public void ReadsAGeneratedClip_WithCountSizeAndTimestamps_ThenEnds()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("file"), frames: 30, fps: 15, width: 160, height: 120);
        using var source = FrameSources.Open(clip);
        Assert.IsType<VideoFileSource>(source);
        Assert.False(source.IsLive);
        Assert.Equal(15, source.Fps, 1);
        Assert.Equal(30, source.FrameCount);

        var frames = new List<Frame>();
        while (source.Read() is { } f) frames.Add(f);
        Assert.Equal(30, frames.Count);
        Assert.All(frames, f => Assert.Equal(new Size(160, 120), f.Image.Size()));
        Assert.All(frames, f => Assert.Equal(MatType.CV_8UC3, f.Image.Type()));
        Assert.Equal(Enumerable.Range(0, 30).Select(i => (long)i), frames.Select(f => f.Index));
        Assert.Equal(29 / 15.0, frames[^1].Timestamp.TotalSeconds, 3); // index / fps
        Assert.Null(source.Read()); // stays ended
        Assert.Equal("ended", source.Status);
        frames.ForEach(f => f.Dispose());
    }

    /// <summary>
    /// A recording whose rate changes (a phone's in low light, a browser's): 30 frames at 30 fps,
    /// then 30 at 10 fps. Each frame's time is when the file shows it, not its index over the mean
    /// rate (15.8 fps), which put frame 30 at 1.9 s where it is shown at 1.0 s.
    /// </summary>
    [Fact]
    public void AVariableRateFile_GivesEachFrameItsPresentationTime()
    {
        var clip = TestMedia.VariableRateClip(TestMedia.TempDir("vfr"));
        using var source = new VideoFileSource(clip);
        var times = new List<double>();
        while (source.Read() is { } f) using (f) times.Add(f.Timestamp.TotalSeconds);
        Assert.Equal(60, times.Count);
        for (int n = 0; n < 60; n++)
            Assert.True(Math.Abs(times[n] - TestMedia.VariableRateTime(n)) < 0.002, $"frame {n} at {times[n]:0.000} s");
    }

    /// <summary>
    /// Played as if live, a variable-rate file keeps its own clock: its 30 fps second comes in a
    /// second, where pacing at the mean rate (15.8 fps) took 1.9 s to reach frame 30. Never early;
    /// a frame the machine made late is passed over, not queued.
    /// </summary>
    [Fact]
    public void AVariableRateFile_PlayedAsIfLive_IsPacedByItsFramesTimes()
    {
        var clip = TestMedia.VariableRateClip(TestMedia.TempDir("vfr-live"));
        using var source = new VideoFileSource(clip, new FrameSourceOptions { Realtime = true });
        var seen = new List<(double At, double Wall)>();
        var wall = Stopwatch.StartNew();
        while (source.Read() is { } f) using (f) seen.Add((f.Timestamp.TotalSeconds, wall.Elapsed.TotalSeconds));
        Assert.InRange(seen.Count, 40, 60);
        Assert.All(seen, s => Assert.True(s.Wall >= s.At - 0.02, $"the frame at {s.At:0.000} s came early, at {s.Wall:0.000} s"));
        var second = seen.First(s => s.At >= 1.0);
        Assert.True(second.Wall < 1.5, $"the first frame of the second second came at {second.Wall:0.000} s");
    }

    /// <summary>Skip passes frames without handing them out: the read after it is the frame a plain decode has there, numbered as such; at the end it says how many there were.</summary>
    [Fact]
    public void Skip_PassesFrames_TheReadAfterIsTheFrameThere_AndTheEndIsCounted()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("skip"), frames: 12, fps: 12, width: 96, height: 64);
        var all = new List<Mat>();
        using (var cap = new VideoCapture(clip))
            for (var m = new Mat(); cap.Read(m) && !m.Empty(); m = new Mat()) all.Add(m);
        Assert.Equal(12, all.Count);
        using var source = new VideoFileSource(clip);
        Assert.Equal(0, source.Skip(0));
        using (var f = source.Read()!) { Assert.Equal(0, f.Index); Assert.Equal(0.0, Cv2.Norm(f.Image, all[0], NormTypes.L1)); }
        Assert.Equal(4, source.Skip(4));
        using (var f = source.Read()!) { Assert.Equal(5, f.Index); Assert.Equal(0.0, Cv2.Norm(f.Image, all[5], NormTypes.L1)); }
        Assert.Equal(6, source.Skip(100)); // frames 6..11 remain
        Assert.Null(source.Read());
        // From the start: the frame read while opening is the first one skipped.
        using var fresh = new VideoFileSource(clip);
        Assert.Equal(3, fresh.Skip(3));
        using (var f = fresh.Read()!) { Assert.Equal(3, f.Index); Assert.Equal(0.0, Cv2.Norm(f.Image, all[3], NormTypes.L1)); }
        all.ForEach(m => m.Dispose());
    }

    [Fact]
    public void Loop_ReplaysFromTheStart_WithTimestampsStillRising()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("loop"), frames: 10, fps: 10);
        using var source = FrameSources.Open(clip, new FrameSourceOptions { Loop = true });
        var frames = new List<Frame>();
        for (int i = 0; i < 25; i++) frames.Add(source.Read() ?? throw new Xunit.Sdk.XunitException($"looping source ended at {i}"));
        Assert.Equal(Enumerable.Range(0, 25).Select(i => (long)i), frames.Select(f => f.Index));
        // Frame 10 is the clip's first frame again.
        using (var diff = new Mat())
        {
            Cv2.Absdiff(frames[0].Image, frames[10].Image, diff);
            Assert.True(Cv2.Mean(diff).Val0 < 3, "the replayed frame should match the first");
        }
        Assert.True(frames[10].Timestamp > frames[9].Timestamp);
        frames.ForEach(f => f.Dispose());
    }

    [Fact]
    public void StartAt_ResumesPartWay_LoopingWithinTheFile_IndicesCountingFromThere()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("start"), frames: 10, fps: 10);
        using var reference = FrameSources.Open(clip);
        var all = new List<Frame>();
        while (reference.Read() is { } f) all.Add(f);
        // 2.3 s into a looping 1 s clip: frame 23, which is the clip's frame 3.
        using var source = FrameSources.Open(clip, new FrameSourceOptions { Loop = true, StartAt = TimeSpan.FromSeconds(2.3) });
        using var first = source.Read()!;
        Assert.Equal(23, first.Index);
        Assert.Equal(2.3, first.Timestamp.TotalSeconds, 3);
        using (var diff = new Mat())
        {
            Cv2.Absdiff(all[3].Image, first.Image, diff);
            Assert.True(Cv2.Mean(diff).Val0 < 3, "2.3 s into a looping 1 s clip shows its frame 3");
        }
        using var next = source.Read()!;
        Assert.Equal(24, next.Index);
        // Not looping: past the end there is nothing to read.
        using var over = FrameSources.Open(clip, new FrameSourceOptions { StartAt = TimeSpan.FromSeconds(5) });
        Assert.Null(over.Read());
        all.ForEach(f => f.Dispose());
    }

    [Fact]
    public void StartAfterFrame_AResumedSourceNeverRepeatsAFrameAnEarlierRunDelivered()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("after"), frames: 10, fps: 10);
        // 0.62 s rounds to frame 6, which the earlier run delivered: start at 7.
        using (var file = FrameSources.Open(clip, new FrameSourceOptions { Loop = true, StartAt = TimeSpan.FromSeconds(0.62), StartAfterFrame = 6 }))
        using (var first = file.Read()!)
            Assert.Equal(7, first.Index);
        // The wall clock is further on than the earlier run got: it wins.
        using (var file = FrameSources.Open(clip, new FrameSourceOptions { Loop = true, StartAt = TimeSpan.FromSeconds(2.3), StartAfterFrame = 6 }))
        using (var first = file.Read()!)
            Assert.Equal(23, first.Index);
        // The app's generated clip (a cluster's synthetic streams) resumes the same way.
        var options = RealtimeAssistant.Cli.App.AppSources.Options(loop: true) with { StartAt = TimeSpan.FromSeconds(0.62), StartAfterFrame = 6 };
        using var generated = FrameSources.Open("synthetic:seed=3,size=32,fps=10", options);
        using var g = generated.Read()!;
        Assert.Equal(7, g.Index);
    }

    /// <summary>
    /// A live source cannot seek, so a cluster stream moved to another silo would start its log at
    /// frame 0 and time 0 again; it numbers its frames from where the stream was instead, and never
    /// at or before the newest frame an earlier run logged.
    /// </summary>
    [Fact]
    public void ALiveSourceResumedPartWay_NumbersItsFramesAndTimesOnFromThere()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("live-resume"), frames: 10, fps: 10);
        VideoCapture Open() => new(clip);
        using (var fresh = new LiveFrameSource("clip", Open))
        using (var f = fresh.Read()!)
        {
            Assert.InRange(f.Index, 0, 9);
            Assert.True(f.Timestamp < TimeSpan.FromSeconds(2), $"a fresh source's first frame at {f.Timestamp}");
        }
        // The wall clock says 2.3 s in (frame 23 at 10 fps); the earlier run logged frame 6.
        using (var resumed = new LiveFrameSource("clip", Open, new FrameSourceOptions { StartAt = TimeSpan.FromSeconds(2.3), StartAfterFrame = 6 }))
        using (var r = resumed.Read()!)
        {
            Assert.InRange(r.Index, 23, 32); // the slot keeps the newest frame: the reader may find a later one
            Assert.True(r.Timestamp >= TimeSpan.FromSeconds(2.3), $"a resumed source's frame at {r.Timestamp}");
        }
        // A move within a frame of the last caption: the log's frame wins.
        using (var late = new LiveFrameSource("clip", Open, new FrameSourceOptions { StartAt = TimeSpan.FromSeconds(0.62), StartAfterFrame = 6 }))
        using (var r = late.Read()!)
            Assert.InRange(r.Index, 7, 16);
    }

    [Fact]
    public void Realtime_PacesFramesAtTheFilesRate()
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir("pace"), frames: 10, fps: 20);
        using var source = FrameSources.Open(clip, new FrameSourceOptions { Realtime = true });
        Assert.True(source.IsLive);
        var sw = Stopwatch.StartNew();
        int n = 0;
        while (source.Read() is { } f) { f.Dispose(); n++; }
        // 10 frames at 20 fps: the last is due at 0.45 s.
        Assert.InRange(sw.Elapsed.TotalSeconds, 0.4, 3);
        Assert.InRange(n, 8, 10); // a late frame may be skipped, as a camera would
    }

    [Fact]
    public void ImageFolder_PlaysImagesInNaturalOrder()
    {
        var dir = TestMedia.TempDir("images");
        foreach (var i in new[] { 1, 2, 10 })
        {
            using var m = TestMedia.Pattern(i);
            Cv2.ImWrite(Path.Combine(dir, $"frame{i}.png"), m);
        }
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "not an image");
        using var source = FrameSources.Open(dir, new FrameSourceOptions { Fps = 5 });
        Assert.IsType<ImageFolderSource>(source);
        Assert.Equal(3, source.FrameCount);
        var frames = new List<Frame>();
        while (source.Read() is { } f) frames.Add(f);
        Assert.Equal(3, frames.Count);
        Assert.Equal(TimeSpan.FromSeconds(0.4), frames[2].Timestamp);
        using var expected = TestMedia.Pattern(10);
        using var diff = new Mat();
        Cv2.Absdiff(expected, frames[2].Image, diff);
        Assert.Equal(0, Cv2.CountNonZero(diff.CvtColor(ColorConversionCodes.BGR2GRAY)));
        frames.ForEach(f => f.Dispose());
    }

    [Fact]
    public void EmptyFolder_IsAUserError()
    {
        var e = Assert.Throws<UserError>(() => FrameSources.Open(TestMedia.TempDir("empty")));
        Assert.Contains("no images", e.Message);
    }

    [Fact]
    public void GeneratedSource_RendersCountFrames_AndSchemesReachIt()
    {
        var options = new FrameSourceOptions
        {
            Schemes = new Dictionary<string, Func<string, FrameSourceOptions, IFrameSource>>
            {
                ["synthetic"] = (spec, _) => new GeneratedFrameSource(i => TestMedia.Pattern(i), 25, count: 5, description: spec),
            },
        };
        using var source = FrameSources.Open("synthetic:seed=1", options);
        Assert.StartsWith("synthetic:seed=1", source.Description);
        int n = 0;
        while (source.Read() is { } f) { Assert.Equal(n, f.Index); f.Dispose(); n++; }
        Assert.Equal(5, n);
    }
}
