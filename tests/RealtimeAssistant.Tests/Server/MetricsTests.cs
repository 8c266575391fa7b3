using System.Net;
using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// `ra serve`'s probes: GET /health answers without a key (load balancers and Kubernetes send
/// none), and GET /metrics, behind the key, counts what the chat endpoint did in Prometheus' text
/// format beside ASP.NET Core's request metrics. Counters are process-wide and other tests may add
/// to them, so each check is "at least what this test did".
/// </summary>
public class MetricsTests(InProcessServer server) : IClassFixture<InProcessServer>
{
    [Fact]
    public async Task Health_IsOpen_AndMetricsCountAChatsCompletionAndTokens()
    {
        using var anonymous = new HttpClient { BaseAddress = server.Url };
        using var health = await anonymous.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("Healthy", await health.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/metrics")).StatusCode);

        var lengthBefore = await ServerTestSupport.Metric(server.Http, "ra_chat_completions", "finish_reason=\"length\"");
        var tokensBefore = await ServerTestSupport.Metric(server.Http, "ra_chat_tokens", "kind=\"completion\"");
        var firstBefore = await ServerTestSupport.Metric(server.Http, "ra_chat_time_to_first_token_seconds_count");

        using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(9), 2, 3), 128, 128);
        var body = ServerTestSupport.ChatBody(server.ModelId, ["data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"))], "describe the scene .", maxTokens: 3);
        using var r = await server.Http.PostAsync("v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);

        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_chat_completions", "finish_reason=\"length\"") >= lengthBefore + 1);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_chat_tokens", "kind=\"completion\"") >= tokensBefore + 3);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_chat_time_to_first_token_seconds_count") >= firstBefore + 1);
        using var text = await server.Http.GetAsync("/metrics");
        Assert.StartsWith("text/plain", text.Content.Headers.ContentType!.MediaType);
        var all = await text.Content.ReadAsStringAsync();
        Assert.Contains("microsoft_aspnetcore_hosting_http_server_request_duration_count{", all); // ASP.NET Core's own
        Assert.Contains("# TYPE ra_chat_time_to_first_token_seconds histogram", all);
    }
}
