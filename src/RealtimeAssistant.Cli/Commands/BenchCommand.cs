using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Kernels;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra bench …`: benchmarks that compare two sides measured in one process.</summary>
public static class BenchCommand
{
    static readonly List<Func<Command>> Subs = new() { Engine, PruningBench.Create, StreamingBench.Create, AppBench.Create, BudgetBench.Create, DraftBench.Create, GateBench.Create, WeightsBench.Create, ClusterBench.Create, ServeBench.Create };
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
        var model = new Option<string?>("--model", "-m") { Description = "a model folder or a Hub id, as the other commands take, instead of the random LLaVA shape: its caption prompt with one (random) image, decoded in its own cache group" };
        var kernels = new Option<string>("--kernels") { DefaultValueFactory = _ => "on", Description = "on, or off: libtorch runs every product (the reference the CPU kernels are measured against)" };
        var fusedDecode = new Option<string>("--fused-decode") { DefaultValueFactory = _ => "on", Description = "on: decode steps run every layer on the CPU kernels (the default); off: the layer path, libtorch between the kernels; compare: both in each round, in a shuffled order, and their ratio" };
        var longRows = new Option<string>("--long-rows") { DefaultValueFactory = _ => "shared-x", Description = "shared-x: under four rows of a long x (4,096+ inputs), four weight rows share each load of x (AVX-512 and AVX2; the default); per-row: one weight row at a time; compare: both in each round, in a shuffled order, and their ratio" };
        var attention = new Option<string>("--attention") { DefaultValueFactory = _ => "folded", Description = "folded: the attention kernel scores 16 keys a fold (AVX-512, heads of 16·k ≤ 128 floats; the default); per-key: a horizontal sum per key; compare: both in each round, in a shuffled order, and their ratio" };
        var prefillOutputs = new Option<string>("--prefill-outputs") { DefaultValueFactory = _ => "last", Description = "last: the prefill's last layer runs o_proj and the MLP on the one row whose logits are read (the default); all: on every row; compare: both in each round, in a shuffled order, and their ratio" };
        var isa = new Option<string>("--isa") { DefaultValueFactory = _ => "detected", Description = "the CPU kernels' instruction-set path: detected (the default), avx512, avx2 or scalar, to time a narrower CPU's path on this one (ATEN_CPU_CAPABILITY=avx2 in the environment does the same for libtorch's own ops)" };
        var family = BenchModels.Option();
        var profile = new Option<bool>("--profile") { Description = "also time decode steps op by op (every layer's weights, so memory traffic is as in a step) and print where the milliseconds go" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("engine", "Prefill and decode on a LLaVA-shaped decoder with random weights (or a model folder), beside the matmul rate and the memory read bandwidth measured in the same process.")
            { json, layers, hidden, tokens, decode, reps, model, family, profile, kernels, isa, fusedDecode, attention, longRows, prefillOutputs, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            int L = pr.GetValue(layers), D = pr.GetValue(hidden), T = pr.GetValue(tokens), N = pr.GetValue(decode), R = pr.GetValue(reps);
            if (L < 1 || D < 64 || D % 64 != 0 || T < 2 || N < 1 || R < 1)
                throw new UserError("bench engine: need --layers ≥ 1, --hidden a multiple of 64, --tokens ≥ 2, --decode ≥ 1, --reps ≥ 1");
            var dev = Model.Engine.ResolveDevice(pr.GetValue(device)!);
            WeightMatrix.KernelsEnabled = pr.GetValue(kernels) switch
            {
                "on" => true,
                "off" => false,
                var k => throw new UserError($"--kernels '{k}' is not one of on, off"),
            };
            KernelIsa? kernelPath = pr.GetValue(isa) switch
            {
                "detected" => null,
                "avx512" => KernelIsa.Avx512,
                "avx2" => KernelIsa.Avx2,
                "scalar" => KernelIsa.Scalar,
                var i => throw new UserError($"--isa '{i}' is not one of detected, avx512, avx2, scalar"),
            };
            if (kernelPath > CpuIsa.Detected) throw new UserError($"--isa {pr.GetValue(isa)}: this CPU's widest path is {CpuIsa.Detected}");
            using var forcedIsa = kernelPath is { } narrower ? CpuIsa.Force(narrower) : null;
            // Each decode switch is fixed at one value, or compared (both values in each round); one at a time.
            var fixedValues = new[] { (DecodeSwitch.Fused, fusedDecode), (DecodeSwitch.Folded, attention), (DecodeSwitch.SharedX, longRows) }
                .Select(x => x.Item1.Parse(pr.GetValue(x.Item2)!)).ToArray();
            if (fixedValues.Count(v => v is null) > 1) throw new UserError("bench engine: compare one of --fused-decode, --attention and --long-rows at a time");
            bool? lastRow = pr.GetValue(prefillOutputs) switch
            {
                "last" => true,
                "all" => false,
                "compare" => null,
                var k => throw new UserError($"--prefill-outputs '{k}' is not one of last, all, compare"),
            };
            using var _ = torch.inference_mode();
            if (pr.GetValue(model) is not null && pr.GetValue(family) is not null)
                throw new UserError("bench engine: give --model or --family, not both");
            var modelDir = pr.GetValue(family) is { } f ? BenchModels.Resolve(f, Console.Error.WriteLine) : pr.GetValue(model) is { } m ? App.AppModel.Resolve(m) : null;
            using var work = modelDir is { } dir
                ? EngineWorkload.FromModel(dir, new EngineOptions { Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!, Weights = pr.GetValue(weights)!, Report = Console.Error.WriteLine })
                : EngineWorkload.Random(L, D, T, dev, Model.Engine.ResolveDType(pr.GetValue(dtype)!, dev, "float32"), pr.GetValue(weights)!);
            var (result, steps) = RunEngine(work, N, R, pr.GetValue(profile), fixedValues, lastRow, ct);
            var table = new Table().AddColumns("metric", "value");
            foreach (var (k, v) in result)
                if (v is not IEnumerable<Dictionary<string, object>>)
                    table.AddRow(k, Markup.Escape(v switch { double d => d.ToString("0.###"), double[] a => string.Join(" / ", a), _ => v?.ToString() ?? "" }));
            AnsiConsole.Write(table);
            foreach (var p in steps) AnsiConsole.Write(p.Table());
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return Task.FromResult(0);
        });
    }

    /// <summary>A decoder and the prompt it prefills: the random LLaVA shape, or a model folder's caption prompt.</summary>
    sealed class EngineWorkload : IDisposable
    {
        public required LanguageModel Lm { get; init; }
        public required Tensor Embeds { get; init; }          // [1, T, D]
        public CacheGroup Group { get; init; } = CacheGroup.Source;
        public long DecodeStart { get; init; }                // position of the first decoded token
        public PositionIds? Positions { get; init; }          // the prompt's (M-RoPE families: t, h, w); null: 0..T-1
        public required string Description { get; init; }
        public required WeightFormat? Format { get; init; }
        public required ScalarType DType { get; init; }
        public required Device Device { get; init; }
        public IDisposable? Owner { get; init; }
        /// <summary>The loaded model folder (null: the random decoder alone).</summary>
        public Model.Engine? Engine { get; init; }
        /// <summary>Resident memory before the load, and the peak once loaded (VmRSS, VmHWM), bytes.</summary>
        public (long Before, long LoadPeak)? LoadRss { get; init; }
        /// <summary>The peak while the prompt's image was encoded and embedded (VmHWM, reset after the load), bytes.</summary>
        public long? PromptPeak { get; init; }
        public int Tokens => (int)Embeds.size(1);

        public static EngineWorkload Random(int L, int D, int T, Device dev, ScalarType dt, string weights)
        {
            var format = Model.Engine.ResolveWeights(weights, dt);
            int heads = D / 64, inter = (int)Math.Round(D * 11008.0 / 4096 / 64) * 64;
            var text = new TextConfig
            {
                VocabSize = 32064, HiddenSize = D, IntermediateSize = inter, NumHiddenLayers = L,
                NumAttentionHeads = heads, NumKeyValueHeads = heads, MaxPositionEmbeddings = 4096,
            };
            var lm = new LanguageModel(text, new TensorSpec(dev, dt));
            ModelInit.Initialize(lm, 1);
            if (format is { } f) Compaction.Apply(lm, f);
            lm.eval();
            var ids = torch.randint(0, 32000, new long[] { 1, T }, dtype: ScalarType.Int64, device: dev);
            return new EngineWorkload
            {
                Lm = lm, Embeds = lm.model.embed_tokens.forward(ids).DetachFromDisposeScope(), DecodeStart = T, Format = format, DType = dt, Device = dev, Owner = lm,
                Description = $"{L} layers, hidden {D}, intermediate {inter}, {heads} heads, {T} prompt tokens",
            };
        }

        public static EngineWorkload FromModel(string dir, EngineOptions options)
        {
            BenchModels.ResetPeak(); // the peak of loading alone, not of whatever ran before (writing a --family folder)
            var before = BenchModels.Rss();
            var engine = Model.Engine.Load(dir, options);
            var loaded = BenchModels.Rss();
            try
            {
                // The caption prompt with one noise image, as the family prepares and encodes it.
                using var image = new OpenCvSharp.Mat(336, 336, OpenCvSharp.MatType.CV_8UC3);
                OpenCvSharp.Cv2.Randu(image, OpenCvSharp.Scalar.All(0), OpenCvSharp.Scalar.All(255));
                bool reset = BenchModels.ResetPeak();
                var (embeds, positions, _, next) = new Captioner(engine).EmbedPrompt(new[] { image }, null);
                var promptPeak = reset ? BenchModels.Rss()?.Peak : null;
                var c = engine.Text;
                return new EngineWorkload
                {
                    Lm = engine.Language, Embeds = embeds.DetachFromDisposeScope(), Positions = positions, Owner = engine, Engine = engine,
                    LoadRss = before is { } b && loaded is { } l ? (b.Current, l.Peak) : null, PromptPeak = promptPeak,
                    Group = engine.GroupPositions ? CacheGroup.Target : CacheGroup.Source, DecodeStart = engine.GroupPositions ? 0 : next,
                    Format = engine.Weights, DType = engine.DType, Device = engine.Device,
                    Description = $"{dir}: {engine.Model.ModelType}, {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, intermediate {c.IntermediateSize}, {c.NumAttentionHeads} heads ({c.NumKeyValueHeads} kv), {embeds.size(1)} prompt tokens, decoding in the {(engine.GroupPositions ? "target" : "source")} group",
                };
            }
            catch { engine.Dispose(); throw; }
        }

        public void Dispose() { Embeds.Dispose(); Owner?.Dispose(); }
    }

    /// <summary>Verify blocks (a drafted caption's pass of the last token and its drafts) timed per turn, after the decode steps.</summary>
    const int VerifyBlocks = 4;

    /// <summary>
    /// A decode-step setting that `bench engine` fixes or compares: its flag's two values, the
    /// switch it sets, and the names its JSON keys take (the setting, and each side's name in the
    /// comparison's keys: `{Off}_runs_ms_per_token`, `{On}_speedup`, …).
    /// </summary>
    sealed record DecodeSwitch(string Flag, string OnValue, string OffValue, string Key, string OnLabel, string OffLabel, string On, string Off, Action<bool> Set)
    {
        public static readonly DecodeSwitch Fused = new("--fused-decode", "on", "off", "fused_decode", "on", "off (the layer path)", "fused_decode", "layer_path", v => DecoderModel.FusedDecodeEnabled = v);
        public static readonly DecodeSwitch Folded = new("--attention", "folded", "per-key", "attention", "folded", "per-key", "folded_attention", "per_key_attention", v => DecodeAttention.FoldedScores = v);
        public static readonly DecodeSwitch SharedX = new("--long-rows", "shared-x", "per-row", "long_rows", "shared-x", "per-row", "shared_x", "per_row", v => Gemv.SharedX = v);
        public static readonly DecodeSwitch[] All = [Fused, Folded, SharedX];

        /// <summary>The flag's value: true (on), false (off) or null (compare).</summary>
        public bool? Parse(string value) =>
            value == OnValue ? true : value == OffValue ? false : value == "compare" ? null
            : throw new UserError($"{Flag} '{value}' is not one of {OnValue}, {OffValue}, compare");
    }

    /// <param name="fixedValues">Each <see cref="DecodeSwitch.All"/>'s value, or null for the one compared: both values in each round, in a shuffled order.</param>
    /// <param name="lastRow">The prefill asks for the last row's hidden state only (<see cref="DecoderStep.OutputRows"/>), for every row, or null: both in each round, in a shuffled order.</param>
    static (Dictionary<string, object> Result, List<EngineProfile> Profiles) RunEngine(EngineWorkload w, int N, int R, bool profile, bool?[] fixedValues, bool? lastRow, CancellationToken ct)
    {
        using var _ = torch.inference_mode();
        var lm = w.Lm;
        var (dev, dt, format) = (w.Device, w.DType, w.Format);
        var c = lm.Config;
        int L = c.NumHiddenLayers, T = w.Tokens;
        // What a decode step reads: every matmul weight once (the token table only as a tied head).
        long weightBytes = Compaction.Units(lm).Where(u => u is not Embedding || lm.lm_head is null).Sum(u => u.Bytes);
        // The prefill's matmuls: bf16 and q8 weights in bfloat16 where the CPU has native bf16 dot products, else (and f16 weights always) widened to float32.
        var prefillDtype = format switch
        {
            WeightFormat.BF16 when dev.type != DeviceType.CPU => ScalarType.BFloat16,
            WeightFormat.BF16 or WeightFormat.Q8 when dev.type == DeviceType.CPU && CpuIsa.MultipliesBf16 => ScalarType.BFloat16,
            _ => dt,
        };
        double gflops = MatmulGflops(dev, dt);
        double prefillGflops = prefillDtype == dt ? gflops : MatmulGflops(dev, prefillDtype);
        double readGbs = MemoryReadGbs(dev);

        var positions = w.Positions ?? Enumerable.Range(0, T).Select(i => (long)i).ToArray();
        (KvCache Cache, long Next) Prefill(bool onlyLast = true)
        {
            var cache = new KvCache(L);
            using var scope = torch.NewDisposeScope();
            var h = lm.model.Forward(w.Embeds, new DecoderStep { Positions = positions, Cache = cache, OutputRows = onlyLast ? 1 : null });
            return (cache, lm.Logits(h[0, -1]).argmax().item<long>());
        }
        var prefillMs = new List<double>();
        var decodeMs = new List<double>();
        int compared = Array.IndexOf(fixedValues, null); // the decode switch compared, or -1
        var offMs = new List<double>();       // the compared switch's off side: its decode turns
        var offBlockMs = new List<double>();  // and its verify blocks
        bool sameTokens = true;
        bool phasePeaks = w.Engine is not null && BenchModels.ResetPeak();
        var order = new Random(7);
        var allRowsMs = new List<double>(); // --prefill-outputs compare: the prefills that computed every row
        var allRowsRatios = new List<double>();
        bool sameFirstToken = true, warmingUp = true;
        var blockMs = new List<double>();     // the verify blocks' ms each (drafted decoding's pass), per timed turn
        (double Prefill, double Decode, long[] Tokens, double Block) Turn(bool[] values)
        {
            for (int i = 0; i < values.Length; i++) DecodeSwitch.All[i].Set(values[i]);
            if (lastRow is null)
            {
                // Both prefills back to back, in a shuffled order: their ratio is the comparison.
                bool allFirst = order.Next(2) == 0;
                double TimeOne(bool onlyLast, out long first)
                {
                    var t0 = Stopwatch.StartNew();
                    var (c0, n0) = Prefill(onlyLast);
                    c0.Dispose();
                    first = n0;
                    return t0.Elapsed.TotalMilliseconds;
                }
                long fa = 0, fl = 0;
                double a = allFirst ? TimeOne(false, out fa) : 0, l = TimeOne(true, out fl);
                if (!allFirst) a = TimeOne(false, out fa);
                if (!warmingUp) { allRowsMs.Add(a); allRowsRatios.Add(a / l); }
                sameFirstToken &= fa == fl;
            }
            var sw = Stopwatch.StartNew();
            var (cache, next) = Prefill(lastRow != false);
            using var _c = cache;
            var pre = sw.Elapsed.TotalMilliseconds;
            var tokens = new long[N];
            sw.Restart();
            for (int s = 0; s < N; s++)
            {
                using var step = torch.NewDisposeScope();
                var x = lm.model.embed_tokens.forward(torch.tensor(new[] { next }, device: dev).view(1, 1));
                var hs = lm.model.Forward(x, new DecoderStep { Positions = new[] { w.DecodeStart + s }, Cache = cache, Group = w.Group });
                tokens[s] = next = lm.Logits(hs[0, -1]).argmax().item<long>();
            }
            double dec = sw.Elapsed.TotalMilliseconds;
            // Verify blocks as drafted decoding runs them: the last token and drafts in one pass at the end of the context, every row's logits read, then the rows trimmed.
            int rows = Math.Min(Gemv.MaxRows, N);
            sw.Restart();
            for (int b = 0; b < VerifyBlocks; b++)
            {
                using var block = torch.NewDisposeScope();
                var ids = torch.tensor(tokens.Take(rows).ToArray(), device: dev).view(1, rows);
                var hs = lm.model.Forward(lm.model.embed_tokens.forward(ids), new DecoderStep { Positions = PositionIds.Range(w.DecodeStart + N, rows), Cache = cache, Group = w.Group, OutputRows = rows });
                lm.Logits(hs[0]).argmax(-1).cpu().Dispose();
                foreach (var layer in cache.Layers) { var g = layer[w.Group]; g.Evict(g.Length - rows, rows); }
            }
            return (pre, dec, tokens, sw.Elapsed.TotalMilliseconds / VerifyBlocks);
        }
        try
        {
            for (int r = 0; r < R + 1; r++)
            {
                ct.ThrowIfCancellationRequested();
                warmingUp = r == 0;
                // The switch compared takes both values, in a shuffled order; the others their one.
                var sides = compared < 0 ? [true] : order.Next(2) == 0 ? new[] { true, false } : [false, true];
                var turns = sides.Select(on => (On: on, Result: Turn(fixedValues.Select((v, i) => i == compared ? on : v!.Value).ToArray()))).ToList();
                if (r == 0) continue; // warm-up
                foreach (var (on, t) in turns)
                {
                    if (!on) { offMs.Add(t.Decode); offBlockMs.Add(t.Block); continue; }
                    prefillMs.Add(t.Prefill); decodeMs.Add(t.Decode); blockMs.Add(t.Block);
                }
                if (turns.Count == 2) sameTokens &= turns[0].Result.Tokens.SequenceEqual(turns[1].Result.Tokens);
            }
        }
        finally { for (int i = 0; i < fixedValues.Length; i++) DecodeSwitch.All[i].Set(fixedValues[i] ?? true); }
        long? runPeak = phasePeaks ? BenchModels.Rss()?.Peak : null;
        var steps = new List<EngineProfile>();
        bool? fused = fixedValues[Array.IndexOf(DecodeSwitch.All, DecodeSwitch.Fused)];
        if (profile)
        {
            // The path the bench timed: fused steps by stage (where the model has them), the layer path op by op.
            if (fused != false)
            {
                var (cache, next) = Prefill();
                using var _c = cache;
                if (EngineProfile.RunFused(lm, cache, next, w.Group, w.DecodeStart, N) is { } f) steps.Add(f);
            }
            if (fused != true || steps.Count == 0)
            {
                var (cache, next) = Prefill();
                using var _c = cache;
                steps.Add(EngineProfile.Run(lm, cache, next, w.Group, w.DecodeStart, N));
            }
        }
        // The vision side on one stream frame (a 336² noise image as a video frame: preprocessing, tower, connector).
        var visionMs = new List<double>();
        var visionPrepareMs = new List<double>(); // of which the CPU preprocessing (resize, normalise, upload)
        if (w.Engine is { } e)
        {
            using var frame = new OpenCvSharp.Mat(336, 336, OpenCvSharp.MatType.CV_8UC3);
            OpenCvSharp.Cv2.Randu(frame, OpenCvSharp.Scalar.All(0), OpenCvSharp.Scalar.All(255));
            phasePeaks = phasePeaks && BenchModels.ResetPeak();
            for (int r = 0; r < R + 1; r++)
            {
                ct.ThrowIfCancellationRequested();
                var sw = Stopwatch.StartNew();
                using (var prepared = e.Model.Prepare(frame, ImageUse.VideoFrame))
                {
                    TokenGenerator.Sync(dev);
                    var prep = sw.Elapsed.TotalMilliseconds;
                    foreach (var enc in e.Model.Encode(new[] { prepared })) enc.Dispose();
                    TokenGenerator.Sync(dev);
                    if (r > 0) { visionMs.Add(sw.Elapsed.TotalMilliseconds); visionPrepareMs.Add(prep); }
                }
            }
        }
        long? visionPeak = phasePeaks ? BenchModels.Rss()?.Peak : null;
        double Median(List<double> v) { var s = v.OrderBy(x => x).ToList(); return s[s.Count / 2]; }
        // Each round's two turns ran back to back: the median of their ratios, not the ratio of the medians, is the comparison.
        double RoundRatio(List<double> other, List<double> mine) => Median(other.Zip(mine, (o, m) => o / m).ToList());
        var prefill = Median(prefillMs);
        var perToken = Median(decodeMs) / N;
        // Analytic FLOPs of one prefill: projections and MLP (2·T·params) plus the attention matmuls
        // (QKᵀ and PV over the causal half) and the one lm_head row.
        long D = c.HiddenSize, hd = c.HeadDim;
        double projParams = (double)L * (D * hd * (c.NumAttentionHeads * 2 + c.NumKeyValueHeads * 2) + 3.0 * D * c.IntermediateSize);
        double flops = 2 * T * projParams + L * 2.0 * 2 * c.NumAttentionHeads * hd * T * (T + 1) / 2 + 2.0 * D * c.VocabSize;
        double achieved = flops / (prefill / 1000) / 1e9;
        // The KV cache a decode step reads (keys and values of every layer, over the mean context).
        double kvBytes = 2.0 * L * c.NumKeyValueHeads * hd * (T + (N - 1) / 2.0) * torch.empty(0, dt).ElementSize;
        var result = new Dictionary<string, object>
        {
            ["device"] = dev.ToString(),
            ["dtype"] = dt.ToString(),
            ["weights"] = format?.Name() ?? WeightFormats.Of(dt)?.Name() ?? dt.ToString(),
            ["threads"] = torch.get_num_threads(),
            ["kernels"] = dev.type != DeviceType.CPU || !WeightMatrix.KernelsEnabled ? "off (libtorch)" : $"{CpuIsa.Current} on {(KernelPool.OnLibtorchThreads ? "libtorch's OpenMP threads" : ".NET's thread pool")}",
            ["config"] = w.Description,
            ["weight_mb"] = Math.Round(weightBytes / 1e6, 1),
            ["process_resident_mb"] = Math.Round(Environment.WorkingSet / 1e6),
            ["matmul_dtype"] = dt.ToString(),
            ["matmul_gflops"] = Math.Round(gflops, 2),
            ["memory_read_gbs"] = Math.Round(readGbs, 2),
            ["prefill_ms"] = Math.Round(prefill, 2),
            ["prefill_tokens_per_s"] = Math.Round(T / (prefill / 1000), 1),
            ["prefill_gflops"] = Math.Round(achieved, 2),
        };
        if (prefillDtype != dt)
        {
            result["prefill_matmul_dtype"] = prefillDtype.ToString();
            result["prefill_matmul_gflops"] = Math.Round(prefillGflops, 2);
        }
        result["prefill_fraction_of_matmul"] = Math.Round(achieved / prefillGflops, 3);
        result["decode_ms_per_token"] = Math.Round(perToken, 3);
        result["decode_tokens_per_s"] = Math.Round(1000 / perToken, 1);
        result["decode_weight_gbs"] = Math.Round(weightBytes / (perToken / 1000) / 1e9, 2);
        result["decode_fraction_of_memory_read"] = Math.Round(weightBytes / (perToken / 1000) / 1e9 / readGbs, 3);
        result["decode_kv_mb_per_token"] = Math.Round(kvBytes / 1e6, 2);
        result["prefill_runs_ms"] = prefillMs.Select(x => Math.Round(x, 1)).ToArray();
        result["decode_runs_ms_per_token"] = decodeMs.Select(x => Math.Round(x / N, 2)).ToArray();
        result["verify_block_rows"] = Math.Min(Gemv.MaxRows, N);
        result["verify_block_ms"] = Math.Round(Median(blockMs), 3);
        result["verify_block_over_step"] = Math.Round(Median(blockMs) / perToken, 2);
        result["prefill_outputs"] = lastRow switch { true => "last row", false => "every row", null => "compare" };
        if (lastRow is null)
        {
            result["prefill_ms_every_row"] = Math.Round(Median(allRowsMs), 2);
            result["prefill_last_row_speedup"] = Math.Round(Median(allRowsRatios), 3);
            result["prefill_last_row_same_token"] = sameFirstToken;
        }
        for (int i = 0; i < DecodeSwitch.All.Length; i++)
        {
            var sw = DecodeSwitch.All[i];
            result[sw.Key] = fixedValues[i] switch { true => sw.OnLabel, false => sw.OffLabel, null => "compare" };
            if (i != compared) continue;
            result[$"decode_ms_per_token_{sw.Off}"] = Math.Round(Median(offMs) / N, 3);
            result[$"{sw.Off}_runs_ms_per_token"] = offMs.Select(x => Math.Round(x / N, 2)).ToArray();
            result[$"{sw.On}_speedup"] = Math.Round(RoundRatio(offMs, decodeMs), 3);
            result[$"{sw.On}_same_tokens"] = sameTokens;
            result[$"verify_block_ms_{sw.Off}"] = Math.Round(Median(offBlockMs), 3);
            result[$"{sw.On}_block_speedup"] = Math.Round(RoundRatio(offBlockMs, blockMs), 3);
        }
        if (w.Engine is { } en)
        {
            using var frame = new OpenCvSharp.Mat(336, 336, OpenCvSharp.MatType.CV_8UC3);
            result["vision_tokens_per_frame"] = en.Model.RunLength(frame, ImageUse.VideoFrame);
            result["vision_ms_per_frame"] = Math.Round(Median(visionMs), 1);
            result["vision_runs_ms"] = visionMs.Select(x => Math.Round(x, 1)).ToArray();
            result["vision_prepare_ms_per_frame"] = Math.Round(Median(visionPrepareMs), 1);
            long all = en.WeightBytes;
            result["model_weight_mb"] = Math.Round(all / 1e6, 1);
            if (w.LoadRss is { } rss)
            {
                // Loading must not hold two copies: the peak once loaded, over the weights it holds.
                result["rss_before_load_mb"] = Math.Round(rss.Before / 1e6);
                result["peak_rss_after_load_mb"] = Math.Round(rss.LoadPeak / 1e6);
                result["peak_rss_after_load_over_weights"] = Math.Round((double)rss.LoadPeak / all, 3);
                result["load_rss_growth_over_weights"] = Math.Round((double)(rss.LoadPeak - rss.Before) / all, 3);
            }
            // Each phase's own peak (VmHWM reset as it starts): what its activations add to the weights.
            if (w.PromptPeak is { } pp) result["peak_rss_prompt_image_mb"] = Math.Round(pp / 1e6);
            if (runPeak is { } rp) result["peak_rss_prefill_decode_mb"] = Math.Round(rp / 1e6);
            if (visionPeak is { } vp) result["peak_rss_vision_frames_mb"] = Math.Round(vp / 1e6);
        }
        foreach (var p in steps) result[p.Fused ? "decode_profile_fused" : "decode_profile"] = p.Rows();
        return (result, steps);
    }

    /// <summary>The best rate of a 1024² matmul in <paramref name="dtype"/> this process gets on this device.</summary>
    static double MatmulGflops(Device dev, ScalarType dtype)
    {
        const int n = 1024;
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(n, n, dtype: dtype, device: dev); var b = torch.randn(n, n, dtype: dtype, device: dev);
        for (int i = 0; i < 3; i++) torch.matmul(a, b).Dispose();
        double best = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            TokenGenerator.Sync(dev);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 4; i++) torch.matmul(a, b).Dispose();
            TokenGenerator.Sync(dev);
            best = Math.Min(best, sw.Elapsed.TotalSeconds / 4);
        }
        return 2.0 * n * n * n / best / 1e9;
    }

    /// <summary>Memory read bandwidth: the best of five sums over 512 MB (16× this machine's L3), on the intra-op threads.</summary>
    static double MemoryReadGbs(Device dev)
    {
        using var scope = torch.NewDisposeScope();
        var big = torch.ones(128L << 20, ScalarType.Float32, dev);
        big.sum().Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            TokenGenerator.Sync(dev);
            var sw = Stopwatch.StartNew();
            big.sum().Dispose();
            TokenGenerator.Sync(dev);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return big.numel() * 4.0 / best / 1e9;
    }
}
