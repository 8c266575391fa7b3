using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using OpenCvSharp;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// `ra serve --image-urls`: an http(s) image_url is fetched and answered as the same image sent
/// inline would be; every way a fetch can fail is a 400 naming the part; `public` refuses hosts
/// on loopback or the LAN, however the name is given.
/// </summary>
public class RemoteImageTests
{
    /// <summary>Images on a loopback web server, as a user's image host serves them.</summary>
    internal sealed class ImageHost : IAsyncDisposable
    {
        readonly WebApplication _app;
        public string Url { get; }
        public byte[] Png { get; }

        ImageHost(WebApplication app, string url, byte[] png) { _app = app; Url = url; Png = png; }

        public static async Task<ImageHost> Start(byte[] png)
        {
            var app = await LoopbackSite.Start(app =>
            {
                app.MapGet("/scene.png", () => Results.Bytes(png, "image/png"));
                app.MapGet("/moved", () => Results.Redirect("/scene.png"));
                app.MapGet("/loop", () => Results.Redirect("/loop"));
                app.MapGet("/page.html", () => Results.Text("<html>not an image</html>", "text/html"));
                app.MapGet("/big.png", async (HttpContext ctx) =>
                {
                    // No Content-Length: the limit must hold while reading, not only from the header.
                    await ctx.Response.Body.WriteAsync(png);
                    await ctx.Response.Body.WriteAsync(new byte[2 << 20]);
                });
                app.MapGet("/slow.png", async (HttpContext ctx) =>
                {
                    await ctx.Response.Body.WriteAsync(png.AsMemory(0, 16));
                    await ctx.Response.Body.FlushAsync();
                    await Task.Delay(TimeSpan.FromSeconds(30), ctx.RequestAborted);
                });
            });
            return new ImageHost(app, app.Urls.First(), png);
        }

        public async ValueTask DisposeAsync() { await _app.StopAsync(); await _app.DisposeAsync(); }
    }

    static byte[] ScenePng(int seed)
    {
        using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(seed), 2, 3), 128, 128);
        return img.ImEncode(".png");
    }

    static async Task<(HttpStatusCode Status, JsonNode Body)> Chat(HttpClient http, string model, string url)
    {
        var body = ServerTestSupport.ChatBody(model, [url], "describe the scene .", maxTokens: 24);
        using var content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var r = await http.PostAsync("v1/chat/completions", content);
        return (r.StatusCode, JsonNode.Parse(await r.Content.ReadAsStringAsync())!);
    }

    static JsonNode Error(HttpStatusCode status, JsonNode body, string code)
    {
        Assert.True(status == HttpStatusCode.BadRequest, body.ToJsonString());
        var e = body["error"]!;
        Assert.Equal(code, e["code"]!.GetValue<string>());
        Assert.Equal("messages[0].content[0].image_url.url", e["param"]!.GetValue<string>());
        Assert.DoesNotContain('\n', e["message"]!.GetValue<string>());
        return e;
    }

    static string Text(JsonNode completion) => completion["choices"]![0]!["message"]!["content"]!.GetValue<string>();

    [Fact]
    public async Task AnImageUrl_IsAnsweredAsTheSameImageInline_AndEachFailedFetchIsA400()
    {
        await using var host = await ImageHost.Start(ScenePng(5));
        using var model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 4);
        var limits = new ImageLimits { MaxPixels = 512 * 512, RemoteUrls = ImageUrlPolicy.Any, FetchTimeout = TimeSpan.FromSeconds(2), MaxFetchBytes = 1 << 20 };
        await using var server = await ApiServer.StartAsync(new ServerOptions { Port = 0, Images = limits }, model, _ => { });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(1) };

        var (s1, inline) = await Chat(http, model.Id, "data:image/png;base64," + Convert.ToBase64String(host.Png));
        Assert.True(s1 == HttpStatusCode.OK, inline.ToJsonString());
        var (s2, fetched) = await Chat(http, model.Id, host.Url + "/scene.png");
        Assert.True(s2 == HttpStatusCode.OK, fetched.ToJsonString());
        Assert.True(Text(inline).Split(' ').Length >= 3, Text(inline));
        Assert.Equal(Text(inline), Text(fetched));
        Assert.Equal(inline["usage"]!.ToJsonString(), fetched["usage"]!.ToJsonString());
        var (s3, redirected) = await Chat(http, model.Id, host.Url + "/moved");
        Assert.Equal(HttpStatusCode.OK, s3);
        Assert.Equal(Text(inline), Text(redirected));

        var (st, b) = await Chat(http, model.Id, host.Url + "/absent.png");
        Assert.Contains("answered 404", Error(st, b, "invalid_image_url")["message"]!.GetValue<string>());
        (st, b) = await Chat(http, model.Id, host.Url + "/page.html");
        Error(st, b, "invalid_image_format");
        (st, b) = await Chat(http, model.Id, host.Url + "/big.png");
        Error(st, b, "image_too_large");
        (st, b) = await Chat(http, model.Id, host.Url + "/loop");
        Error(st, b, "invalid_image_url");
        var slow = System.Diagnostics.Stopwatch.StartNew();
        (st, b) = await Chat(http, model.Id, host.Url + "/slow.png?sig=secret");
        var e = Error(st, b, "invalid_image_url");
        Assert.Contains("within 2 s", e["message"]!.GetValue<string>());
        Assert.DoesNotContain("secret", e["message"]!.GetValue<string>()); // a URL's query is not echoed
        Assert.True(slow.Elapsed < TimeSpan.FromSeconds(20), $"the fetch deadline did not hold: {slow.Elapsed}");
        (st, b) = await Chat(http, model.Id, "http://127.0.0.1:9/refused.png");
        Error(st, b, "invalid_image_url");
        (st, b) = await Chat(http, model.Id, "http://user:pw@127.0.0.1/scene.png");
        Error(st, b, "invalid_image_url");

        // The server is still whole.
        var (s4, again) = await Chat(http, model.Id, host.Url + "/scene.png");
        Assert.Equal(HttpStatusCode.OK, s4);
        Assert.Equal(Text(inline), Text(again));
    }

    [Fact]
    public async Task PublicOnly_RefusesLoopbackAndPrivateHosts_AndOffRefusesEveryUrl()
    {
        await using var host = await ImageHost.Start(ScenePng(7));
        using var model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 4);
        await using var publicOnly = await ApiServer.StartAsync(new ServerOptions { Port = 0, Images = new ImageLimits { RemoteUrls = ImageUrlPolicy.Public } }, model, _ => { });
        using var http = new HttpClient { BaseAddress = publicOnly.Url, Timeout = TimeSpan.FromMinutes(1) };
        var port = new Uri(host.Url).Port;
        // A minimal root (debootstrap minbase) may have no /etc/hosts: there "localhost" does not
        // resolve at all, and is refused for that.
        bool localhostResolves;
        try { localhostResolves = (await Dns.GetHostAddressesAsync("localhost")).Length > 0; }
        catch (System.Net.Sockets.SocketException) { localhostResolves = false; }
        foreach (var url in new[] { $"{host.Url}/scene.png", $"http://localhost:{port}/scene.png", $"http://[::1]:{port}/scene.png", $"http://2130706433:{port}/scene.png", "http://10.0.0.1/x.png", "http://169.254.169.254/latest/meta-data" })
        {
            var (st, b) = await Chat(http, model.Id, url);
            var message = Error(st, b, "invalid_image_url")["message"]!.GetValue<string>();
            if (localhostResolves || !url.Contains("localhost")) Assert.Contains("not a public address", message);
        }

        await using var off = await ApiServer.StartAsync(new ServerOptions { Port = 0 }, model, _ => { });
        using var httpOff = new HttpClient { BaseAddress = off.Url, Timeout = TimeSpan.FromMinutes(1) };
        var (so, bo) = await Chat(httpOff, model.Id, $"{host.Url}/scene.png");
        Assert.Contains("--image-urls", Error(so, bo, "invalid_image_url")["message"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("8.8.8.8", true)]
    [InlineData("1.1.1.1", true)]
    [InlineData("2606:4700:4700::1111", true)]
    [InlineData("127.0.0.1", false)]
    [InlineData("127.255.0.9", false)]
    [InlineData("0.0.0.0", false)]
    [InlineData("10.1.2.3", false)]
    [InlineData("172.16.0.1", false)]
    [InlineData("172.31.255.255", false)]
    [InlineData("172.32.0.1", true)]
    [InlineData("192.168.1.1", false)]
    [InlineData("100.64.0.1", false)]
    [InlineData("169.254.169.254", false)]
    [InlineData("224.0.0.1", false)]
    [InlineData("255.255.255.255", false)]
    [InlineData("::", false)]
    [InlineData("::1", false)]
    [InlineData("::ffff:127.0.0.1", false)]
    [InlineData("::ffff:8.8.8.8", true)]
    [InlineData("fd00::1", false)]
    [InlineData("fe80::1", false)]
    [InlineData("ff02::1", false)]
    [InlineData("64:ff9b::a00:1", false)]   // NAT64 of 10.0.0.1
    [InlineData("64:ff9b::808:808", true)]  // NAT64 of 8.8.8.8
    [InlineData("2002:7f00:1::", false)]    // 6to4 of 127.0.0.1
    [InlineData("2001:db8::1", false)]
    public void IsPublic_KnowsTheAddressesThatAreNot(string address, bool expected) =>
        Assert.Equal(expected, RemoteImages.IsPublic(IPAddress.Parse(address)));
}
