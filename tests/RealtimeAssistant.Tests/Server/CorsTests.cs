using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// `ra serve --cors-origins`: a web app served from another origin calls the API from a real
/// browser (Debian's headless Chromium, which enforces CORS) with the API key. Allowed, it reads
/// the models and a chat completion; without the option the browser keeps the answers from it.
/// </summary>
public class CorsTests
{
    const string Key = "cors-key-7";

    [Fact]
    public async Task AWebAppOnAnotherOrigin_CallsTheApi_OnlyWhereItsOriginIsAllowed()
    {
        const string chromium = "/usr/bin/chromium";
        var clients = Path.Combine(ServerTestSupport.RepoRoot, "tests", "clients");
        if (!File.Exists(chromium)) Assert.Skip("Debian's chromium is not installed (./ra test installs it)");
        if (!File.Exists(Path.Combine(clients, "node_modules", "puppeteer-core", "package.json")))
            Assert.Skip("puppeteer-core is not installed in tests/clients (./ra test runs npm ci there)");
        if (!File.Exists("/usr/bin/node")) Assert.Skip("node is not installed (./ra test installs Debian's nodejs)");

        // The web app: a page on its own origin (another port on loopback).
        await using var app = await LoopbackSite.Start(a => a.MapGet("/", () => Results.Content("<!doctype html><title>a web app</title><p>app</p>", "text/html")));
        var pageUrl = app.Urls.First();

        using var model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 4);
        await using var allowing = await ApiServer.StartAsync(new ServerOptions { Port = 0, ApiKey = Key, CorsOrigins = [pageUrl] }, model);
        await using var closed = await ApiServer.StartAsync(new ServerOptions { Port = 0, ApiKey = Key }, model);

        using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(3), 2, 3), 96, 96);
        var image = "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"));
        async Task<JsonNode> FromThePage(ApiServer server)
        {
            var args = new JsonObject { ["page"] = pageUrl, ["api"] = server.Url.ToString(), ["key"] = Key, ["model"] = model.Id, ["image"] = image, ["profile"] = TestMedia.TempDir("chromium-cors") };
            var (code, output, errors) = await ServerTestSupport.Run("/usr/bin/node", [Path.Combine(clients, "cors.mjs"), args.ToJsonString()], cwd: clients, timeout: TimeSpan.FromMinutes(3));
            Assert.True(code == 0, $"the browser run failed ({code}): {errors}\n{output}");
            return JsonNode.Parse(output.Trim().Split('\n')[^1])!;
        }

        var allowed = await FromThePage(allowing);
        Assert.Equal(new Uri(pageUrl).GetLeftPart(UriPartial.Authority), allowed["origin"]!.GetValue<string>());
        Assert.True(allowed["models"]!["status"]?.GetValue<int>() == 200, allowed.ToJsonString());
        Assert.Equal(model.Id, allowed["models"]!["body"]!["data"]![0]!["id"]!.GetValue<string>());
        Assert.True(allowed["chat"]!["status"]?.GetValue<int>() == 200, allowed.ToJsonString());
        Assert.False(string.IsNullOrWhiteSpace(allowed["chat"]!["body"]!["choices"]![0]!["message"]!["content"]!.GetValue<string>()));

        var refused = await FromThePage(closed);
        Assert.StartsWith("TypeError", refused["models"]!["error"]?.GetValue<string>() ?? refused.ToJsonString());
        Assert.StartsWith("TypeError", refused["chat"]!["error"]?.GetValue<string>() ?? refused.ToJsonString());

        // "*": any origin's preflight is answered, before the key check (a preflight carries no key).
        await using var any = await ApiServer.StartAsync(new ServerOptions { Port = 0, ApiKey = Key, CorsOrigins = ["*"] }, model);
        using var http = new HttpClient { BaseAddress = any.Url };
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        preflight.Headers.Add("Origin", "https://anywhere.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        preflight.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        using var answer = await http.SendAsync(preflight);
        Assert.Equal(System.Net.HttpStatusCode.NoContent, answer.StatusCode);
        Assert.Equal("*", answer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        using var keyless = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        keyless.Headers.Add("Origin", "https://anywhere.example");
        using var refusedKey = await http.SendAsync(keyless);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, refusedKey.StatusCode); // CORS opens the door to browsers, not past the key
        Assert.Equal("*", refusedKey.Headers.GetValues("Access-Control-Allow-Origin").Single()); // and the page can read why

        // Bad origins are one line at start.
        foreach (var bad in new[] { "example.com", "https://app.example.com/path", "ftp://x.example", "https://app.example.com/" })
            Assert.Contains("--cors-origins", Assert.Throws<UserError>(() => new ServerOptions { CorsOrigins = [bad] }.Validate()).Message);
    }
}
