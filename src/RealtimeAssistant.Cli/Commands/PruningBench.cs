using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench pruning`: none, FastV, VisiPruner and VisiPruner-budget on the same frames in one process,
/// on the demo model and on a LLaVA-1.5-7B-shaped decoder (32 layers, 576 visual tokens, reduced width,
/// random weights): median prefill ms, analytic FLOPs, kept visual tokens, and caption F1 on the demo model.
/// </summary>
public static class PruningBench
{
    /// <summary>One method's row; prefill_ms, flops and speedup are null for F1-only rows (the oracle).</summary>
    /// <param name="f1_gap_se">The standard error of F1 minus none's F1, from the per-scene differences (same scenes for both).</param>
    public sealed record MethodResult(string method, double? prefill_ms, double? flops, double kept_tokens, double? f1,
        double? speedup, string schedule, double? filter_layer, double? exit_layer, double? f1_gap_se = null);
    public sealed record ConfigResult(string name, string description, int visual_tokens, int prompt_tokens, List<MethodResult> methods);

    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON (configs[].name, configs[].methods[] with method, prefill_ms, flops, kept_tokens, f1)");
        var model = new Option<string?>("--model", "-m") { Description = "demo model folder (default: media/demo-model; a demo-shaped random model if absent)" };
        var frames = new Option<int>("--frames") { DefaultValueFactory = _ => 8, Description = "frames timed per config" };
        var reps = new Option<int>("--reps") { DefaultValueFactory = _ => 3, Description = "timed repetitions per frame (after one warm-up)" };
        var scenes = new Option<int>("--scenes") { DefaultValueFactory = _ => 200, Description = "held-out scenes for caption F1 on the demo model (a 0.02 gap needs about 200)" };
        var hidden = new Option<int>("--llava-hidden") { DefaultValueFactory = _ => 1024, Description = "width of the LLaVA-shaped config (7B: 4096)" };
        var budget = new Option<int>("--budget-k") { DefaultValueFactory = _ => 0, Description = "VisiPruner-budget's k per frame (0: 12 on the demo model, 32 on the LLaVA shape)" };
        var skipLlava = new Option<bool>("--skip-llava") { Description = "only the demo model" };
        var windowFrames = new Option<int>("--window-frames") { DefaultValueFactory = _ => 4, Description = "also time the demo model on prompts of this many clip frames (a streaming window re-encoded; 1 = skip)" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var prune = new PruningOptions();
        var cmd = prune.AddTo(new Command("pruning", "Prefill time, FLOPs, kept tokens and caption F1 of none / FastV / VisiPruner / VisiPruner-budget.")
            { json, model, frames, reps, scenes, hidden, budget, skipLlava, windowFrames, device, dtype, weights });
        return cmd.WithAction((pr, ct) =>
        {
            int nf = pr.GetValue(frames), nr = pr.GetValue(reps), ns = pr.GetValue(scenes), D = pr.GetValue(hidden), k = pr.GetValue(budget);
            if (nf < 1 || nr < 1 || ns < 0 || D < 64 || D % 64 != 0 || k < 0 || pr.GetValue(windowFrames) is < 1 or > 32) throw new UserError("bench pruning: need --frames ≥ 1, --reps ≥ 1, --scenes ≥ 0, --llava-hidden a multiple of 64, --budget-k ≥ 0, --window-frames 1..32");
            var dev = Engine.ResolveDevice(pr.GetValue(device)!);
            var dt = pr.GetValue(dtype)!;
            Engine.ResolveDType(dt, dev, "float32"); // a bad --dtype fails before any work
            var results = new List<ConfigResult>();
            var dir = pr.GetValue(model) ?? Cli.FindRepoPath("media/demo-model");
            var demoSchedule = Cli.FindRepoPath("docs/pruning/demo-schedule.json");
            var demoConfig = prune.Read(pr, demoSchedule is null ? null : PruningConfig.Load(demoSchedule));
            results.Add(Demo(dir, demoConfig, nf, nr, ns, k == 0 ? 12 : k, dev, dt, 1, pr.GetValue(weights)!, ct));
            if (pr.GetValue(windowFrames) > 1)
                results.Add(Demo(dir, demoConfig, nf, nr, ns, k == 0 ? 12 : k, dev, dt, pr.GetValue(windowFrames), pr.GetValue(weights)!, ct));
            if (!pr.GetValue(skipLlava)) results.Add(LlavaShaped(D, prune.Read(pr), nf, nr, k == 0 ? 32 : k, dev, Engine.ResolveDType(dt, dev, "float32"), pr.GetValue(weights)!, ct));
            foreach (var c in results)
            {
                var t = new Table().Title($"{c.name}: {c.description}").AddColumns("method", "prefill ms", "speed-up", "GFLOPs", "kept visual", "L_f", "exit", "F1", "schedule");
                foreach (var m in c.methods)
                    t.AddRow(Markup.Escape(m.method), m.prefill_ms?.ToString("0.00") ?? "–", m.speedup is { } x ? x.ToString("0.00") + "×" : "–", m.flops is { } f ? (f / 1e9).ToString("0.000") : "–",
                        $"{m.kept_tokens:0.#}/{c.visual_tokens}", m.filter_layer?.ToString("0.#") ?? "–", m.exit_layer?.ToString("0.#") ?? "–",
                        (m.f1?.ToString("0.000") ?? "–") + (m.f1_gap_se is { } se && c.methods[0].f1 is { } f0 ? $" ({m.f1 - f0:+0.000;−0.000} ± {se:0.000})" : ""),
                        Markup.Escape(m.schedule));
                AnsiConsole.Write(t);
            }
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { configs = results });
            return Task.FromResult(0);
        });
    }

    static List<(string Name, PruningConfig Config)> Methods(PruningConfig visi, int k, bool severalFrames = false)
    {
        var methods = BaseMethods(visi, k);
        // Several frames and a schedule that spares the newest: also what dropping every frame at the exit gives.
        if (severalFrames && visi.KeepNewestFrame)
            methods.Insert(3, ("visipruner (every frame exits)", visi with { Method = "visipruner", Budget = null, KeepNewestFrame = false, OlderFramesExitLayer = null }));
        return methods;
    }

    static List<(string Name, PruningConfig Config)> BaseMethods(PruningConfig visi, int k) => new()
    {
        ("none", new PruningConfig { Method = "none" }),
        ("fastv", new PruningConfig { Method = "fastv", FastvK = visi.FastvK, FastvKeep = visi.FastvKeep }),
        ("visipruner", visi with { Method = "visipruner", Budget = null }),
        ("visipruner-budget", visi with { Method = "visipruner", Budget = visi.Budget ?? k }),
        // The same number of tokens as the budget, chosen at random after FastV's layer: is the ranking worth anything?
        ("random", new PruningConfig { Method = "random", FastvK = visi.FastvK, RandomKeep = visi.Budget ?? k, Seed = 1 }),
        // What no pruner can beat: every visual token gone after layer 0, only the text left. On a
        // small model per-operation overhead, not FLOPs, sets this ceiling.
        ("ceiling (no visual token after layer 0)", new PruningConfig { Method = "random", FastvK = 0, RandomKeep = 0, Seed = 1 }),
    };

    static string Describe(PruningConfig c) => c.Method switch
    {
        "none" => "",
        "fastv" => $"K={c.FastvK} keep={c.FastvKeep:0.##}",
        "random" => $"K={c.FastvK} keep={c.RandomKeep}",
        _ => $"s={c.ShallowLayers} thr={c.LayerThreshold}/{c.TokensThreshold}" + (c.FilterFrom is { } f ? $" from={f}" : "")
             + (c.ExitLayer is { } x ? $" exit@{x}" : $" exit≥{c.ExitThreshold}×{c.ExitPasses}") + (c.KeepNewestFrame ? $" newest kept, older exit@{c.OlderFramesExitLayer?.ToString() ?? "same"}" : "") + (c.Budget is { } b ? $" k={b} deadline={c.DeadlineLayer?.ToString() ?? "auto"}" : ""),
    };

    /// <summary>Times each method's prefill over the same inputs, interleaved in a shuffled order, and averages the accounting.</summary>
    static List<MethodResult> Time(LanguageModel lm, List<(Tensor Embeds, PositionIds Pos, List<VisualSpan> Spans)> inputs,
        List<(string Name, PruningConfig Config)> methods, int reps, Device dev, CancellationToken ct)
    {
        int L = lm.Config.NumHiddenLayers;
        var pruners = methods.Select(m => m.Config.CreatePruner(L)).ToList();
        var ms = methods.Select(_ => new List<double>()).ToList();
        var reports = methods.Select(_ => new List<PruneReport>()).ToList();
        using var _ = torch.inference_mode();
        var rng = new Random(17);
        for (int r = 0; r <= reps; r++)
            for (int i = 0; i < inputs.Count; i++)
            {
                // A fresh order each turn, so no method always runs after the same one: a method
                // runs faster after one that leaves its buffers and weights in the caches. A fixed
                // order, or one that only rotates (same neighbours), moved ratios by 5–10%.
                var order = Enumerable.Range(0, methods.Count).OrderBy(_ => rng.Next()).ToArray();
                foreach (int m in order)
                {
                    var (emb, pos, spans) = inputs[i];
                    ct.ThrowIfCancellationRequested();
                    using var scope = torch.NewDisposeScope();
                    using var cache = new KvCache(L);
                    TokenGenerator.Sync(dev);
                    var sw = Stopwatch.StartNew();
                    using var res = PrunedPrefill.Run(lm, emb, pos, spans, pruners[m], cache);
                    lm.Logits(res.Last[0]).argmax().item<long>(); // waits for the device
                    var t = sw.Elapsed.TotalMilliseconds;
                    if (r == 0) { reports[m].Add(res.Report); continue; } // warm-up (accounting is deterministic)
                    ms[m].Add(t);
                }
            }
        double Median(List<double> v) { var s = v.OrderBy(x => x).ToList(); return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2; }
        double? Avg(IEnumerable<int?> v) { var l = v.Where(x => x.HasValue).Select(x => (double)x!.Value).ToList(); return l.Count == 0 ? null : l.Average(); }
        var baseMs = Median(ms[0]);
        return methods.Select((m, i) => new MethodResult(m.Name, Math.Round(Median(ms[i]), 3), reports[i].Average(x => x.Flops),
            reports[i].Average(x => x.KeptTokens), null, Math.Round(baseMs / Median(ms[i]), 3), Describe(m.Config),
            Avg(reports[i].Select(x => x.FilterLayer)), Avg(reports[i].Select(x => x.ExitLayer)))).ToList();
    }

    /// <param name="promptFrames">1: one still frame and the caption prompt; more: a clip window of that many frames and the streaming prompt.</param>
    static ConfigResult Demo(string? dir, PruningConfig visi, int nf, int reps, int scenes, int k, Device dev, string dtype, int promptFrames, string weights, CancellationToken ct)
    {
        bool trained = dir != null;
        string tmp = "";
        if (!trained)
        {
            tmp = Path.Combine(Path.GetTempPath(), "ra-bench-demo-" + Environment.ProcessId);
            SyntheticCheckpoint.Write(tmp, DemoModelSpec.Config(), DemoModelSpec.TokenizerJson(), 7, extraConfig: DemoModelSpec.ExtraConfig(frameBand: 4));
            File.WriteAllText(Path.Combine(tmp, "preprocessor_config.json"), DemoModelSpec.Preprocessor().ToJson().ToJsonString());
            dir = tmp;
        }
        try
        {
            using var engine = Engine.Load(dir!, new EngineOptions { Device = dev.ToString(), DType = dtype, Weights = weights, Report = Console.Error.WriteLine });
            int L = engine.Text.NumHiddenLayers;
            var methods = Methods(visi, k, promptFrames > 1);
            foreach (var m in methods) m.Config.Validate(L);
            var data = new DemoDataset(DemoSplit.Eval);
            var captioner = new Captioner(engine);
            var inputs = new List<(Tensor, PositionIds, List<VisualSpan>)>();
            using (torch.inference_mode())
                for (int i = 0; i < nf; i++)
                {
                    using var s = Sample(data, i, promptFrames);
                    var (emb, pos, spans) = Embed(captioner, s);
                    inputs.Add((emb.DetachFromDisposeScope(), pos, spans));
                }
            var results = Time(engine.Language, inputs, methods, reps, dev, ct);
            if (trained && scenes > 0)
            {
                var perScene = methods.Select(m => F1Scores(engine, m.Config, scenes, promptFrames, ct)).ToList();
                var none = perScene[0].Select(f => f.F1).ToArray();
                for (int m = 0; m < methods.Count; m++)
                    results[m] = results[m] with
                    {
                        f1 = Math.Round(FactScore.Total(perScene[m]).F1, 4),
                        f1_gap_se = m == 0 || scenes < 2 ? null : Math.Round(BenchStats.PairedSe(perScene[m].Select(f => f.F1).ToArray(), none), 4),
                    };
            }
            if (trained && scenes > 0 && promptFrames == 1)
                foreach (var layer in new[] { -1, 4 })
                {
                    var (f1, kept) = OracleF1(engine, layer, scenes, ct);
                    results.Add(new MethodResult($"oracle (object patches{(layer < 0 ? "" : $" after layer {layer}")})", null, null, kept, Math.Round(f1, 4),
                        null, "F1 only: keeps the patches the scene graph says objects cover", layer, null));
                }
            var info = inputs[0];
            return new ConfigResult(promptFrames == 1 ? "demo" : $"demo-{promptFrames}-frames", trained ? $"{dir} ({L} layers, {info.Item3.Where(x => x.Frame == 0).Sum(x => x.Length)} visual tokens per frame)"
                : $"no demo model found: demo-shaped RANDOM weights ({L} layers; F1 needs the trained model)", info.Item3.Sum(s => s.Length), info.Item2.Length, results);
        }
        finally { if (tmp != "") try { Directory.Delete(tmp, true); } catch (IOException) { } }
    }

    /// <summary>
    /// F1 when exactly the patches objects cover (per the scene graph) are kept, before layer 0 or
    /// after layer <paramref name="layer"/>: the ceiling any selector could reach at that count.
    /// </summary>
    static (double F1, double Kept) OracleF1(Engine engine, int layer, int scenes, CancellationToken ct)
    {
        var data = new DemoDataset(DemoSplit.Eval);
        var opts = new GenerationOptions { MaxNewTokens = 48 };
        int grid = ((LlavaFamily)engine.Model).Config.Vision.PatchesPerSide;
        FactScore score = default;
        double kept = 0;
        for (int i = 0; i < scenes; i++)
        {
            ct.ThrowIfCancellationRequested();
            using var s = Sample(data, i, 1);
            using var t = PatchTargets.Build(s.Drawn, grid, torch.CPU);
            var on = t.OnObject.data<float>().ToArray();
            var cells = Enumerable.Range(0, on.Length).Where(c => on[c] > 0).ToHashSet();
            kept += cells.Count;
            var cap = new PrunedCaptioner(engine, new OraclePruner(cells, layer));
            var text = string.Concat(cap.Caption(s.Frames, Prompt(s), opts, new CaptionTimings()).Select(e => e.Text)).Trim();
            score += AttributeScorer.ScoreByAttribute(text, s.Target);
        }
        return (score.F1, kept / scenes);
    }

    static DemoSample Sample(DemoDataset data, int i, int frames) =>
        frames == 1 ? data.CaptionSample(i, DemoModelSpec.ImageSize) : data.StreamingSample(i, frames, DemoModelSpec.ImageSize);

    /// <summary>A demo sample's prompt: each frame's image marker and frame marker, then its own prompt.</summary>
    internal static string Prompt(DemoSample s) => string.Concat(s.Frames.Select(_ => $"<image> {DemoVocabulary.FrameMarker} ")) + s.Prompt;

    /// <summary>A demo sample's prompt embedded with its frames' visual tokens, its positions 0…, and its image spans.</summary>
    internal static (Tensor Embeds, PositionIds Positions, List<VisualSpan> Spans) Embed(Captioner captioner, DemoSample s)
    {
        var (emb, pos, spans, _) = captioner.EmbedPrompt(s.Frames, Prompt(s));
        return (emb, pos, spans);
    }

    /// <summary>Caption attribute F1 (as `ra eval` scores it) on held-out scenes or clip windows, through <see cref="PrunedCaptioner"/>.</summary>
    public static double F1(Engine engine, PruningConfig config, int scenes, int promptFrames, CancellationToken ct) =>
        FactScore.Total(F1Scores(engine, config, scenes, promptFrames, ct)).F1;

    /// <summary>Each scene's (or window's) attribute score, in scene order.</summary>
    static List<FactScore> F1Scores(Engine engine, PruningConfig config, int scenes, int promptFrames, CancellationToken ct)
    {
        var data = new DemoDataset(DemoSplit.Eval);
        var cap = new PrunedCaptioner(engine, config.CreatePruner(engine.Text.NumHiddenLayers));
        var opts = new GenerationOptions { MaxNewTokens = 48 };
        var scores = new List<FactScore>();
        for (int i = 0; i < scenes; i++)
        {
            ct.ThrowIfCancellationRequested();
            using var s = Sample(data, i, promptFrames);
            var text = string.Concat(cap.Caption(s.Frames, Prompt(s), opts, new CaptionTimings()).Select(e => e.Text)).Trim();
            scores.Add(AttributeScorer.ScoreByAttribute(text, s.Target));
        }
        return scores;
    }

    static ConfigResult LlavaShaped(int D, PruningConfig visi, int nf, int reps, int k, Device dev, ScalarType dt, string weights, CancellationToken ct)
    {
        const int L = 32, V = 576, prefix = 35, suffix = 13;
        int heads = D / 64, inter = (int)Math.Round(D * 11008.0 / 4096 / 64) * 64;
        var text = new TextConfig
        {
            VocabSize = 32064, HiddenSize = D, IntermediateSize = inter, NumHiddenLayers = L,
            NumAttentionHeads = heads, NumKeyValueHeads = heads, MaxPositionEmbeddings = 4096,
        };
        using var lm = new LanguageModel(text, new TensorSpec(dev, dt));
        ModelInit.Initialize(lm, 1);
        if (Engine.ResolveWeights(weights, dt) is { } format) Compaction.Apply(lm, format);
        lm.eval();
        int T = prefix + V + suffix;
        var spans = new List<VisualSpan> { new(prefix, V, 0) };
        var inputs = new List<(Tensor, PositionIds, List<VisualSpan>)>();
        using (torch.inference_mode())
            for (int i = 0; i < Math.Min(nf, 3); i++)
            {
                var g = new Generator((ulong)(100 + i));
                var ids = torch.randint(4, 32000, new long[] { 1, T }, dtype: ScalarType.Int64, generator: g).to(dev);
                var emb = lm.model.embed_tokens.forward(ids);
                var std = emb.std().item<float>();
                var vis = torch.randn(new long[] { 1, V, D }, generator: g).TimesNumber(std).to(dt).to(dev);
                emb = emb.index_copy(1, Rooted.Arange(prefix, prefix + V, 1, ScalarType.Int64, dev), vis).DetachFromDisposeScope();
                inputs.Add((emb, PositionIds.Range(0, T), spans));
            }
        var methods = Methods(visi with { ShallowLayers = visi.ShallowLayers, FilterFrom = visi.FilterFrom }, k);
        var results = Time(lm, inputs, methods, reps, dev, ct);
        return new ConfigResult("llava-1.5-7b-shaped", $"{L} layers, hidden {D} (7B: 4096), {heads} heads, {V} visual + {prefix + suffix} text tokens, random weights, {inputs.Count} inputs",
            V, T, results);
    }
}
