using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra bench …`: benchmarks that compare two sides measured in one process.</summary>
public static class BenchCommand
{
    static readonly List<Func<Command>> Subs = new() { Engine, PruningBench.Create, StreamingBench.Create, AppBench.Create, BudgetBench.Create, ClusterBench.Create };
    public static void Add(Func<Command> sub) => Subs.Add(sub);

    public static Command Create()
    {
        var cmd = new Command("bench", "Benchmarks (engine, …); each prints a table and can write JSON.");
        foreach (var s in Subs) cmd.Subcommands.Add(s());
        return cmd;
    }

    static Command Engine()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 32, Description = "decoder layers (LLaVA-1.5-7B: 32)" };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 1024, Description = "decoder width (7B: 4096; reduced here for 2 CPU cores)" };
        var tokens = new Option<int>("--tokens") { DefaultValueFactory = _ => 624, Description = "prompt tokens (576 visual + text, as LLaVA-1.5)" };
        var decode = new Option<int>("--decode") { DefaultValueFactory = _ => 32, Description = "decode steps" };
        var reps = new Option<int>("--reps") { DefaultValueFactory = _ => 3 };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("engine", "Prefill and decode tokens/s on a LLaVA-shaped decoder with random weights, against fp32 matmul GFLOP/s in the same process.")
            { json, layers, hidden, tokens, decode, reps, device, dtype };
        return cmd.WithAction((pr, ct) =>
        {
            int L = pr.GetValue(layers), D = pr.GetValue(hidden), T = pr.GetValue(tokens), N = pr.GetValue(decode), R = pr.GetValue(reps);
            if (L < 1 || D < 64 || D % 64 != 0 || T < 2 || N < 1 || R < 1)
                throw new UserError("bench engine: need --layers ≥ 1, --hidden a multiple of 64, --tokens ≥ 2, --decode ≥ 1, --reps ≥ 1");
            var dev = Model.Engine.ResolveDevice(pr.GetValue(device)!);
            var dt = Model.Engine.ResolveDType(pr.GetValue(dtype)!, dev, "float32");
            var result = RunEngine(L, D, T, N, R, dev, dt, ct);
            var table = new Table().AddColumns("metric", "value");
            foreach (var (k, v) in result) table.AddRow(k, v is double d ? d.ToString("0.###") : v?.ToString() ?? "");
            AnsiConsole.Write(table);
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return Task.FromResult(0);
        });
    }

    static Dictionary<string, object> RunEngine(int L, int D, int T, int N, int R, Device dev, ScalarType dt, CancellationToken ct)
    {
        using var _ = torch.inference_mode();
        // Matmul reference: the best fp32 GEMM rate this process gets on this device.
        double gflops;
        {
            const int n = 1024;
            var a = torch.randn(n, n, device: dev); var b = torch.randn(n, n, device: dev);
            for (int i = 0; i < 3; i++) torch.matmul(a, b).Dispose();
            TokenGenerator.Sync(dev);
            int reps = 20;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) torch.matmul(a, b).Dispose();
            TokenGenerator.Sync(dev);
            gflops = 2.0 * n * n * n * reps / sw.Elapsed.TotalSeconds / 1e9;
        }
        int heads = D / 64, inter = (int)Math.Round(D * 11008.0 / 4096 / 64) * 64;
        var text = new TextConfig
        {
            VocabSize = 32064, HiddenSize = D, IntermediateSize = inter, NumHiddenLayers = L,
            NumAttentionHeads = heads, NumKeyValueHeads = heads, MaxPositionEmbeddings = 4096,
        };
        using var lm = new LanguageModel(text, new TensorSpec(dev, dt));
        ModelInit.Initialize(lm, 1);
        lm.eval();
        var positions = Enumerable.Range(0, T).Select(i => (long)i).ToArray();
        var ids = torch.randint(0, 32000, new long[] { 1, T }, dtype: ScalarType.Int64, device: dev);
        var prefillMs = new List<double>();
        var decodeMs = new List<double>();
        for (int r = 0; r < R + 1; r++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            using var cache = new KvCache(L);
            var sw = Stopwatch.StartNew();
            var h = lm.model.Forward(lm.model.embed_tokens.forward(ids), new DecoderStep { Positions = positions, Cache = cache });
            var next = lm.Logits(h[0, -1]).argmax().item<long>();
            var pre = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            for (int s = 0; s < N; s++)
            {
                using var step = torch.NewDisposeScope();
                var x = lm.model.embed_tokens.forward(torch.tensor(new[] { next }, device: dev).view(1, 1));
                var hs = lm.model.Forward(x, new DecoderStep { Positions = new[] { (long)(T + s) }, Cache = cache });
                next = lm.Logits(hs[0, -1]).argmax().item<long>();
            }
            var dec = sw.Elapsed.TotalMilliseconds;
            if (r == 0) continue; // warm-up
            prefillMs.Add(pre); decodeMs.Add(dec);
        }
        double Median(List<double> v) { var s = v.OrderBy(x => x).ToList(); return s[s.Count / 2]; }
        var prefill = Median(prefillMs);
        var decodeTotal = Median(decodeMs);
        // Analytic FLOPs of one prefill: projections and MLP (2·T·params) plus the attention matmuls
        // (QKᵀ and PV over the causal half) and the one lm_head row.
        double projParams = (double)L * (4.0 * D * D + 3.0 * D * inter);
        double flops = 2 * T * projParams + L * 2.0 * 2 * D * T * (T + 1) / 2 + 2.0 * D * text.VocabSize;
        double achieved = flops / (prefill / 1000) / 1e9;
        return new Dictionary<string, object>
        {
            ["device"] = dev.ToString(),
            ["dtype"] = dt.ToString(),
            ["threads"] = torch.get_num_threads(),
            ["config"] = $"{L} layers, hidden {D}, intermediate {inter}, {heads} heads, {T} prompt tokens",
            ["matmul_gflops"] = Math.Round(gflops, 2),
            ["prefill_ms"] = Math.Round(prefill, 2),
            ["prefill_tokens_per_s"] = Math.Round(T / (prefill / 1000), 1),
            ["prefill_gflops"] = Math.Round(achieved, 2),
            ["prefill_fraction_of_matmul"] = Math.Round(achieved / gflops, 3),
            ["decode_ms_per_token"] = Math.Round(decodeTotal / N, 3),
            ["decode_tokens_per_s"] = Math.Round(N / (decodeTotal / 1000), 1),
        };
    }
}
