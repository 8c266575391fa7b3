using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// One family folder of tests/…/Fixtures/hf (see its README): a tiny Hub checkpoint plus what
/// transformers computed on it (expected.json and expected.safetensors). Located from the source
/// tree, since the fixtures are not copied to the test output.
/// </summary>
public sealed class HfFixture
{
    public static string Root { get; } = FindRoot();
    public string Name { get; }
    public string Dir => Path.Combine(Root, Name);
    public JsonNode Expected { get; }
    readonly SafeTensorsReader _tensors;

    public HfFixture(string name)
    {
        Name = name;
        Expected = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "expected.json")))!;
        _tensors = SafeTensorsReader.Open(Path.Combine(Dir, "expected.safetensors"));
    }

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "RealtimeAssistant.Tests", "Fixtures", "hf");
            if (Directory.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException("Fixtures/hf not found above " + AppContext.BaseDirectory);
    }

    public JsonNode Case(string name) =>
        Expected["cases"]!.AsArray().First(c => (string?)c!["name"] == name)!;

    public bool Has(string caseName, string tensor) => _tensors.Tensors.ContainsKey($"{caseName}.{tensor}");

    /// <summary>A tensor of expected.safetensors (CPU, its stored dtype).</summary>
    public Tensor Tensor(string caseName, string tensor) => _tensors.Load($"{caseName}.{tensor}");

    public static int[] Ints(JsonNode node) => node.AsArray().Select(x => (int)x!).ToArray();
    public static double[] Doubles(JsonNode node) => node.AsArray().Select(x => (double)x!).ToArray();

    /// <summary>A fixture image (path relative to Fixtures/hf) as OpenCV reads it: 8-bit BGR.</summary>
    public static Mat Image(string relative)
    {
        var m = Cv2.ImRead(Path.Combine(Root, relative), ImreadModes.Color);
        if (m.Empty()) throw new FileNotFoundException(relative);
        return m;
    }

    /// <summary>Max |a − b| over max(|b|, 1): a relative error that does not explode near zero.</summary>
    public static double RelErr(Tensor a, Tensor b)
    {
        using var _ = torch.NewDisposeScope();
        var b32 = b.to_type(ScalarType.Float64);
        var diff = (a.to_type(ScalarType.Float64) - b32).abs().max().item<double>();
        return diff / Math.Max(1.0, b32.abs().max().item<double>());
    }

    /// <summary>Logits [T, vocab] of one full forward over a prompt block (no cache).</summary>
    public static Tensor FullLogits(LanguageModel lm, MultimodalPrompt block)
    {
        using var _ = torch.inference_mode();
        var h = lm.model.Forward(block.Embed(lm), new DecoderStep { Positions = block.Positions });
        return lm.Logits(h[0]);
    }

    /// <summary>
    /// Greedy decoding as HF's generate(do_sample=False) does it: the prompt through the KV cache, then
    /// one token at a time at the next positions (or from <paramref name="firstPosition"/>: group
    /// positions). Returns the tokens and the logits behind each.
    /// </summary>
    public static (int[] Tokens, Tensor StepLogits) Greedy(LanguageModel lm, MultimodalPrompt block, int steps, long? firstPosition = null)
    {
        using var _ = torch.inference_mode();
        using var cache = new KvCache(lm.Config.NumHiddenLayers);
        var h = lm.model.Forward(block.Embed(lm), new DecoderStep { Positions = block.Positions, Cache = cache });
        var logits = new List<Tensor> { lm.Logits(h[0, -1]) };
        var tokens = new List<int>();
        long pos = firstPosition ?? block.NextPosition;
        for (int s = 0; s < steps; s++)
        {
            int id = (int)logits[^1].argmax().item<long>();
            tokens.Add(id);
            if (s == steps - 1) break;
            var ids = torch.tensor(new long[] { id }).view(1, 1);
            h = lm.model.Forward(lm.model.embed_tokens.forward(ids), new DecoderStep { Positions = new[] { pos++ }, Cache = cache });
            logits.Add(lm.Logits(h[0, -1]));
        }
        return (tokens.ToArray(), torch.stack(logits.ToArray(), 0));
    }

    /// <summary>
    /// Greedy tokens agree with HF's: equal up to the first step whose HF top-2 margin is within
    /// <paramref name="margin"/> (a tie there may flip without a bug), and at least the first token.
    /// </summary>
    public static void AssertGreedy(int[] expected, double[] margins, int[] actual, double margin = 1e-3)
    {
        int n = expected.Length;
        for (int i = 0; i < expected.Length; i++) if (margins[i] < margin) { n = i; break; }
        Assert.True(n >= 1, "the fixture's first greedy step is a near tie");
        Assert.Equal(expected[..n], actual[..n]);
    }
}
