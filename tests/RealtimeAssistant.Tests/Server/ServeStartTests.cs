namespace RealtimeAssistant.Tests.Server;

/// <summary>`ra serve` as a user starts it: the model is warmed up before the port opens.</summary>
public class ServeStartTests
{
    [Fact]
    public async Task TheModelIsWarmedUp_BeforeTheAddressLine_AndTheServerAnswers()
    {
        await using var server = await ServeProcess.Start("--model", ServerTestSupport.DemoModel);
        // The log line comes before the address line on stdout; the two pipes are read apart.
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!server.Stderr.Contains("warm-up:") && DateTime.UtcNow < until) await Task.Delay(50);
        Assert.Matches(@"warm-up: one synthetic frame read and a short caption written in \d+ ms", server.Stderr);
        using var http = new HttpClient { BaseAddress = server.Url };
        var health = await http.GetAsync("/health");
        Assert.True(health.IsSuccessStatusCode, await health.Content.ReadAsStringAsync());
    }
}
