using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// `ra serve` driven by the official openai npm package (pinned in tests/clients, installed by
/// `./ra test`) under Node: the answers are `ra caption`'s, token for token.
/// </summary>
public class OpenAiClientTests
{
    /// <summary>Debian's node (what CI installs), else whichever is on PATH.</summary>
    static string? Node()
    {
        if (File.Exists("/usr/bin/node")) return "/usr/bin/node";
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "node"))) return Path.Combine(dir, "node");
        return null;
    }

    static string Clients => Path.Combine(ServerTestSupport.RepoRoot, "tests", "clients");

    [Fact]
    public async Task TheOpenAiClient_GetsRaCaptionsText_PlainAndStreamed()
    {
        var node = Node();
        if (node is null) Assert.Skip("node is not installed (./ra test installs Debian's nodejs)");
        if (!File.Exists(Path.Combine(Clients, "node_modules", "openai", "package.json")))
            Assert.Skip("the openai package is not installed in tests/clients (./ra test runs npm ci there)");

        using var tmp = new TempDir();
        var png = ServerTestSupport.SceneImage(tmp.Path, seed: 11, "png");
        var jpeg = ServerTestSupport.SceneImage(tmp.Path, seed: 24, "jpg");
        var model = ServerTestSupport.DemoModel;

        // What `ra caption` prints for each image with the model's own prompt (greedy), without its newline.
        async Task<string> Caption(string image)
        {
            var (code, stdout, stderr) = await ServerTestSupport.Run("dotnet", [ServerTestSupport.RaDll, "caption", "-m", model, "-i", image]);
            Assert.True(code == 0, $"ra caption failed ({code}): {stderr}");
            Assert.EndsWith("\n", stdout);
            return stdout[..^1];
        }
        var expectedPng = await Caption(png);
        var expectedJpeg = await Caption(jpeg);
        Assert.True(expectedPng.Split(' ').Length >= 4, $"caption too short to compare: '{expectedPng}'");
        // A stop sequence in the middle of the JPEG's caption: the streamed text ends right before it.
        var stop = " " + expectedJpeg.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2];
        var expectedStopped = expectedJpeg[..expectedJpeg.IndexOf(stop, StringComparison.Ordinal)];

        // The PNG on a web server too, for the server to fetch (--image-urls any: the host is on loopback).
        await using var images = await RemoteImageTests.ImageHost.Start(File.ReadAllBytes(png));
        await using var server = await ServeProcess.Start("--model", model, "--api-key", "sk-test", "--image-urls", "any");
        var args = new JsonObject
        {
            ["baseURL"] = new Uri(server.Url, "v1").ToString(), ["model"] = "demo-model", ["png"] = png, ["jpeg"] = jpeg,
            ["pngUrl"] = images.Url + "/scene.png", ["refusedUrl"] = images.Url + "/absent.png",
            ["apiKey"] = "sk-test", ["stop"] = new JsonArray(stop, "never appears"),
        };
        var (nodeCode, output, nodeErr) = await ServerTestSupport.Run(node!, [Path.Combine(Clients, "chat.mjs"), args.ToJsonString()], cwd: Clients);
        Assert.True(nodeCode == 0, $"the client failed ({nodeCode}): {nodeErr}\nserver: {server.Stderr}");
        var r = JsonNode.Parse(output.Trim().Split('\n')[^1])!;

        Assert.Equal(["demo-model"], r["models"]!.AsArray().Select(m => m!.GetValue<string>()));

        var plain = r["plain"]!;
        Assert.Equal("chat.completion", plain["object"]!.GetValue<string>());
        Assert.Equal("assistant", plain["role"]!.GetValue<string>());
        Assert.Equal(expectedPng, plain["text"]!.GetValue<string>());
        Assert.Equal("stop", plain["finish"]!.GetValue<string>());
        // 64 image tokens, the frame marker and "describe the scene ." (4 words).
        Assert.Equal(69, plain["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(expectedPng.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length, plain["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(plain["usage"]!["prompt_tokens"]!.GetValue<int>() + plain["usage"]!["completion_tokens"]!.GetValue<int>(),
            plain["usage"]!["total_tokens"]!.GetValue<int>());

        var stream = r["stream"]!;
        Assert.Equal(expectedJpeg, stream["text"]!.GetValue<string>());
        Assert.Equal(["assistant"], stream["roles"]!.AsArray().Select(x => x!.GetValue<string>()));
        Assert.Equal(["chat.completion.chunk"], stream["objects"]!.AsArray().Select(x => x!.GetValue<string>()));
        Assert.Single(stream["ids"]!.AsArray()); // every chunk of one completion carries its id
        Assert.True(stream["contentChunks"]!.GetValue<int>() >= 3, "the text came in one piece, not streamed");
        Assert.Equal("stop", stream["finish"]!.GetValue<string>());
        Assert.Equal(expectedJpeg.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length, stream["usage"]!["completion_tokens"]!.GetValue<int>());

        Assert.Equal(expectedStopped, r["stopped"]!["text"]!.GetValue<string>());
        Assert.Equal("stop", r["stopped"]!["finish"]!.GetValue<string>());

        Assert.Equal(expectedPng, r["byUrl"]!["text"]!.GetValue<string>());
        var logprobs = r["logprobs"]!;
        Assert.Equal(expectedPng, logprobs["text"]!.GetValue<string>());
        var tokens = logprobs["content"]!.AsArray();
        Assert.Equal(expectedPng, string.Concat(tokens.Select(t => t!["token"]!.GetValue<string>())));
        Assert.All(tokens, t =>
        {
            Assert.True(t!["logprob"]!.GetValue<double>() <= 0);
            Assert.Equal(t["token"]!.GetValue<string>(), t["top"]![0]!.GetValue<string>()); // greedy took the likeliest
        });
        Assert.Equal(plain["usage"]!.ToJsonString(), r["byUrl"]!["usage"]!.ToJsonString());

        var error = r["error"]!;
        Assert.Equal("BadRequestError", error["class"]!.GetValue<string>());
        Assert.Equal(400, error["status"]!.GetValue<int>());
        Assert.Equal("invalid_image_url", error["code"]!.GetValue<string>());
        Assert.Contains("answered 404", error["message"]!.GetValue<string>());
        Assert.False(server.HasExited);
    }

    [Fact]
    public async Task Serve_RefusesAPublicHostWithoutAKey_InOneLine()
    {
        var (code, stdout, stderr) = await ServerTestSupport.Run("dotnet", [ServerTestSupport.RaDll, "serve", "--host", "0.0.0.0"], timeout: TimeSpan.FromMinutes(1));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("--api-key", line);
    }

    [Fact]
    public async Task Serve_OnAPortInUse_SaysSoInOneLine()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var (code, stdout, stderr) = await ServerTestSupport.Run("dotnet", [ServerTestSupport.RaDll, "serve", "--port", port.ToString()], timeout: TimeSpan.FromMinutes(2));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var errors = stderr.Split('\n').Where(l => !l.Contains(" info: ") && l.Trim().Length > 0).ToList();
        var line = Assert.Single(errors);
        Assert.StartsWith("error: cannot listen on 127.0.0.1:" + port, line);
        Assert.DoesNotContain("   at ", stderr);
    }
}
