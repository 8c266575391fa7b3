using System.Diagnostics;
using RealtimeAssistant.Tests.Cli;
using RealtimeAssistant.Tests.Server;
using RaCli = RealtimeAssistant.Cli.Cli;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A network camera that goes away for good, under `live` and `stream`: after --give-up-after
/// seconds without a frame the command says what was lost, for how long and after how many
/// reconnects, and exits 3. (live ended with 0 and said nothing for a network source, which it
/// did not see as one that reconnects; stream had no limit and reconnected for ever.)
/// </summary>
[Collection("streams server")]
public class NetworkLostTests(ITestOutputHelper log)
{
    [Theory]
    [InlineData("live", "--headless --threads 1")]
    [InlineData("stream", "--policy every:1")]
    public async Task ANetworkCameraLostForGood_SaysWhatAndHowLong_AndExitsThree(string command, string flags)
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to serve the camera");
        using var camera = new HttpVideoServer(ffmpeg, Path.Combine(ServerTestSupport.RepoRoot, "media", "demo.mp4"));
        camera.Start();
        var run = Task.Run(() => CliProcess.Run([command, camera.Url, .. flags.Split(' '), "--give-up-after", "12", "--model", ServerTestSupport.DemoModel],
            TimeSpan.FromSeconds(150)));
        // ffmpeg's client probes the MPEG-TS for up to 5 s of it before the first frame: let frames come a while, then the camera dies.
        var sw = Stopwatch.StartNew();
        while (!camera.HasClient() && sw.Elapsed < TimeSpan.FromSeconds(60) && !run.IsCompleted) await Task.Delay(100);
        Assert.True(camera.HasClient(), $"ra never connected: {(run.IsCompleted ? run.Result.ToString() : "")}");
        await Task.Delay(TimeSpan.FromSeconds(9));
        camera.Kill();
        var r = await run;
        log.WriteLine(r.ToString());
        Assert.False(r.TimedOut);
        Assert.Equal(RaCli.SourceLostCode, r.Code);
        Assert.Matches($@"(?m)^{command}: stream http://127\.0\.0\.1:\d+/live\.ts lost: no frame for 12 s, \d+ reconnect attempts; gave up$", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stdout + r.Stderr);
    }
}
