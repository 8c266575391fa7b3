using System.Net;
using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Server;

/// <summary>`ra serve` as a user starts it: the model and the chat path are warmed up before the port opens.</summary>
public class ServeStartTests
{
    /// <summary>The server's stderr once it holds <paramref name="text"/> (or after 10 s): a log line comes before the address line on stdout, but the two pipes are read apart.</summary>
    static async Task<string> LoggedBy(ServeProcess server, string text)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!server.Stderr.Contains(text) && DateTime.UtcNow < until) await Task.Delay(50);
        return server.Stderr;
    }

    [Fact]
    public async Task TheModelIsWarmedUp_BeforeTheAddressLine_AndTheServerAnswers()
    {
        await using var server = await ServeProcess.Start("--model", ServerTestSupport.DemoModel);
        Assert.Matches(@"warm-up: one synthetic frame read and a short caption written in \d+ ms", await LoggedBy(server, "warm-up: one"));
        using var http = new HttpClient { BaseAddress = server.Url };
        var health = await http.GetAsync("/health");
        Assert.True(health.IsSuccessStatusCode, await health.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task TheChatPathIsWarmedUp_BeforeTheAddressLine_AndCountsInNoMetric()
    {
        await using var server = await ServeProcess.Start("--model", ServerTestSupport.DemoModel);
        Assert.Matches(@"warm-up: a chat completion with a 64x64 PNG answered in \d+ ms", await LoggedBy(server, "warm-up: a chat"));
        using var http = new HttpClient { BaseAddress = server.Url };
        // The warm-up ran through the chat handler; the metrics count only the client's completion.
        using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(5), 2, 3), 96, 96);
        var body = ServerTestSupport.ChatBody("demo-model", ["data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"))], "describe the scene .", maxTokens: 3);
        using var r = await http.PostAsync("v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        double completions = await ServerTestSupport.Metric(http, "ra_chat_completions", "finish_reason=\"length\"")
            + await ServerTestSupport.Metric(http, "ra_chat_completions", "finish_reason=\"stop\"");
        Assert.Equal(1, completions);
    }
}
