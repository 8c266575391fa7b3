using System.Text.Json.Nodes;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Tests.Capture;
using TorchSharp;
using static TorchSharp.torch;
using RaCli = RealtimeAssistant.Cli.Cli;

namespace RealtimeAssistant.Tests.Cli;

/// <summary>
/// `ra bench … --family F`: the folder made from a real checkpoint's Hub config and the family's
/// tiny fixture (stand-in tokenizer). Its config must keep the Hub's sizes with the stand-in's
/// special-token ids, describe the real parameter count, and load through Engine.Load.
/// </summary>
public class BenchModelsTests(ITestOutputHelper log)
{
    static string Fixtures => RaCli.FindRepoPath(BenchModels.FixturesPath) ?? throw new InvalidOperationException($"{BenchModels.FixturesPath} is missing");

    public static TheoryData<string> Families => new(BenchModels.Families.Select(f => f.Name));

    static JsonObject HubConfig(BenchModels.Family f)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures, "hub-configs", f.HubConfig + ".json")))!.AsObject();
        return json.First(kv => kv.Key == "config.json" || kv.Key.StartsWith("config.json (", StringComparison.Ordinal)).Value!.AsObject();
    }

    static IEnumerable<(string Path, JsonNode? Value)> Leaves(JsonObject o, string prefix = "")
    {
        foreach (var (k, v) in o)
            if (v is JsonObject child) foreach (var l in Leaves(child, prefix + k + ".")) yield return l;
            else yield return (prefix + k, v);
    }

    static JsonNode? At(JsonObject o, string path)
    {
        JsonNode? n = o;
        foreach (var part in path.Split('.')) n = n is JsonObject obj && obj.TryGetPropertyValue(part, out var c) ? c : null;
        return n;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Config_KeepsTheHubSizes_WithTheStandInTokenizersSpecialTokenIds(string name)
    {
        var family = BenchModels.Find(name);
        var hub = HubConfig(family);
        var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures, family.Fixture, "config.json")))!.AsObject();
        var config = BenchModels.Config(family, Fixtures, tiny: false);

        // Every Hub value that is not a token id is kept (sizes, depths, vocab_size, rope settings).
        int sizes = 0;
        foreach (var (path, value) in Leaves(hub).Where(l => !BenchModels.IsTokenId(l.Path.Split('.')[^1])))
        {
            Assert.True(JsonNode.DeepEquals(value, At(config, path)), $"{path}: hub {value?.ToJsonString()}, written {At(config, path)?.ToJsonString()}");
            sizes++;
        }
        Assert.True(sizes > 10);
        // Every special-token id the fixture's config names is the stand-in's, and that token exists in its tokenizer.
        var tokenizer = TextTokenizer.Load(Path.Combine(Fixtures, family.Fixture));
        var ids = Leaves(fixture).Where(l => BenchModels.IsTokenId(l.Path.Split('.')[^1]) && l.Value is JsonValue).ToList();
        Assert.NotEmpty(ids);
        foreach (var (path, value) in ids)
        {
            Assert.True(JsonNode.DeepEquals(value, At(config, path)), $"{path}: fixture {value?.ToJsonString()}, written {At(config, path)?.ToJsonString()}");
            Assert.NotNull(tokenizer.IdToTokenOrNull((int)value!));
        }
        // No Hub token id survives (each would name a token the stand-in does not have).
        foreach (var (path, _) in Leaves(config).Where(l => BenchModels.IsTokenId(l.Path.Split('.')[^1])))
            Assert.True(ids.Any(i => i.Path == path), $"{path} is not rewritten");
    }

    /// <summary>
    /// The Hub configs' module trees hold the checkpoints' parameter counts as the Hub lists them
    /// (shapes only: nothing is resident). The OneVision config is reconstructed: within 0.5% of its 0.89B.
    /// </summary>
    [Theory]
    [InlineData("qwen2_vl", 2_208_985_600L, 0.0)]
    [InlineData("qwen2_5_vl", 3_754_622_976L, 0.0)]
    [InlineData("smolvlm", 256_484_928L, 0.0)]
    [InlineData("llava_onevision", 894_000_000L, 0.005)]
    public void Skeleton_AtHubSizes_HasThePublishedParameterCount(string name, long published, double tolerance)
    {
        var dir = TestMedia.TempDir("benchmodel-" + name);
        try
        {
            BenchModels.WriteFiles(BenchModels.Find(name), Fixtures, dir, tiny: false);
            var (module, _) = ModelFamilies.Skeleton(dir, new TensorSpec(CPU, ScalarType.BFloat16));
            long count;
            using (module) count = module.parameters().Sum(p => p.numel());
            log.WriteLine($"{name}: {count:N0} parameters");
            Assert.InRange(count, (long)(published * (1 - tolerance)), (long)(published * (1 + tolerance)));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void TinyVariant_LoadsThroughEngineLoad_WithItsRandomWeights(string name)
    {
        var family = BenchModels.Find(name);
        var dir = Path.Combine(TestMedia.TempDir("benchmodel-" + name), family.HubConfig);
        try
        {
            var bytes = BenchModels.Synthesize(family, Fixtures, dir, tiny: true);
            var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model.safetensors.index.json")))!;
            Assert.Equal(bytes, (long)index["metadata"]!["total_size"]!);
            Assert.False(Directory.Exists(dir + ".partial"));
            // Its bf16 files load as they are (--weights auto); dense float32 below, to read the values.
            using (var auto = Engine.Load(dir))
                Assert.Equal("bf16", auto.WeightsName);
            using var engine = Engine.Load(dir, new EngineOptions { Weights = "f32" });
            Assert.Equal(name, engine.Model.ModelType);
            // The hub's key set, the fixture's sizes.
            var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures, family.Fixture, "config.json")))!;
            var text = fixture["text_config"] ?? fixture;
            Assert.Equal((int)text["num_hidden_layers"]!, engine.Text.NumHiddenLayers);
            Assert.Equal((int)text["hidden_size"]!, engine.Text.HiddenSize);
            // Loaded as the engine's dtype from bf16 files: matrices N(0, 0.02²), norm scales 1.
            using var _ = torch.inference_mode();
            var embed = engine.Language.model.embed_tokens.weight;
            Assert.Equal(ScalarType.Float32, embed.dtype);
            Assert.InRange(embed.std().item<float>(), 0.018f, 0.022f);
            var norm = engine.Language.model.norm.weight;
            Assert.True(norm.eq(1).all().item<bool>());
            // It captions (random text) through its chat template and stand-in tokenizer.
            using var image = new OpenCvSharp.Mat(40, 30, OpenCvSharp.MatType.CV_8UC3, OpenCvSharp.Scalar.All(90));
            var tokens = new Captioner(engine).Caption(new[] { image }, null, new GenerationOptions { MaxNewTokens = 3, StopTokens = Array.Empty<int>() }, new CaptionTimings()).ToList();
            Assert.Equal(3, tokens.Count(t => t.Id >= 0));
        }
        finally { Directory.Delete(Path.GetDirectoryName(dir)!, true); }
    }
}
