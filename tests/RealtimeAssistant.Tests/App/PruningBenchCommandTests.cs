using System.Text.Json.Nodes;
using RealtimeAssistant.Cli.Commands;

namespace RealtimeAssistant.Tests.App;

/// <summary>`ra bench pruning` end to end on the shipped model, shrunk to seconds: the JSON the issue specifies.</summary>
public class PruningBenchCommandTests
{
    [Fact]
    public async Task WritesEveryMethodsPrefillFlopsKeptTokensAndF1()
    {
        var json = Path.Combine(Capture.TestMedia.TempDir("bench-prune"), "p.json");
        var code = await PruningBench.Create().Parse(["--skip-llava", "--window-frames", "1", "--frames", "1", "--reps", "1", "--scenes", "2", "--json", json]).InvokeAsync();
        Assert.Equal(0, code);
        var demo = JsonNode.Parse(File.ReadAllText(json))!["configs"]!.AsArray().Single()!;
        Assert.Equal("demo", demo["name"]!.GetValue<string>());
        var methods = demo["methods"]!.AsArray().ToDictionary(m => m!["method"]!.GetValue<string>(), m => m!);
        Assert.Subset(methods.Keys.ToHashSet(), new HashSet<string> { "none", "fastv", "visipruner", "visipruner-budget", "random", "ceiling (no visual token after layer 0)" });
        foreach (var name in new[] { "none", "fastv", "visipruner", "visipruner-budget", "random" })
        {
            var m = methods[name];
            Assert.True(m["prefill_ms"]!.GetValue<double>() > 0);
            Assert.True(m["flops"]!.GetValue<double>() > 0);
            Assert.InRange(m["kept_tokens"]!.GetValue<double>(), 0, 64);
            Assert.InRange(m["f1"]!.GetValue<double>(), 0, 1);
        }
        // The ceiling keeps nothing after layer 0 and costs the fewest FLOPs of all.
        var ceiling = methods["ceiling (no visual token after layer 0)"];
        Assert.Equal(0, ceiling["kept_tokens"]!.GetValue<double>());
        Assert.True(methods.Values.Where(m => m["flops"] is not null).All(m => m["flops"]!.GetValue<double>() >= ceiling["flops"]!.GetValue<double>()));
        // Budget mode keeps at most its k (12 on the demo model).
        Assert.True(methods["visipruner-budget"]["kept_tokens"]!.GetValue<double>() <= 12);
    }
}
