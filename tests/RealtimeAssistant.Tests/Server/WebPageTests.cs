using System.Text.Json.Nodes;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The page at / in a real browser: Debian's Chromium, headless, driven by puppeteer-core (pinned
/// in tests/clients). Once on a file from the media folder (MJPEG video, events over SSE), once
/// on Chromium's fake webcam playing a .y4m made from the demo video (getUserMedia → JPEG frames
/// over the WebSocket): each time caption text must appear in the page within the bound.
/// </summary>
[Collection("streams server")]
public class WebPageTests(StreamServer server, ITestOutputHelper log)
{
    const string Chromium = "/usr/bin/chromium";
    const int BoundMs = 240_000;

    static string Clients => Path.Combine(ServerTestSupport.RepoRoot, "tests", "clients");

    static string Node()
    {
        if (!File.Exists(Chromium)) Assert.Skip("Debian's chromium is not installed (./ra test installs it)");
        if (!File.Exists(Path.Combine(Clients, "node_modules", "puppeteer-core", "package.json")))
            Assert.Skip("puppeteer-core is not installed in tests/clients (./ra test runs npm ci there)");
        foreach (var candidate in new[] { "/usr/bin/node" }.Concat((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "node"))))
            if (File.Exists(candidate)) return candidate;
        Assert.Skip("node is not installed (./ra test installs Debian's nodejs)");
        return "";
    }

    async Task<JsonNode> Drive(JsonObject args)
    {
        var node = Node();
        args["url"] = server.Url.ToString();
        args["key"] = StreamServer.Key; // typed into the page: its EventSource, <img> and WebSocket carry it as ?api_key=
        args["timeoutMs"] = BoundMs;
        args["profile"] = TestMedia.TempDir("chromium-profile");
        var (code, output, errors) = await ServerTestSupport.Run(node, [Path.Combine(Clients, "page.mjs"), args.ToJsonString()], cwd: Clients, timeout: TimeSpan.FromMilliseconds(BoundMs * 2));
        Assert.True(code == 0, $"the page run failed ({code}): {errors}\n{output}");
        var result = JsonNode.Parse(output.Trim().Split('\n')[^1])!;
        log.WriteLine(result.ToJsonString());
        Assert.Empty(result["problems"]!.AsArray());
        Assert.False(string.IsNullOrWhiteSpace(result["caption"]!.GetValue<string>()));
        Assert.NotEmpty(result["history"]!.AsArray());
        Assert.Contains("deleted", result["status"]!.GetValue<string>());
        // The page deleted its stream when it stopped.
        Assert.DoesNotContain(server.Api.Streams!.All, s => s.Id == result["streamId"]!.GetValue<string>());
        return result;
    }

    [Fact]
    public async Task ThePage_WatchesAFile_ShowsCaptionsAndNumbers_AndAnswersAQuestion()
    {
        var screenshot = Path.Combine(TestMedia.TempDir("page-shot"), "serve-page.png");
        var result = await Drive(new JsonObject
        {
            ["mode"] = "file", ["file"] = StreamServer.Clip, ["question"] = "what colour is the cross ?", ["screenshot"] = screenshot,
        });
        Assert.Equal(160, result["video"]!["mjpeg"]!.GetValue<int>()); // the MJPEG played in the <img>
        // The answer stands after its question ("what colour is the cross ? red").
        Assert.Contains(result["answers"]!.AsArray(), a => a!.GetValue<string>().StartsWith("what colour is the cross ?") && a.GetValue<string>()["what colour is the cross ?".Length..].Trim().Length > 0);
        var hud = result["hud"]!;
        Assert.Equal("running", hud["state"]!.GetValue<string>());
        Assert.NotEqual("–", hud["glass→caption p50 / p95"]!.GetValue<string>());
        Assert.EndsWith(" ms", hud["glass→caption p50 / p95"]!.GetValue<string>());
        using var png = OpenCvSharp.Cv2.ImRead(screenshot);
        Assert.Equal(new OpenCvSharp.Size(1280, 800), png.Size());
    }

    [Fact]
    public async Task ThePage_OnTheBrowsersFakeWebcam_PushesFrames_AndShowsCaptions()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg to make the fake webcam's .y4m");
        var y4m = Path.Combine(TestMedia.TempDir("fake-cam"), "cam.y4m");
        var (code, errors) = TestMedia.Run(ffmpeg, ["-loglevel", "error", "-y", "-i", Path.Combine(ServerTestSupport.RepoRoot, "media", "demo.mp4"), "-t", "3", "-pix_fmt", "yuv420p", y4m], TimeSpan.FromMinutes(1));
        Assert.True(code == 0, errors);
        var result = await Drive(new JsonObject { ["mode"] = "webcam", ["y4m"] = y4m });
        Assert.Equal(480, result["video"]!["webcam"]!.GetValue<int>()); // the fake camera played the demo video
        Assert.True(result["framesSent"]!.GetValue<int>() > 0);
        Assert.NotEqual("–", result["hud"]!["frames sent"]!.GetValue<string>());
    }
}
