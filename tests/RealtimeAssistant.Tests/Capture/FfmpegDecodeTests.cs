using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A file whose codec OpenCV's FFmpeg cannot decode (AV1) is decoded by Debian's ffmpeg through a
/// FIFO, and reads as any other file: every frame, in order, at the container's rate and length,
/// looping and starting part-way as a file does, with no ffmpeg left behind.
/// </summary>
public class FfmpegDecodeTests(ITestOutputHelper log)
{
    [Fact]
    public void Av1File_ReadsEveryFrame_AsFfmpegDecodesIt_ThenLeavesNoFfmpeg()
    {
        var dir = TestMedia.TempDir("av1-read");
        var path = TestMedia.Av1Clip(dir, 12, log);
        // ffmpeg's own decode of the same file, as raw BGR: what each frame must be, byte for byte.
        var raw = Path.Combine(dir, "frames.bgr");
        var (code, errors) = TestMedia.Run(TestMedia.Ffmpeg!, ["-v", "error", "-y", "-i", path, "-f", "rawvideo", "-pix_fmt", "bgr24", raw], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, errors);
        var expected = File.ReadAllBytes(raw);
        const int FrameBytes = 160 * 120 * 3;
        Assert.Equal(12 * FrameBytes, expected.Length);

        using (var source = new VideoFileSource(path))
        {
            log.WriteLine(source.Description);
            Assert.Equal("ffmpeg", source.Decoder);
            Assert.Contains("AV1", source.Description);
            Assert.Equal(10, source.Fps, 3);
            Assert.Equal(12, source.FrameCount);
            Assert.Equal(new Size(160, 120), source.FrameSize);
            int n = 0;
            while (source.Read() is { } f)
            {
                using (f)
                {
                    Assert.Equal(n, f.Index);
                    Assert.Equal(TimeSpan.FromSeconds(n / 10.0), f.Timestamp);
                    Assert.True(f.Image.IsContinuous());
                    var bytes = new byte[FrameBytes];
                    System.Runtime.InteropServices.Marshal.Copy(f.Image.Data, bytes, 0, FrameBytes);
                    Assert.True(bytes.AsSpan().SequenceEqual(expected.AsSpan(n * FrameBytes, FrameBytes)), $"frame {n} differs from ffmpeg's decode");
                }
                n++;
            }
            Assert.Equal(12, n);
            Assert.Null(source.Read());
        }
        Assert.Empty(FfmpegsReading(path));
    }

    [Fact]
    public void Av1File_LoopsAndStartsPartWay_AsAFileDoes()
    {
        var path = TestMedia.Av1Clip(TestMedia.TempDir("av1-loop"), 6, log);
        using var plain = new VideoFileSource(path);
        var frames = new List<Mat>();
        while (plain.Read() is { } f) { frames.Add(f.Image.Clone()); f.Dispose(); }
        Assert.Equal(6, frames.Count);

        // Starts at 0.4 s (frame 4) and loops: 4, 5, 0, 1, 2, 3, 4, 5, 0 …, indices still rising.
        using var looped = new VideoFileSource(path, new FrameSourceOptions { Loop = true, StartAt = TimeSpan.FromSeconds(0.4) });
        for (int i = 0; i < 14; i++)
        {
            using var f = looped.Read();
            Assert.NotNull(f);
            Assert.Equal(4 + i, f.Index);
            Assert.Equal(0, Cv2.Norm(f.Image, frames[(4 + i) % 6], NormTypes.L1));
        }
        frames.ForEach(m => m.Dispose());
    }

    /// <summary>
    /// A file may come from anyone (a chat request's video). An HLS playlist naming a local AV1
    /// clip opens in OpenCV and gives no frame; ffmpeg must not then follow it to the clip (nor to
    /// any other file or URL it could name): it reads only one local container.
    /// </summary>
    [Fact]
    public void APlaylistNamingAnAv1Clip_IsNotFollowedByFfmpeg()
    {
        var dir = TestMedia.TempDir("av1-hls");
        TestMedia.Av1Clip(dir, 6, log);
        var playlist = Path.Combine(dir, "list.m3u8");
        File.WriteAllText(playlist, "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nclip.mp4\n#EXT-X-ENDLIST\n");
        try
        {
            using var source = new VideoFileSource(playlist);
            Assert.Fail($"the playlist was read: {source.Description}");
        }
        catch (UserError e)
        {
            log.WriteLine(e.Message);
            Assert.Contains("list.m3u8", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        Assert.Empty(FfmpegsReading(playlist));
    }

    /// <summary>This process's ffmpeg children whose command line names <paramref name="path"/>.</summary>
    static List<int> FfmpegsReading(string path) =>
        NetworkSourceTests.ChildFfmpegs().Where(pid =>
        {
            try { return File.ReadAllText($"/proc/{pid}/cmdline").Contains(path); }
            catch (IOException) { return false; }
        }).ToList();
}
