using System.CommandLine;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Kernels;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench weights`: one model loaded once per weight format, in one process, each captioning
/// the same frame in turn (a new frame and a new shuffled order each round). Reports the vision
/// encoder's, the prefill's and a decode step's time per format, each format's ratio to the
/// first one per round (paired: a slow spell lands on both), and whether the greedy tokens agree.
/// `auto` is measured as what it resolves to on this machine, which is what every command loads.
/// </summary>
public static class WeightsBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON (formats[], ratios[])");
        var model = new Option<string?>("--model", "-m") { Description = "a model folder or a Hub id, as the other commands take (default: --family qwen2_vl)" };
        var family = BenchModels.Option();
        var formats = new Option<string[]>("--formats") { DefaultValueFactory = _ => new[] { "f32", "auto" }, AllowMultipleArgumentsPerToken = true, Description = "weight formats to load, each as --weights takes it; ratios are to the first" };
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 5, Description = "timed rounds (after one untimed), each a new frame" };
        var size = new Option<int[]>("--frame-size") { DefaultValueFactory = _ => new[] { 640, 360 }, AllowMultipleArgumentsPerToken = true, Description = "WIDTH HEIGHT of the generated camera frames" };
        var maxTokens = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 16, Description = "decode steps a caption (random weights rarely stop early)" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var noBf16 = new Option<bool>("--no-bf16-matmul") { Description = "as on a CPU without native bfloat16 products: bf16 and q8 prefills multiply their weights widened to float32 (auto still keeps a bf16 checkpoint's own weights)" };
        var cmd = new Command("weights", "One model in several weight formats (f32, bf16, f16, q8, auto), taking turns on the same frames in one process: vision, prefill and decode times, their ratios, and whether the tokens agree.")
            { json, model, family, formats, rounds, size, maxTokens, device, dtype, noBf16 };
        return cmd.WithAction((pr, ct) =>
        {
            var specs = pr.GetValue(formats)!.Select(f => f.Trim().ToLowerInvariant()).ToArray();
            if (specs.Length < 2 || specs.Distinct().Count() != specs.Length) throw new UserError("--formats takes two or more different formats (auto, f32, bf16, f16, q8)");
            foreach (var s in specs.Where(s => s != "auto")) WeightFormats.Parse(s);
            int R = pr.GetValue(rounds), tokens = pr.GetValue(maxTokens);
            if (R is < 1 or > 1000) throw new UserError($"--rounds must be 1..1000, got {R}");
            if (tokens is < 1 or > 4096) throw new UserError($"--max-new-tokens must be 1..4096, got {tokens}");
            var wh = pr.GetValue(size)!;
            if (wh.Length != 2 || wh.Any(v => v is < 16 or > 4096)) throw new UserError("--frame-size takes WIDTH HEIGHT, each 16..4096");
            if (pr.GetValue(family) is not null && pr.GetValue(model) is not null) throw new UserError("bench weights: give --model or --family, not both");
            var dir = pr.GetValue(model) is { } m ? App.AppModel.Resolve(m) : BenchModels.Resolve(pr.GetValue(family) ?? "qwen2_vl", Console.Error.WriteLine);

            using var simulated = pr.GetValue(noBf16) ? CpuIsa.ForceNoBf16Matmul() : null;
            var engines = new List<Engine>();
            try
            {
                foreach (var s in specs)
                    engines.Add(Engine.Load(dir, new EngineOptions { Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!, Weights = s }));
                var result = Run(engines, specs, R, wh[0], wh[1], tokens, ct);
                result["bf16_matmul"] = CpuIsa.MultipliesBf16 ? "native" : CpuIsa.HasBf16Matmul ? "off (--no-bf16-matmul)" : "none on this CPU";
                result["model"] = pr.GetValue(model) is null ? pr.GetValue(family) ?? "qwen2_vl" : Path.GetFileName(Path.GetFullPath(dir));
                Print(result);
                if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            }
            finally { foreach (var e in engines) e.Dispose(); }
            return Task.FromResult(0);
        });
    }

    sealed class Side(string spec, Engine engine)
    {
        public string Spec { get; } = spec;
        public Engine Engine { get; } = engine;
        public List<double> VisionMs { get; } = new();
        public List<double> PrefillMs { get; } = new();
        public List<double> DecodeMs { get; } = new();
        public List<int[]> Tokens { get; } = new();
        public int PromptTokens;
    }

    static Dictionary<string, object?> Run(List<Engine> engines, string[] specs, int rounds, int width, int height, int maxTokens, CancellationToken ct)
    {
        var sides = specs.Zip(engines, (s, e) => new Side(s, e)).ToArray();
        var options = new GenerationOptions { MaxNewTokens = maxTokens };
        var rng = new Random(23);
        // Round 0 is untimed: the first caption of each engine pays for JIT and first allocations.
        for (int r = 0; r <= rounds; r++)
        {
            ct.ThrowIfCancellationRequested();
            var clip = ClipGenerator.Generate(7_000_001 + 2 * r, 1, 15);
            using var frame = clip.Render(7, width, height);
            foreach (var side in sides.OrderBy(_ => rng.Next()).ToArray())
            {
                var timings = new CaptionTimings();
                var ids = new Captioner(side.Engine).Caption(frame, null, options, timings).Where(t => t.Id >= 0).Select(t => t.Id).ToArray();
                if (r == 0) continue;
                side.VisionMs.Add(timings.VisionMs);
                side.PrefillMs.Add(timings.PrefillMs);
                side.PromptTokens = timings.PromptTokens;
                // A step's time: the median of the caption's steps after its first (which returns the prefill's token).
                side.DecodeMs.Add(BenchStats.Percentile(timings.DecodeMs.Skip(1).DefaultIfEmpty(double.NaN), 0.5));
                side.Tokens.Add(ids);
            }
        }
        var first = sides[0];
        static double Median(IEnumerable<double> v) => Math.Round(BenchStats.Percentile(v, 0.5), 3);
        static double MedianRatio(List<double> a, List<double> b) => Math.Round(BenchStats.Percentile(a.Zip(b, (x, y) => x / y), 0.5), 4);
        return new Dictionary<string, object?>
        {
            ["rounds"] = rounds, ["frame"] = $"{width}x{height}", ["max_new_tokens"] = maxTokens,
            ["formats"] = sides.Select(s => new Dictionary<string, object?>
            {
                ["format"] = s.Spec, ["loaded_as"] = s.Engine.WeightsName, ["dtype"] = s.Engine.DType.ToString(),
                ["weight_mb"] = Math.Round(s.Engine.WeightBytes / 1e6, 1),
                ["prompt_tokens"] = s.PromptTokens,
                ["vision_ms_p50"] = Median(s.VisionMs), ["prefill_ms_p50"] = Median(s.PrefillMs), ["decode_ms_per_token_p50"] = Median(s.DecodeMs),
                ["vision_ms"] = s.VisionMs.Select(v => Math.Round(v, 2)).ToArray(), ["prefill_ms"] = s.PrefillMs.Select(v => Math.Round(v, 2)).ToArray(),
                ["decode_ms_per_token"] = s.DecodeMs.Select(v => Math.Round(v, 3)).ToArray(),
            }).ToList(),
            // Per round, this format's time over the first format's; the median of the rounds.
            ["ratios"] = sides.Skip(1).Select(s => new Dictionary<string, object?>
            {
                ["format"] = s.Spec, ["to"] = first.Spec,
                ["vision"] = MedianRatio(s.VisionMs, first.VisionMs), ["prefill"] = MedianRatio(s.PrefillMs, first.PrefillMs),
                ["decode_step"] = MedianRatio(s.DecodeMs, first.DecodeMs),
                ["read"] = MedianRatio(s.VisionMs.Zip(s.PrefillMs, (v, p) => v + p).ToList(), first.VisionMs.Zip(first.PrefillMs, (v, p) => v + p).ToList()),
                ["tokens_equal_rounds"] = s.Tokens.Zip(first.Tokens).Count(p => p.First.SequenceEqual(p.Second)),
                ["first_token_equal_rounds"] = s.Tokens.Zip(first.Tokens).Count(p => p.First.Length > 0 && p.Second.Length > 0 && p.First[0] == p.Second[0]),
            }).ToList(),
        };
    }

    static void Print(Dictionary<string, object?> r)
    {
        var t = new Table().AddColumns("--weights", "loaded as", "weights MB", "vision ms p50", "prefill ms p50", "decode ms/token p50");
        foreach (var s in (List<Dictionary<string, object?>>)r["formats"]!)
            t.AddRow($"{s["format"]}", $"{s["loaded_as"]} ({s["dtype"]})", $"{s["weight_mb"]:N1}", $"{s["vision_ms_p50"]:N1}", $"{s["prefill_ms_p50"]:N1}", $"{s["decode_ms_per_token_p50"]:N2}");
        AnsiConsole.Write(t);
        Console.WriteLine($"bfloat16 GEMM: {r["bf16_matmul"]}");
        foreach (var q in (List<Dictionary<string, object?>>)r["ratios"]!)
            Console.WriteLine($"{q["format"]} / {q["to"]}, median of {r["rounds"]} rounds: vision ×{q["vision"]:0.###}, prefill ×{q["prefill"]:0.###}, " +
                $"a read (vision + prefill) ×{q["read"]:0.###}, a decode step ×{q["decode_step"]:0.###}; greedy tokens equal in {q["tokens_equal_rounds"]} of {r["rounds"]} rounds (first token in {q["first_token_equal_rounds"]})");
    }
}
