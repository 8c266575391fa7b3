using System.Text.Json.Nodes;
using RealtimeAssistant.Cli.Commands;

namespace RealtimeAssistant.Tests.App;

/// <summary>`ra bench streaming` end to end on the shipped model, shrunk to seconds: the JSON the issue specifies.</summary>
public class StreamingBenchCommandTests
{
    [Fact]
    public async Task WritesEachMethodsLatencyAtEveryCheckpointAndItsF1()
    {
        var json = Path.Combine(Capture.TestMedia.TempDir("bench-stream"), "s.json");
        var code = await StreamingBench.Create().Parse(["--window", "6", "--at", "2", "9", "--clips", "2", "--caption-tokens", "2", "--json", json]).InvokeAsync();
        Assert.Equal(0, code);
        var root = JsonNode.Parse(File.ReadAllText(json))!;
        var methods = root["methods"]!.AsArray();
        Assert.Equal(new[] { "gpe", "re-encoding", "interleaved" }, methods.Select(m => m!["method"]!.GetValue<string>()));
        foreach (var m in methods)
        {
            var at = m!["update_ms_at"]!.AsObject();
            Assert.Equal(new[] { "2", "9" }, at.Select(kv => kv.Key).OrderBy(k => int.Parse(k)));
            Assert.All(at, kv => Assert.True(kv.Value!.GetValue<double>() > 0));
            Assert.InRange(m["f1"]!.GetValue<double>(), 0, 1);
        }
        var summary = root["summary"]!;
        // The shipped model's frames attended 4 frames in training: that is the default band at W 6.
        Assert.Equal(4, summary["gpe_frame_band"]!.GetValue<int>());
        Assert.Equal(2, summary["clips"]!.GetValue<int>());
        Assert.True(summary["f1_gpe_minus_reencoding_se"]!.GetValue<double>() >= 0);
    }

    [Theory]
    [InlineData("--clips", "0")]
    [InlineData("--quality-window", "40")] // no caption would have a full window: F1 of nothing
    [InlineData("--frame-band", "all")]
    public async Task AbsurdArgumentsAreUserErrors(string option, string value)
    {
        var code = await StreamingBench.Create().Parse([option, value]).InvokeAsync();
        Assert.Equal(2, code);
    }
}
