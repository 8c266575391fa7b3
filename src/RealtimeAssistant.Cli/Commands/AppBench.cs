using System.CommandLine;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench app`: the whole app under load, GPE against re-encoding in one process — the demo
/// video looped in real time, the model captioning back to back, the overlay rendered headless at
/// display rate — the modes taking turns in rounds (a fresh shuffled order each round), each turn
/// with its own warm-up that counts toward nothing. Per mode: render fps and p99 frame time,
/// caption rate, glass-to-caption p50/p95, dropped frames, RSS at the start and end, and caption
/// F1 against the scene graph on held-out generated clips. The top-level keys are the default
/// mode's (GPE), as before; modes[] has both.
/// </summary>
public static class AppBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var seconds = new Option<double>("--seconds") { Description = "measured time per mode, split over the rounds", DefaultValueFactory = _ => 60 };
        var warmup = new Option<double>("--warmup") { Description = "seconds at the start of each turn that count toward nothing (allocator, caches, the governor's first reads)", DefaultValueFactory = _ => 8 };
        var rounds = new Option<int>("--rounds") { Description = "turns per mode (modes alternate in a shuffled order each round)", DefaultValueFactory = _ => 3 };
        var modes = new Option<string>("--modes") { Description = "modes to compare, comma-separated: gpe, reencode", DefaultValueFactory = _ => "gpe,reencode" };
        var source = new Option<string?>("--source") { Description = "video source (default: the bundled media/demo.mp4, looped in real time)" };
        var fps = Cli.DisplayFpsOption();
        var threads = Cli.ThreadsOption("torch threads for the model (default: 1 for a model of width ≤ 128, else all cores)");
        var clips = new Option<int>("--f1-clips") { Description = "held-out generated clips each mode's captions are scored on (0: skip F1)", DefaultValueFactory = _ => 24 };
        var model = AppModel.ModelOption();
        var family = BenchModels.Option();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var rt = new RealtimeFlags("finished", questions: false);
        var cmd = new Command("app", "The app end to end, GPE vs re-encoding taking turns: render fps and p99 frame time while captioning, caption rate, glass-to-caption p50/p95, dropped frames, RSS, F1 on held-out clips.")
            { json, seconds, warmup, rounds, modes, source, fps, threads, clips, model, family, device, dtype, weights };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            var spec = pr.GetValue(source) ?? Cli.FindRepoPath(DemoCommand.DemoVideo) ?? throw new UserError($"{DemoCommand.DemoVideo} not found; pass --source");
            double measure = pr.GetValue(seconds), warm = pr.GetValue(warmup);
            int nRounds = pr.GetValue(rounds), nClips = pr.GetValue(clips);
            if (!(measure > 0) || !(warm >= 0)) throw new UserError("--seconds must be > 0 and --warmup ≥ 0");
            if (nRounds is < 1 or > 100) throw new UserError($"--rounds must be 1..100, got {nRounds}");
            if (nClips is < 0 or > 10_000) throw new UserError($"--f1-clips must be 0..10000, got {nClips}");
            if (pr.GetValue(fps) is not (> 0 and <= 1000)) throw new UserError("--display-fps must be in (0, 1000]");
            var modeList = pr.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(SessionModes.Parse).Distinct().ToList();
            if (modeList.Count == 0) throw new UserError("--modes names no mode");
            rt.Check(pr);
            double sourceFps;
            using (var probe = FrameSources.Open(spec, AppSources.Options())) sourceFps = probe.Fps;
            string modelDir;
            if (pr.GetValue(family) is { } fam)
            {
                if (pr.GetValue(model) is not null) throw new UserError("bench app: give --model or --family, not both");
                if (nClips > 0) throw new UserError("bench app --family: random weights caption nothing a scene graph can score; add --f1-clips 0");
                modelDir = BenchModels.Resolve(fam, Console.Error.WriteLine);
            }
            else modelDir = AppModel.Resolve(pr.GetValue(model));
            using var engine = Engine.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights) with { Threads = pr.GetValue(threads) });
            var runs = modeList.ToDictionary(m => m, _ => new List<LiveStats>());
            var rng = new Random(17);
            Console.Error.WriteLine($"bench app: {spec} looped in real time; {string.Join(" vs ", modeList)}, {nRounds} rounds of {warm:0} s warm-up + {measure / nRounds:0} s measured each…");
            for (int r = 0; r < nRounds && !ct.IsCancellationRequested; r++)
                foreach (var mode in modeList.OrderBy(_ => rng.Next()).ToList())
                {
                    var run = rt.Resolve(pr, engine, sourceFps, Pacing.Live) with { };
                    using var session = SessionModes.Create(mode, engine, run.Streaming);
                    var stats = LiveApp.Run(null, new LiveAppOptions
                    {
                        Source = spec, Loop = true, Realtime = true, DisplayFps = pr.GetValue(fps), ShowHud = true,
                        Duration = TimeSpan.FromSeconds(warm + measure / nRounds), WarmupSeconds = warm, ProfileWindow = 1 << 15,
                    }, session, run.Loop, ct);
                    if (stats.Error is not null) throw new UserError(stats.Error);
                    runs[mode].Add(stats);
                    Console.Error.WriteLine($"  round {r + 1} {mode}: {stats.CaptionHz:0.00} captions/s, glass-to-caption p95 {stats.LatencyP95:0} ms, render {stats.RenderFps:0.0} fps");
                }
            var f1 = new Dictionary<string, ClipScore>();
            if (nClips > 0)
                foreach (var mode in modeList)
                {
                    var run = rt.Resolve(pr, engine, AppSources.SyntheticFps, Pacing.Headless, "every:3");
                    // A governed run's F1 is scored at the rungs its timed turns read: headless, with
                    // no renderer beside it, the pass's own governor would read gentler ones.
                    var timed = runs[mode].SelectMany(t => t.LevelsMeasured).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value));
                    f1[mode] = ClipF1(engine, mode, run, nClips, ct, run.Loop.Driver.FrameBudgetMs is null || timed.Count == 0 ? null : timed);
                }
            var perMode = modeList.Select(m => Summary(m, runs[m], f1.TryGetValue(m, out var v) ? v : null)).ToList();
            var result = new Dictionary<string, object?>(perMode[0]) { ["modes"] = perMode };
            result.Remove("mode");
            result["default_mode"] = modeList[0];
            result["source"] = spec;
            result["display_fps_target"] = pr.GetValue(fps);
            result["rounds"] = nRounds;
            result["warmup_s_per_turn"] = warm;
            result["cores"] = Environment.ProcessorCount;
            result["torch_threads"] = TorchSharp.torch.get_num_threads();
            result["f1_clips"] = nClips;
            if (perMode.Count == 2)
            {
                double Get(int i, string k) => Convert.ToDouble(perMode[i][k]);
                result["gpe_over_reencode"] = new Dictionary<string, object?>
                {
                    ["latency_p95_ratio"] = Math.Round(Get(0, "latency_ms_p95") / Math.Max(1e-9, Get(1, "latency_ms_p95")), 3),
                    ["first_word_p95_ratio"] = Math.Round(Get(0, "first_word_ms_p95") / Math.Max(1e-9, Get(1, "first_word_ms_p95")), 3),
                    // How far each p95 ratio could move by chance in this many turns and captions (two-stage bootstrap, 95%).
                    ["latency_p95_ratio_ci95"] = Interval(runs[modeList[0]].Select(t => t.Latencies), runs[modeList[1]].Select(t => t.Latencies)),
                    ["first_word_p95_ratio_ci95"] = Interval(runs[modeList[0]].Select(t => t.FirstWordLatencies), runs[modeList[1]].Select(t => t.FirstWordLatencies)),
                    ["caption_hz_ratio"] = Math.Round(Get(0, "caption_hz") / Math.Max(1e-9, Get(1, "caption_hz")), 3),
                    ["f1_gap"] = perMode[0]["f1"] is double a && perMode[1]["f1"] is double b ? Math.Round(a - b, 4) : null,
                    // Both modes read every frame offered: the rate ratio is 1 by construction, and
                    // the rate target can only be measured where one of them falls behind.
                    ["source_bound"] = perMode.All(m => m["kept_up"] is true),
                };
            }
            var table = new Table().AddColumn("metric");
            foreach (var m in perMode) table.AddColumn((string)m["mode"]!);
            foreach (var key in new[] { "render_fps", "frame_ms_p99", "caption_hz", "latency_ms_p50", "latency_ms_p95", "first_word_ms_p95", "dropped_frames", "rss_start_mb", "rss_end_mb", "f1" })
                table.AddRow(new[] { key }.Concat(perMode.Select(m => Markup.Escape(m[key]?.ToString() ?? "–"))).ToArray());
            AnsiConsole.Write(table);
            if (result.TryGetValue("gpe_over_reencode", out var ratio) && ratio is Dictionary<string, object?> rd)
                AnsiConsole.MarkupLine($"GPE / re-encoding: glass-to-caption p95 ×{rd["latency_p95_ratio"]}{Ci(rd["latency_p95_ratio_ci95"])} (target ≤ 0.6; to the first word ×{rd["first_word_p95_ratio"]}{Ci(rd["first_word_p95_ratio_ci95"])}), caption rate ×{rd["caption_hz_ratio"]} (target ≥ 1.5), F1 gap {rd["f1_gap"] ?? "–"} (target ≥ −0.01)"
                    + (rd["source_bound"] is true ? "; both modes kept up with the source (no frame dropped or skipped), so each captioned at the source's rate and the rate ratio is 1 whatever a caption costs" : ""));
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return 0;
        });
    }

    /// <summary>One mode's turns pooled: rates over the measured time, percentiles over every turn's samples.</summary>
    static Dictionary<string, object?> Summary(string mode, List<LiveStats> turns, ClipScore? f1)
    {
        double seconds = turns.Sum(t => t.Measured.TotalSeconds);
        var frames = turns.SelectMany(t => t.FrameTimesMs).Order().ToArray();
        var latency = turns.SelectMany(t => t.Latencies).Order().ToArray();
        var firstWord = turns.SelectMany(t => t.FirstWordLatencies).Order().ToArray();
        return new Dictionary<string, object?>
        {
            ["mode"] = mode,
            ["render_fps"] = Math.Round(turns.Sum(t => t.FramesRendered) / seconds, 2),
            ["frame_ms_p50"] = Math.Round(Pct(frames, 0.5), 2),
            ["frame_ms_p99"] = Math.Round(Pct(frames, 0.99), 2),
            ["caption_hz"] = Math.Round(turns.Sum(t => t.Captions) / seconds, 3),
            ["latency_ms_p50"] = Math.Round(Pct(latency, 0.5), 1),
            ["latency_ms_p95"] = Math.Round(Pct(latency, 0.95), 1),
            // The same from the frame to the first word of its caption on screen (captions stream in).
            ["first_word_ms_p50"] = Math.Round(Pct(firstWord, 0.5), 1),
            ["first_word_ms_p95"] = Math.Round(Pct(firstWord, 0.95), 1),
            // Every measured caption's, in the order written, turn after turn: a p95 over a few dozen is worth checking against them.
            ["latency_ms"] = turns.SelectMany(t => t.Latencies).Select(x => Math.Round(x, 1)).ToArray(),
            ["first_word_ms"] = turns.SelectMany(t => t.FirstWordLatencies).Select(x => Math.Round(x, 1)).ToArray(),
            ["dropped_frames"] = turns.Sum(t => t.DroppedForInference),
            ["dropped_for_display"] = turns.Sum(t => t.DroppedForDisplay),
            ["budget_skipped_frames"] = turns.Sum(t => t.BudgetSkipped),
            // Every frame the loop offered was read: the model never fell behind the source, so
            // its caption rate is the source's, whatever a caption costs.
            ["kept_up"] = turns.Sum(t => t.DroppedForInference) == 0 && turns.Sum(t => t.BudgetSkipped) == 0,
            // The reads measured (after each turn's warm-up): the pruning levels the governor held them at.
            ["levels_read"] = turns.SelectMany(t => t.LevelsMeasured).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value)),
            ["rss_start_mb"] = Math.Round(turns[0].RssStartMb, 1),
            ["rss_end_mb"] = Math.Round(turns[^1].RssEndMb, 1),
            ["rss_drift_pct"] = Math.Round(100 * (turns[^1].RssEndMb - turns[0].RssStartMb) / Math.Max(1, turns[0].RssStartMb), 2),
            ["captions"] = turns.Sum(t => t.Captions),
            ["words_hz"] = Math.Round(turns.Sum(t => t.WordsHz * t.Measured.TotalSeconds) / seconds, 2),
            ["seconds"] = Math.Round(seconds, 1),
            ["f1"] = f1 is { } f ? Math.Round(f.F1, 4) : null,
            // The F1 pass runs headless on its own clips, so its governor chose its own rungs.
            ["f1_levels_read"] = f1?.Levels, ["f1_budget_skipped_frames"] = f1?.BudgetSkipped,
            ["f1_levels"] = f1 is null ? null : f1.Replayed ? "drawn in the timed turns' proportions" : "the pass's own governor",
            ["rss_mb_every_30s"] = turns.SelectMany(t => t.Rss.Where((_, i) => i % 30 == 0).Select(x => Math.Round(x.Mb))).ToArray(),
        };
    }

    static string Ci(object? interval) => interval is double[] { Length: 2 } ci ? Markup.Escape($" [95%: {ci[0]}–{ci[1]}]") : "";

    static double[]? Interval(IEnumerable<IReadOnlyList<double>> a, IEnumerable<IReadOnlyList<double>> b) =>
        BenchStats.RatioInterval(a.ToArray(), b.ToArray(), 0.95) is { } ci ? [Math.Round(ci.Low, 3), Math.Round(ci.High, 3)] : null;

    /// <summary>Nearest-rank percentile of sorted samples.</summary>
    static double Pct(double[] sorted, double p) => Percentile.OfSorted(sorted, p);

    /// <summary>
    /// Caption attribute F1 (as `ra eval` scores) of the app's path on held-out generated clips (odd
    /// seeds, never trained on): the frame loop in headless pacing over the clip's frames, a caption
    /// about once a second, each scored against the scene at its frame once the window is full.
    /// Headless, with no renderer beside it, a governor would time its reads faster than the app
    /// does, so a governed run replays the levels its timed turns read.
    /// </summary>
    /// <param name="replay">Reads per pruning level to replay (null: the pass's own governor chooses):
    /// each read is at a level drawn (seeded) in those proportions, with no governor.</param>
    public static ClipScore ClipF1(Engine engine, string mode, Realtime run, int clips, CancellationToken ct, IReadOnlyDictionary<string, long>? replay = null)
    {
        FactScore total = default;
        var levels = new Dictionary<string, long>();
        long skipped = 0;
        Func<GovernorLevel>? draw = null;
        if (replay is not null)
        {
            run = run with { Loop = run.Loop with { Driver = run.Loop.Driver with { FrameBudgetMs = null } } };
            draw = ReplayDraw(engine, run.Loop.Driver.Schedule, replay);
        }
        int window = run.Streaming.WindowFrames, stride = run.Loop.Stride;
        for (int c = 0; c < clips; c++)
        {
            ct.ThrowIfCancellationRequested();
            var clip = ClipGenerator.Generate(ClipGenerator.HeldOutSeed + 2 * c, 6, AppSources.SyntheticFps);
            var source = new GeneratedFrameSource(i => clip.Render((int)i, 64, 64), AppSources.SyntheticFps, count: clip.FrameCount, realtime: false,
                description: $"clip {c}");
            using var session = draw is null ? SessionModes.Create(mode, engine, run.Streaming) : new ReplayedLevels(SessionModes.Create(mode, engine, run.Streaming), draw);
            var scores = new List<FactScore>();
            using var loop = new FrameLoop(source, session, new Profiler(), run.Loop with { Pacing = Pacing.Headless })
            {
                Written = (seg, _) =>
                {
                    if (seg.Question is not null || seg.FrameIndex < (long)stride * (window - 1)) return;
                    scores.Add(AttributeScorer.ScoreByAttribute(seg.Text, CaptionGrammar.Canonical(clip.SceneAt((int)seg.FrameIndex), withMotion: window > 1)));
                },
            };
            var stats = loop.RunHeadless(ct).Stats;
            foreach (var (level, n) in stats.Levels) levels[level] = levels.GetValueOrDefault(level) + n;
            skipped += stats.BudgetSkipped;
            total += FactScore.Total(scores);
        }
        return new ClipScore(total.F1, levels, skipped, replay is not null);
    }

    /// <summary>Levels of the governor's ladder drawn in <paramref name="counts"/>' proportions, seeded.</summary>
    static Func<GovernorLevel> ReplayDraw(Engine engine, PruningConfig? schedule, IReadOnlyDictionary<string, long> counts)
    {
        int visual;
        using var img = ClipGenerator.Generate(ClipGenerator.HeldOutSeed, 1, AppSources.SyntheticFps).Render(0, 64, 64);
        using (var enc = engine.Model.EncodeOne(img, ImageUse.VideoFrame)) visual = enc.Count;
        var ladder = FrameGovernor.LadderFor(engine, schedule ?? new PruningConfig(), visual, img.Rows, img.Cols).ToDictionary(l => l.Name); // the driver's ladder
        // A resolution rung of the timed turns' frames may have no counterpart on the pass's 64×64 clips.
        var pool = counts.SelectMany(kv => Enumerable.Repeat(ladder.TryGetValue(kv.Key, out var p) ? p
            : throw new UserError($"bench app: the timed turns read at '{kv.Key}', which the F1 pass's {img.Cols}×{img.Rows} clips have no rung for; add --f1-clips 0 or --frame-budget-ms off"), (int)kv.Value)).ToArray();
        var rng = new Random(18);
        return () => pool[rng.Next(pool.Length)];
    }

    /// <summary>A session whose every read is at the level <paramref name="draw"/> gives.</summary>
    sealed class ReplayedLevels(ICaptionSession inner, Func<GovernorLevel> draw) : SessionDecorator(inner)
    {
        void Next() { var l = draw(); (Inner.Pruning, Inner.MaxPixels) = (l.Pruning, l.MaxPixels); }
        public override void Read(Mat frame) { Next(); Inner.Read(frame); }
        public override void Read(EncodedImage frame) { Next(); Inner.Read(frame); }
        public override IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null) { Next(); return Inner.ReadAndWrite(frame, question); }
        public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) { Next(); return Inner.ReadAndWrite(frame, question); }
    }

    /// <summary>The F1 pass's captions against the scenes, the pruning levels its reads were at, and the frames its governor skipped.</summary>
    public sealed record ClipScore(double F1, IReadOnlyDictionary<string, long> Levels, long BudgetSkipped, bool Replayed);
}
