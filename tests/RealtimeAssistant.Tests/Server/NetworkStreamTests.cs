using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// A stream on a network source that dies and returns: the demo video served over HTTP on
/// loopback by `ffmpeg -re … -f mpegts -listen 1`, killed mid-stream and started again. The
/// stream's state shows the retries, captions resume, nothing crashes, and deleting it leaves no
/// thread and no relay process behind.
/// </summary>
[Collection("streams server")]
public class NetworkStreamTests(StreamServer server, ITestOutputHelper log)
{
    /// <summary>
    /// A stream of a video file on a web server plays it at its rate and ends with it, as a file in
    /// the media folder does (as a camera it was decoded as fast as ffmpeg could and fetched again
    /// each time it ended, for ever).
    /// </summary>
    [Fact]
    public async Task AnHttpVideoFile_PlaysAtItsRate_AndTheStreamEndsWithIt()
    {
        if (TestMedia.Ffmpeg is null || RealtimeAssistant.Output.Executables.Find("ffprobe") is null) Assert.Skip("no ffmpeg and ffprobe on PATH (./ra test installs Debian's)");
        var clip = TestMedia.WriteClip(TestMedia.TempDir("stream-http-file"), frames: 30, fps: 10);
        await using var site = await LoopbackSite.Start(a => a.MapGet("/clip.mp4",
            () => Microsoft.AspNetCore.Http.Results.File(clip, "video/mp4", enableRangeProcessing: true)));
        var opened = await server.Open(new { source = $"{site.Urls.First()}/clip.mp4", frame_budget_ms = 0 });
        var id = opened["id"]!.GetValue<string>();
        Assert.Equal("url", opened["kind"]!.GetValue<string>());
        var sw = Stopwatch.StartNew();
        var events = new List<SseMessage>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await foreach (var e in server.Events(id, ct: cts.Token)) events.Add(e);
        var elapsed = sw.Elapsed;
        log.WriteLine($"{events.Count} events in {elapsed.TotalSeconds:0.0} s");
        Assert.Equal("end", events[^1].Type);
        Assert.Equal("ended", events[^1].Data["reason"]!.GetValue<string>());
        Assert.True(elapsed >= TimeSpan.FromSeconds(2.5), $"3 s of video ended in {elapsed.TotalSeconds:0.0} s: not played at its rate");
        var frames = events.Where(e => e.Type == "segment").Select(e => e.Data["frame"]!.GetValue<long>()).ToList();
        Assert.NotEmpty(frames);
        Assert.True(frames.Max() < 30, $"a segment at frame {frames.Max()} of 30: the file was read again");
        await server.Delete(id);
        server.AssertNoErrors();
    }

    [Fact]
    public async Task AnHttpSourceThatDiesAndReturns_IsRetried_AndCaptionsResume()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH (./ra test installs Debian's)");
        using var camera = new HttpVideoServer(ffmpeg, Path.Combine(ServerTestSupport.RepoRoot, "media", "demo.mp4"));
        camera.Start();
        var opened = await server.Open(new { source = camera.Url, frame_budget_ms = 0 });
        var id = opened["id"]!.GetValue<string>();
        Assert.Equal("url", opened["kind"]!.GetValue<string>());
        var stream = server.Api.Streams!.Get(id);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(6));
        // The log tells the story in order: segments, then "retrying" once the source is lost,
        // then "running" once frames come again, then segments from the new connection.
        var seen = new List<SseMessage>();
        var states = new List<string>();
        long segmentsBefore = 0, segmentsAfter = 0;
        int stage = 0; // 0: before the loss, 1: retrying, 2: running again
        var reading = Task.Run(async () =>
        {
            await foreach (var e in server.Events(id, ct: cts.Token))
            {
                lock (seen) seen.Add(e);
                if (e.Type == "state")
                {
                    var st = e.Data["state"]!.GetValue<string>();
                    lock (states) states.Add($"{st} ({e.Data["source_status"]})");
                    if (st == "retrying" && stage == 0) Volatile.Write(ref stage, 1);
                    if (st == "running" && stage == 1) Volatile.Write(ref stage, 2);
                }
                if (e.Type != "segment") continue;
                if (Volatile.Read(ref stage) == 0) Interlocked.Increment(ref segmentsBefore);
                if (Volatile.Read(ref stage) == 2 && Interlocked.Increment(ref segmentsAfter) >= 2) return;
            }
        });

        await Until(() => Interlocked.Read(ref segmentsBefore) >= 1, TimeSpan.FromMinutes(3), "a first caption from the network source", camera);
        var running = await server.State(id);
        Assert.Equal("running", running["state"]!.GetValue<string>());
        Assert.Equal(0, running["source_status"]!["retries"]!.GetValue<long>());

        camera.Kill();
        JsonNode state = running;
        await Until(async () => (state = await server.State(id))["source_status"]!["retries"]!.GetValue<long>() >= 2, TimeSpan.FromSeconds(60), "retries while the source is down", camera);
        log.WriteLine($"while down: {state["state"]} {state["source_status"]!.ToJsonString()}");
        Assert.Equal("retrying", state["state"]!.GetValue<string>());
        Assert.Contains("lost", state["source_status"]!["status"]!.GetValue<string>());
        Assert.Equal(1, Volatile.Read(ref stage));

        camera.Start();
        await reading.WaitAsync(TimeSpan.FromMinutes(3));
        lock (states) log.WriteLine(string.Join("\n", states));
        var after = await server.State(id);
        log.WriteLine($"after: {after.ToJsonString()}");
        Assert.Equal("running", after["state"]!.GetValue<string>());
        Assert.True(after["source_status"]!["recoveries"]!.GetValue<long>() >= 1);
        Assert.True(after["source_status"]!["retries"]!.GetValue<long>() >= 2);
        Assert.Equal(2, Interlocked.Read(ref segmentsAfter));
        // Numbered without a gap across the outage.
        lock (seen) Assert.Equal(Enumerable.Range(1, seen.Count).Select(i => (long?)i), seen.Select(e => e.Id));

        await server.Delete(id);
        Assert.True(stream.ThreadsStopped, "a thread of the stream still runs after DELETE");
        camera.Kill();
        Assert.Empty(NetworkSourceTests.ChildFfmpegs()); // no relay left running
        server.AssertNoErrors();
    }

    static async Task Until(Func<Task<bool>> done, TimeSpan limit, string what, HttpVideoServer camera)
    {
        var sw = Stopwatch.StartNew();
        while (!await done())
        {
            if (sw.Elapsed > limit) throw new Xunit.Sdk.XunitException($"no {what} within {limit}; ffmpeg server: {camera.Log}");
            await Task.Delay(250);
        }
    }

    static Task Until(Func<bool> done, TimeSpan limit, string what, HttpVideoServer camera) => Until(() => Task.FromResult(done()), limit, what, camera);
}
