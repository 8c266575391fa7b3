using System.Diagnostics;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A network source (HTTP here; RTSP and RTMP go the same way, through Debian's ffmpeg into a
/// FIFO) that dies and comes back: the source says it is retrying, counts the attempts, and
/// frames come again from the new connection, with no crash and no thread left behind. Run apart
/// from the other tests, with the stream tests: two ffmpeg processes decoding keep a core busy.
/// </summary>
[Collection("streams server")]
public class NetworkSourceTests(ITestOutputHelper log)
{
    static string DemoVideo => Path.Combine(Server.ServerTestSupport.RepoRoot, "media", "demo.mp4");

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
    public void Urls_AreNetworkSources_AndCredentialsStayOutOfTheDescription()
    {
        Assert.True(NetworkFrameSource.IsUrl("rtsp://cam.local:554/stream1"));
        Assert.True(NetworkFrameSource.IsUrl("HTTP://127.0.0.1:8000/live.ts"));
        Assert.True(NetworkFrameSource.IsUrl("rtmp://host/app/key"));
        Assert.False(NetworkFrameSource.IsUrl("file:///etc/passwd"));
        Assert.False(NetworkFrameSource.IsUrl("media/demo.mp4"));
        Assert.False(NetworkFrameSource.IsUrl("0"));
        Assert.Equal("rtsp://***@cam.local/s", NetworkFrameSource.Redact("rtsp://admin:secret@cam.local/s"));
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        using var s = new NetworkFrameSource("rtsp://admin:secret@127.0.0.1:9/none");
        Assert.DoesNotContain("secret", s.Description);
    }

    [Fact]
    public void NothingListening_IsRetriedWithBackoff_AndSaysWhy()
    {
        if (TestMedia.Ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        using var server = new HttpVideoServer(TestMedia.Ffmpeg, DemoVideo); // its port, with nobody listening
        using var source = new NetworkFrameSource(server.Url, new FrameSourceOptions { RetryInitial = TimeSpan.FromMilliseconds(100), RetryMax = TimeSpan.FromMilliseconds(400) });
        var sw = Stopwatch.StartNew();
        while (source.Retries < 3 && sw.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(50);
        log.WriteLine(source.Status);
        Assert.True(source.Retries >= 3, $"retries {source.Retries}: {source.Status}");
        Assert.Contains("not available", source.Status);
        Assert.Contains("ffmpeg", source.Status); // the relay's own reason (connection refused)
        var disposing = Stopwatch.StartNew();
        source.Dispose();
        Assert.True(disposing.Elapsed < TimeSpan.FromSeconds(4), $"dispose took {disposing.Elapsed}");
    }

    [Fact]
    public void HttpStreamThatDiesAndReturns_Reconnects_AndFramesComeAgain()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH");
        using var server = new HttpVideoServer(ffmpeg, DemoVideo);
        server.Start();
        var threadsBefore = Process.GetCurrentProcess().Threads.Count;
        var source = new NetworkFrameSource(server.Url, new FrameSourceOptions { RetryInitial = TimeSpan.FromMilliseconds(200), RetryMax = TimeSpan.FromSeconds(1) });
        try
        {
            var before = ReadFrames(source, 10, TimeSpan.FromSeconds(20));
            Assert.True(before.Count == 10, $"got {before.Count} frames: {source.Status}; server: {server.Log}");
            Assert.All(before, f => Assert.Equal(new OpenCvSharp.Size(480, 480), f.Image.Size()));
            Assert.Equal(15, source.Fps, 1);
            Assert.Equal("live", source.Status);
            Assert.Equal(0, source.Retries);

            server.Kill();
            var sw = Stopwatch.StartNew();
            while (source.Retries < 2 && sw.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(50);
            log.WriteLine($"while down: {source.Status} (retries {source.Retries})");
            Assert.True(source.Retries >= 2, $"no retries while the server was down: {source.Status}");
            Assert.Contains("lost", source.Status);

            server.Start();
            // Frames still in the slot from before the loss come first; wait for one from the new connection.
            var after = ReadFrames(source, 30, TimeSpan.FromSeconds(30));
            log.WriteLine($"after restart: {source.Status} (retries {source.Retries}, recoveries {source.Recoveries})");
            Assert.True(after.Count == 30, $"frames did not come again: {after.Count}, {source.Status}; server: {server.Log}");
            Assert.True(after[^1].Index > before[^1].Index);
            Assert.Equal(1, source.Recoveries);
            Assert.Equal(0, source.Attempt);
            Assert.Equal("live", source.Status);
            before.Concat(after).ToList().ForEach(f => f.Dispose());
        }
        finally
        {
            var disposing = Stopwatch.StartNew();
            source.Dispose();
            Assert.True(disposing.Elapsed < TimeSpan.FromSeconds(4), $"dispose took {disposing.Elapsed}");
        }
        // No relay left running: every ffmpeg child of this process is gone but the server's.
        server.Kill();
        Assert.Empty(ChildFfmpegs());
    }

    internal static IEnumerable<int> ChildFfmpegs(int? parent = null)
    {
        var me = (parent ?? Environment.ProcessId).ToString();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); } catch (IOException) { continue; } catch (UnauthorizedAccessException) { continue; }
            var close = stat.LastIndexOf(')');
            var name = stat[(stat.IndexOf('(') + 1)..close];
            var ppid = stat[(close + 2)..].Split(' ')[1];
            if (name == "ffmpeg" && ppid == me) yield return pid;
        }
    }
}
