using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Cli;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A video file on a web server (http://host/clip.mp4), as a user gives one: read as a file, not
/// as a camera. annotate and stream read every frame of it and end with it; live plays it at its
/// own rate and ends. (As a camera it was read at ffmpeg's decoding speed, most frames dropped,
/// and fetched again each time it ended: annotate never ended and wrote nothing.)
/// </summary>
public class RemoteFileTests(ITestOutputHelper log)
{
    /// <summary>Kestrel serving one file with range requests, as any web server does (an MP4 with its index at the end needs them).</summary>
    static async Task<(WebApplication Site, string Url)> Serve(string file)
    {
        var name = Path.GetFileName(file);
        var site = await LoopbackSite.Start(a => a.MapGet("/videos/" + name, () => Results.File(file, "video/mp4", enableRangeProcessing: true)));
        return (site, $"{site.Urls.First()}/videos/{name}");
    }

    /// <summary>A 160×120 clip of <paramref name="frames"/> frames at 10 fps, served (<see cref="Serve"/>).</summary>
    static async Task<(WebApplication Site, string Url, string Clip)> ServeClip(string dirName, int frames)
    {
        var clip = TestMedia.WriteClip(TestMedia.TempDir(dirName), frames, fps: 10);
        var (site, url) = await Serve(clip);
        return (site, url, clip);
    }

    static List<Frame> ReadAll(IFrameSource source, int most = 10_000)
    {
        var frames = new List<Frame>();
        while (frames.Count < most && source.Read() is { } f) frames.Add(f);
        return frames;
    }

    [Fact]
    public async Task AnHttpFile_ReadAsAFile_GivesEveryFrameInOrder_AsTheLocalFileDoes_ThenEnds()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH to fetch the URL");
        var (site, url, clip) = await ServeClip("remote-file", 40);
        await using var _ = site;

        using var remote = FrameSources.Open(url, new FrameSourceOptions { UrlsAsFiles = true });
        using var local = FrameSources.Open(clip);
        Assert.StartsWith($"url {url} (160x120, 10 fps", remote.Description);
        Assert.False(remote.IsLive);
        Assert.Equal(10, remote.Fps, 3);
        var got = ReadAll(remote);
        var expected = ReadAll(local);
        try
        {
            Assert.Equal(expected.Select(f => f.Index), got.Select(f => f.Index));
            Assert.Equal(40, got.Count);
            for (int i = 0; i < got.Count; i++)
            {
                Assert.Equal(expected[i].Timestamp.TotalMilliseconds, got[i].Timestamp.TotalMilliseconds, 1.0);
                // Two FFmpeg builds decode it (Debian's and OpenCV's): the same pictures, within rounding.
                var diff = Cv2.Norm(expected[i].Image, got[i].Image, NormTypes.L1) / (160 * 120 * 3);
                Assert.True(diff < 2, $"frame {i} differs by {diff:0.##} levels on average");
            }
            Assert.Null(remote.Read()); // the end stays the end: no reconnect
        }
        finally { got.Concat(expected).ToList().ForEach(f => f.Dispose()); }
    }

    [Fact]
    public async Task AnHttpFile_PlayedLive_IsPacedByItsOwnRate_AndEnds()
    {
        if (TestMedia.Ffmpeg is null || Executables.Find("ffprobe") is null) Assert.Skip("no ffmpeg and ffprobe on PATH to fetch and probe the URL");
        var (site, url, clip) = await ServeClip("remote-live", 20);
        await using var _ = site;

        Assert.Equal(10, FrameSources.Check(url)!.Value, 3); // the rate live's budget is set from, before the model loads
        // live's options: a camera's stream would be a NetworkFrameSource, newest frame wins, reconnected when it ends.
        using var source = FrameSources.Open(url, new FrameSourceOptions { Realtime = true });
        Assert.IsType<VideoFileSource>(source);
        Assert.True(source.IsLive);
        var sw = Stopwatch.StartNew();
        var frames = ReadAll(source, most: 100);
        var elapsed = sw.Elapsed;
        try
        {
            log.WriteLine($"{frames.Count} frames in {elapsed.TotalSeconds:0.00} s");
            // Never early: frame 19 is due 1.9 s after frame 0 (decoding alone takes a few ms).
            Assert.True(elapsed >= TimeSpan.FromSeconds(1.85), $"played in {elapsed.TotalSeconds:0.00} s, not at 10 fps");
            Assert.InRange(frames.Count, 10, 20);   // a slow machine passes over late frames, as a camera's
            Assert.Equal(frames.Select(f => f.Index).Order(), frames.Select(f => f.Index));
            Assert.True(frames[^1].Index <= 19, $"read past the end: frame {frames[^1].Index}");
        }
        finally { frames.ForEach(f => f.Dispose()); }
    }

    /// <summary>A looping stream of a web server's file (a server stream with "loop": true) fetches it again at its end, its frame numbers going on.</summary>
    [Fact]
    public async Task AnHttpFile_Looping_IsFetchedAgain_ItsFramesNumberedOn()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH to fetch the URL");
        var (site, url, clip) = await ServeClip("remote-loop", 12);
        await using var _ = site;
        using var source = FrameSources.Open(url, new FrameSourceOptions { UrlsAsFiles = true, Loop = true });
        var frames = ReadAll(source, most: 30);
        try
        {
            Assert.Equal(Enumerable.Range(0, 30).Select(i => (long)i), frames.Select(f => f.Index));
            for (int i = 12; i < 30; i++)
                Assert.Equal(0, Cv2.Norm(frames[i % 12].Image, frames[i].Image, NormTypes.L1)); // the same pictures again
        }
        finally { frames.ForEach(f => f.Dispose()); }
    }

    /// <summary>A camera's URL is never probed (ffprobe's connection would take a one-client server's only one), and an unreachable file's is a camera's, retried.</summary>
    [Theory]
    [InlineData("http://127.0.0.1:9/live.ts")]
    [InlineData("http://127.0.0.1:9/video.mjpg")]
    [InlineData("rtsp://127.0.0.1:9/clip.mp4")]
    [InlineData("http://127.0.0.1:9/clip.mp4")]
    public void WithoutALength_AUrlIsACamera_ReconnectedWhenItDrops(string url)
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH for a network source");
        Assert.Null(FrameSources.Check(url));
        using var source = FrameSources.Open(url, new FrameSourceOptions { Realtime = true });
        Assert.IsType<NetworkFrameSource>(source);
    }

    [Fact]
    public async Task AMissingHttpFile_IsAUserError_WithTheServersAnswer()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH to fetch the URL");
        await using var site = await LoopbackSite.Start(_ => { });
        var url = $"{site.Urls.First()}/videos/gone.mp4";
        var e = Assert.Throws<UserError>(() => FrameSources.Open(url, new FrameSourceOptions { UrlsAsFiles = true }));
        Assert.Equal($"no video from {url}: ffmpeg: {url}: Server returned 404 Not Found", e.Message);
    }

    /// <summary>
    /// ra killed (SIGKILL: no clean-up of its own) while its relay's ffmpeg still waits for the
    /// server: the ffmpeg dies with it. It would otherwise get its input, block opening a FIFO
    /// that no one reads any more, and hold ra's pipes open for good.
    /// </summary>
    [Fact]
    public async Task RaKilledWhileItsRelayWaitsForTheServer_LeavesNoFfmpeg()
    {
        if (TestMedia.Ffmpeg is null || Executables.Find("setpriv") is null) Assert.Skip("no ffmpeg and util-linux's setpriv on PATH");
        var clip = TestMedia.WriteClip(TestMedia.TempDir("remote-killed"), frames: 20, fps: 10);
        var release = new TaskCompletionSource();
        await using var site = await LoopbackSite.Start(a => a.MapGet("/slow/clip.mp4", async () =>
        {
            await release.Task.WaitAsync(TimeSpan.FromSeconds(60)); // the server answers once ra is dead
            return Results.File(clip, "video/mp4", enableRangeProcessing: true);
        }));
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[CliProcess.RaDll, "annotate", $"{site.Urls.First()}/slow/clip.mp4", "-o", TestMedia.TempDir("remote-killed-out")])
            info.ArgumentList.Add(a);
        using var ra = Process.Start(info)!;
        _ = ra.StandardOutput.ReadToEndAsync();
        _ = ra.StandardError.ReadToEndAsync();
        var sw = Stopwatch.StartNew();
        List<int> relays = [];
        while (relays.Count == 0 && sw.Elapsed < TimeSpan.FromSeconds(60) && !ra.HasExited)
        {
            await Task.Delay(100);
            relays = NetworkSourceTests.ChildFfmpegs(ra.Id).ToList();
        }
        Assert.True(relays.Count == 1, $"no relay under ra (exited: {ra.HasExited})");
        ra.Kill(); // SIGKILL, ra alone
        await ra.WaitForExitAsync();
        release.SetResult();
        sw.Restart();
        while (Directory.Exists($"/proc/{relays[0]}") && sw.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(100);
        var alive = Directory.Exists($"/proc/{relays[0]}");
        if (alive) TestMedia.Run("kill", ["-9", relays[0].ToString()], TimeSpan.FromSeconds(5));
        Assert.False(alive, "the relay's ffmpeg outlived ra");
    }

    /// <summary>`ra annotate http://…/talk.mkv`: every frame written and captioned as the same file on disk is, with its sound.</summary>
    [Fact]
    public async Task AnnotateUrl_WritesEveryFrame_TheCaptionsAndTheSoundOfTheSameFileOnDisk()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        var ffprobe = Executables.Find("ffprobe");
        if (ffmpeg is null || ffprobe is null) Assert.Skip("no ffmpeg and ffprobe on PATH to make, fetch and encode the clip");
        var dir = TestMedia.TempDir("annotate-url");
        var clip = Path.Combine(dir, "talk.mkv");
        var (code, errors) = TestMedia.Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=3",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus", clip], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, errors);
        var (site, url) = await Serve(clip);
        await using var _ = site;

        var fromUrl = CliProcess.Run(["annotate", url, "-o", Path.Combine(dir, "url"), "--gate", "0"], TimeSpan.FromMinutes(3));
        log.WriteLine(fromUrl.Stderr);
        Assert.True(fromUrl.Code == 0, fromUrl.Stderr);
        var fromDisk = CliProcess.Run(["annotate", clip, "-o", Path.Combine(dir, "disk"), "--gate", "0"], TimeSpan.FromMinutes(3));
        Assert.True(fromDisk.Code == 0, fromDisk.Stderr);

        var video = Path.Combine(dir, "url", "annotated.mp4");
        Assert.Equal(45, TestMedia.ReadBack(video).Count);
        var srt = File.ReadAllText(Path.Combine(dir, "url", "captions.srt"));
        Assert.NotEmpty(srt);
        Assert.Equal(File.ReadAllText(Path.Combine(dir, "disk", "captions.srt")), srt);
        Assert.Contains("with the source's sound", fromUrl.Stdout + fromUrl.Stderr);
        Assert.True(MediaProbe.Of(video) is { HasSound: true }, "the annotated video has no audio track");
    }
}
