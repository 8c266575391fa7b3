using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench budget`: the frame-budget governor on the demo model and on a LLaVA-7B-shaped
/// checkpoint (32 layers, 576 visual tokens a frame, random weights). For budgets that are
/// fractions of the model's unpruned read time, a GPE stream runs with the governor: the reads'
/// p50/p95, the fraction over budget, the frames skipped, the mean k (VisiPruner's tokens per
/// frame; a level without a budget counts every token) and, on the demo model, caption F1 on
/// held-out clips. The stream runs in rounds of a few clips. Each round first times the unpruned
/// reads and the ladder's most aggressive level, sets its budgets as fractions of
/// the unpruned time, and then streams its clips under each budget: on a shared machine whose
/// speed drifts, budgets fixed at the start would measure the drift as much as the governor. A
/// budget tighter than the most aggressive level's time in its round can only be held by
/// skipping frames; the target's share over budget counts the other rounds.
/// A read's time, for a budget, is by default its p95: the budget it meets with at most 5% of
/// reads over, the target's own measure. At the median, "100%" is a budget the unpruned model
/// itself runs over on half its reads (<c>--budget-base p50</c>).
/// </summary>
public static class BudgetBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var model = AppModel.ModelOption();
        var fractions = new Option<string>("--fractions") { Description = "budgets as percentages of the unpruned read time", DefaultValueFactory = _ => "100,60,40,25" };
        var split = new Option<string>("--split") { Description = "the demo model's clips: held-out (what results are reported on) or validation (what parameters are chosen on)", DefaultValueFactory = _ => "held-out" };
        split.AcceptOnlyFromAmong("held-out", "validation");
        var clips = new Option<int>("--clips") { Description = "held-out clips streamed per budget on the demo model (18 reads each)", DefaultValueFactory = _ => 16 };
        var llavaHidden = new Option<int>("--llava-hidden") { Description = "width of the LLaVA-shaped checkpoint (7B: 4096; reduced for 2 CPU cores)", DefaultValueFactory = _ => 512 };
        var llavaReads = new Option<int>("--llava-reads") { Description = "frames read per budget on the LLaVA-shaped checkpoint", DefaultValueFactory = _ => 32 };
        var skipLlava = new Option<bool>("--skip-llava") { Description = "only the demo model" };
        var levels = new Option<bool>("--levels") { Description = "also stream with each rung of the governor's ladder held fixed: its read times and F1 (JSON levels_held)" };
        var budgetBase = new Option<string>("--budget-base") { Description = "which percentile of a read's time the budgets and the most aggressive level's time are: p95 (the budget the unpruned reads meet with at most 5% over) or p50", DefaultValueFactory = _ => "p95" };
        budgetBase.AcceptOnlyFromAmong("p95", "p50");
        var roundClips = new Option<int>("--round-clips") { Description = "clips in each round of the demo model's stream: a round times the unpruned reads afresh and sets its budgets from them, so that budgets follow the machine's load through a run", DefaultValueFactory = _ => 8 };
        var warm = new Option<int>("--warmup-reads") { Description = "reads at the start of each budget that count toward nothing (the governor finding its level)", DefaultValueFactory = _ => 8 };
        var threads = Cli.ThreadsOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("budget", "The frame-budget governor at 100/60/40/25% of the unpruned read time: reads p50/p95, fraction over budget, skipped frames, mean k, F1 (demo model).")
            { json, model, fractions, split, clips, roundClips, llavaHidden, llavaReads, skipLlava, levels, budgetBase, warm, threads, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var fr = pr.GetValue(fractions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(f => double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && v <= 1000 ? v / 100 : throw new UserError($"--fractions takes percentages in (0, 1000], got '{f}'"))
                .ToArray();
            double basePct = pr.GetValue(budgetBase) == "p50" ? 0.5 : 0.95;
            int nClips = pr.GetValue(clips), nReads = pr.GetValue(llavaReads), D = pr.GetValue(llavaHidden), warmup = pr.GetValue(warm);
            if (nClips is < 1 or > 10_000) throw new UserError($"--clips must be 1..10000, got {nClips}");
            int perRound = pr.GetValue(roundClips);
            if (perRound is < 1 or > 10_000) throw new UserError($"--round-clips must be 1..10000, got {perRound}");
            if (nReads is < 4 or > 100_000) throw new UserError($"--llava-reads must be 4..100000, got {nReads}");
            if (D < 64 || D % 64 != 0) throw new UserError($"--llava-hidden must be a multiple of 64, got {D}");
            if (warmup < 0) throw new UserError("--warmup-reads must be ≥ 0");
            if (pr.GetValue(threads) is { } t) Engine.SetThreads(t);
            var configs = new List<Dictionary<string, object?>>();
            var engineOptions = Cli.EngineOptions(pr, device, dtype, weights);
            using (var engine = Engine.Load(AppModel.Resolve(pr.GetValue(model)), engineOptions))
                configs.Add(Run("demo", engine, DemoFrames(nClips, pr.GetValue(split) == "validation" ? ValidationSeed : HeldOutSeed), fr, basePct, warmup, scoreF1: true, pr.GetValue(levels), perRound, ct));
            if (!pr.GetValue(skipLlava))
            {
                var dir = Path.Combine(Path.GetTempPath(), $"ra-bench-budget-{Environment.ProcessId}");
                try
                {
                    BenchModels.WriteLlavaShaped(dir, D);
                    using var engine = Engine.Load(dir, engineOptions);
                    configs.Add(Run($"llava-1.5-7b-shaped (hidden {D})", engine, NoiseFrames(nReads), fr, basePct, warmup, scoreF1: false, pr.GetValue(levels), clipsPerRound: 1, ct));
                }
                finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
            }
            foreach (var c in configs)
            {
                AnsiConsole.MarkupLine($"[bold]{Markup.Escape((string)c["config"]!)}[/]: unpruned read p50 {c["unpruned_read_ms_p50"]} / p95 {c["unpruned_read_ms_p95"]} ms in a stream ({c["unpruned_read_alone_ms_p50"]} ms alone), most aggressive level ({Markup.Escape((string)c["most_aggressive_level"]!)}) p50 {c["most_aggressive_read_ms_p50"]} / p95 {c["most_aggressive_read_ms_p95"]} ms{(c["unpruned_f1"] is { } uf ? $", unpruned F1 {uf}" : "")}; budgets from each of {c["rounds"]} rounds' unpruned {c["budget_base"]}");
                var table = new Table().AddColumns("budget", "budget ms (mean)", "read p50", "read p95", "over budget", "over, holdable rounds", "skipped", "mean k", "F1", "target");
                foreach (var b in (List<Dictionary<string, object?>>)c["budgets"]!)
                    table.AddRow($"{b["fraction"]:0%}", $"{b["budget_ms"]}", $"{b["read_ms_p50"]}", $"{b["read_ms_p95"]}", $"{b["over_budget_fraction"]:0.0%}", b["over_budget_fraction_holdable"] is double h ? $"{h:0.0%}" : "–", $"{b["skipped_frames"]}",
                        $"{b["mean_k"]}", $"{b["f1"] ?? "–"}", Markup.Escape((string)b["target"]!));
                AnsiConsole.Write(table);
            }
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { configs });
            return Task.FromResult(0);
        });
    }

    /// <summary>A frame, and what scores a caption written at it (null: not scored).</summary>
    sealed record BenchFrame(int Clip, Func<Mat> Render, Func<string, FactScore>? Score);

    /// <summary>The first seed of each split's clips (odd seeds from there on; the demo model trained on neither).</summary>
    const int HeldOutSeed = 1_000_001, ValidationSeed = 5_000_001;

    /// <summary>Clips (odd seeds from <paramref name="firstSeed"/>), every 5th frame of each, back to back in one stream; a caption is scored against the scene at its frame once the window holds two frames of that clip.</summary>
    static IEnumerable<BenchFrame> DemoFrames(int clips, int firstSeed)
    {
        for (int c = 0; c < clips; c++)
        {
            var clip = ClipGenerator.Generate(firstSeed + 2 * c, 6, AppSources.SyntheticFps);
            for (int f = 0; f + 5 < clip.FrameCount; f += 5)
            {
                int frame = f;
                yield return new BenchFrame(c, () => clip.Render(frame, 64, 64),
                    frame < 5 ? null : text => AttributeScorer.ScoreByAttribute(text, CaptionGrammar.Canonical(clip.SceneAt(frame), withMotion: true)));
            }
        }
    }

    static IEnumerable<BenchFrame> NoiseFrames(int n)
    {
        var rng = new Random(5);
        for (int i = 0; i < n; i++)
        {
            int seed = rng.Next();
            yield return new BenchFrame(0, () =>
            {
                var m = new Mat(336, 336, MatType.CV_8UC3);
                Cv2.Randu(m, new Scalar(0, 0, 0), new Scalar(255, 255, 255));
                Cv2.Circle(m, new Point(seed % 300 + 18, seed / 7 % 300 + 18), 30, new Scalar(seed % 255, 90, 200), -1);
                return m;
            }, null);
        }
    }

    static double Pct(List<double> v, double p)
    {
        if (v.Count == 0) return double.NaN;
        var s = v.Order().ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p * s.Length) - 1, 0, s.Length - 1)];
    }

    /// <summary>Median read time of a few frames read alone (no captions between them) at one fixed pruning setting (null: unpruned).</summary>
    static double ReadTime(Engine engine, PruningConfig? pruning, List<BenchFrame> frames, CancellationToken ct)
    {
        using var session = new GpeSession(engine, new StreamingOptions { WindowFrames = 2, Pruning = pruning });
        var ms = new List<double>();
        for (int i = 0; i < frames.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            using var img = frames[i].Render();
            session.Read(img);
            if (i >= 2) ms.Add(session.Last.ReadMs); // the first reads warm the caches up
        }
        return Pct(ms, 0.5);
    }

    /// <summary>What the streams of one budget, or of one rung held fixed, measured over all rounds.</summary>
    sealed class Tally
    {
        public readonly List<double> Reads = [], Budgets = [];
        public readonly List<List<double>> RoundReads = [];
        public readonly List<int> Ks = [];
        public readonly Dictionary<string, int> Levels = [];
        public FactScore Score;
        public long Skipped;
        public int Over, HoldableReads, HoldableOver, RoundsBelowAggressive;

        /// <summary>A round's stream, its reads judged against that round's budget.</summary>
        public void Add(StreamResult r, double budget, bool holdable)
        {
            Reads.AddRange(r.Reads);
            RoundReads.Add(r.Reads);
            Ks.AddRange(r.Ks);
            foreach (var (l, n) in r.Levels) Levels[l] = Levels.GetValueOrDefault(l) + n;
            Score += r.Score;
            Skipped += r.Skipped;
            Budgets.Add(budget);
            int over = r.Reads.Count(x => x > budget);
            Over += over;
            if (holdable) { HoldableReads += r.Reads.Count; HoldableOver += over; }
            else RoundsBelowAggressive++;
        }
    }

    /// <param name="basePct">The percentile of a read's time that budgets are fractions of, and that the most aggressive level is compared at.</param>
    /// <param name="clipsPerRound">
    /// Clips a round streams. Each round times the unpruned reads and the most aggressive level
    /// afresh (taking turns), sets its budgets from them, and then streams the same clips under
    /// each budget: the budgets follow the machine's load as it drifts through a run, where a
    /// budget fixed at the start would measure the drift as much as the governor.
    /// </param>
    static Dictionary<string, object?> Run(string name, Engine engine, IEnumerable<BenchFrame> stream, double[] fractions, double basePct, int warmup, bool scoreF1, bool levels, int clipsPerRound, CancellationToken ct)
    {
        var frames = stream.ToList();
        var rounds = frames.GroupBy(f => f.Clip / clipsPerRound).Select(g => g.ToList()).ToList();
        int layers = engine.Text.NumHiddenLayers;
        var schedule = engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers) with { Method = "visipruner" };
        var probe = frames.Take(Math.Min(frames.Count, 14)).ToList();
        int visual;
        using (var img = probe[0].Render()) using (var enc = engine.Model.EncodeOne(img, ImageUse.VideoFrame)) visual = enc.Count;
        var ladder = FrameGovernor.Ladder(schedule, layers, visual);
        var unprunedAll = new Tally();
        var aggressiveAll = new Tally();
        var budgetTallies = fractions.Select(_ => new Tally()).ToArray();
        var levelTallies = levels ? ladder.Select(_ => new Tally()).ToArray() : [];
        var rng = new Random(18);
        foreach (var round in rounds)
        {
            // Both ends of the ladder, in a shuffled order, as the governed streams read: each a
            // stream of its own over the same frames with the same writes (a read beside captions
            // costs more than one alone; streams taking turns a few frames at a time cost more
            // still, each turn's first read finding the other's memory in the caches).
            var ends = new StreamResult[2];
            foreach (var e in rng.Next(2) == 0 ? new[] { 0, 1 } : [1, 0])
                ends[e] = Stream(engine, round, null, schedule, warmup, visual, ct, fixedPruning: e == 0 ? null : ladder[^1].Pruning);
            double unpruned = Pct(ends[0].Reads, basePct), aggressive = Pct(ends[1].Reads, basePct);
            double[] budgets = fractions.Select(f => Math.Round(f * unpruned, 2)).ToArray();
            unprunedAll.Add(ends[0], unpruned, holdable: true);
            aggressiveAll.Add(ends[1], aggressive, holdable: true);
            // Then each budget, and each rung held fixed, over the round's clips in a shuffled order.
            var streams = Enumerable.Range(0, budgets.Length).Select(i => (Budget: i, Level: -1))
                .Concat(Enumerable.Range(0, levelTallies.Length).Select(i => (Budget: -1, Level: i))).ToArray();
            rng.Shuffle(streams);
            foreach (var (bi, li) in streams)
            {
                if (bi >= 0)
                    budgetTallies[bi].Add(Stream(engine, round, budgets[bi], schedule, warmup, visual, ct), budgets[bi], budgets[bi] >= aggressive);
                else
                    levelTallies[li].Add(Stream(engine, round, null, schedule, warmup, visual, ct, fixedPruning: ladder[li].Pruning), unpruned, holdable: true);
            }
            Console.Error.WriteLine($"bench budget: {name}, round {unprunedAll.Budgets.Count} of {rounds.Count}: unpruned p{basePct * 100:0} {unpruned:0.00} ms, {ladder[^1].Name} {aggressive:0.00} ms");
        }
        static double R(double v) => Math.Round(v, 2);
        double? F1(Tally t) => scoreF1 ? Math.Round(t.Score.F1, 4) : null;
        var fixedLevels = ladder.Zip(levelTallies).Select(z => new Dictionary<string, object?>
        {
            ["level"] = z.First.Name, ["work"] = z.First.Work,
            ["read_ms_p50"] = R(Pct(z.Second.Reads, 0.5)), ["read_ms_p80"] = R(Pct(z.Second.Reads, 0.8)), ["read_ms_p95"] = R(Pct(z.Second.Reads, 0.95)),
            ["f1"] = F1(z.Second),
            // Held at this rung, the share of its reads that would run over each budget: a budget no
            // rung holds to 5% is one the machine's noise, not the governor, decides.
            ["over_budget_fraction_at"] = fractions.ToDictionary(f => $"{f:0%}",
                f => Math.Round(z.Second.Reads.Count == 0 ? 0
                    : z.Second.RoundReads.Zip(unprunedAll.Budgets).Sum(rb => rb.First.Count(x => x > Math.Round(f * rb.Second, 2))) / (double)z.Second.Reads.Count, 4)),
        }).ToList();
        foreach (var l in fixedLevels)
            Console.Error.WriteLine($"bench budget: {name}, level {l["level"]} held: read p50 {l["read_ms_p50"]} ms, p95 {l["read_ms_p95"]} ms{(scoreF1 ? $", F1 {l["f1"]}" : "")}");
        double alone = ReadTime(engine, null, probe, ct);
        var budgetsOut = fractions.Zip(budgetTallies).Select(z =>
        {
            var (f, t) = z;
            bool holdable = t.RoundsBelowAggressive == 0;
            return new Dictionary<string, object?>
            {
                ["fraction"] = f, ["budget_ms"] = R(t.Budgets.Average()), ["budget_ms_per_round"] = t.Budgets.ToArray(),
                ["read_ms_p50"] = R(Pct(t.Reads, 0.5)), ["read_ms_p95"] = R(Pct(t.Reads, 0.95)),
                ["over_budget_fraction"] = Math.Round(t.Reads.Count == 0 ? 0 : t.Over / (double)t.Reads.Count, 4),
                // The target's share: reads in the rounds whose budget the most aggressive level could hold.
                ["over_budget_fraction_holdable"] = t.HoldableReads == 0 ? null : Math.Round(t.HoldableOver / (double)t.HoldableReads, 4),
                ["rounds_below_most_aggressive"] = t.RoundsBelowAggressive,
                ["skipped_frames"] = t.Skipped, ["reads"] = t.Reads.Count, ["mean_k"] = R(t.Ks.DefaultIfEmpty(0).Average()),
                ["levels"] = t.Levels, ["f1"] = F1(t),
                ["target"] = holdable ? "≤ 5% of reads over budget"
                    : t.HoldableReads == 0 ? "below the most aggressive level: held by skipping"
                    : $"≤ 5% of reads over budget in the {t.Budgets.Count - t.RoundsBelowAggressive} of {t.Budgets.Count} rounds the most aggressive level could hold",
            };
        }).ToList();
        foreach (var b in budgetsOut)
            Console.Error.WriteLine($"bench budget: {name} at {b["fraction"]:0%} ({b["budget_ms"]} ms): read p95 {b["read_ms_p95"]} ms, {b["skipped_frames"]} skipped{(scoreF1 ? $", F1 {b["f1"]}" : "")}");
        return new Dictionary<string, object?>
        {
            ["config"] = name, ["decoder_layers"] = layers, ["visual_tokens_per_frame"] = visual, ["frames"] = frames.Count, ["rounds"] = rounds.Count,
            ["budget_base"] = basePct == 0.5 ? "p50" : "p95",
            ["unpruned_read_ms_p50"] = R(Pct(unprunedAll.Reads, 0.5)), ["unpruned_read_ms_p95"] = R(Pct(unprunedAll.Reads, 0.95)),
            ["unpruned_read_ms_per_round"] = unprunedAll.Budgets.Select(R).ToArray(),
            ["unpruned_read_alone_ms_p50"] = R(alone), ["most_aggressive_level"] = ladder[^1].Name,
            ["most_aggressive_read_ms_p50"] = R(Pct(aggressiveAll.Reads, 0.5)), ["most_aggressive_read_ms_p95"] = R(Pct(aggressiveAll.Reads, 0.95)),
            ["most_aggressive_read_ms_per_round"] = aggressiveAll.Budgets.Select(R).ToArray(), ["ladder"] = ladder.Select(l => l.Name).ToArray(),
            ["unpruned_f1"] = F1(unprunedAll), ["budgets"] = budgetsOut,
            ["levels_held"] = levels ? fixedLevels : null,
        };
    }

    sealed record StreamResult(List<double> Reads, long Skipped, List<int> Ks, FactScore Score, Dictionary<string, int> Levels);

    /// <summary>One stream over the frames: the governor at <paramref name="budget"/> (null: no governor; reads unpruned, or at <paramref name="fixedPruning"/>), a caption every third read.</summary>
    static StreamResult Stream(Engine engine, List<BenchFrame> frames, double? budget, PruningConfig schedule, int warmup, int visual, CancellationToken ct,
        PruningConfig? fixedPruning = null)
    {
        using var run = new StreamRun(engine, budget, schedule, warmup, visual, fixedPruning);
        for (int i = 0; i < frames.Count; i++) run.Push(frames[i], i, ct);
        return run.Result();
    }

    /// <summary>A GPE stream with its driver, fed a frame at a time, and what its reads measured.</summary>
    sealed class StreamRun : IDisposable
    {
        readonly GpeSession _session;
        readonly StreamingDriver _driver;
        readonly int _warmup, _visual;
        readonly List<double> _reads = [];
        readonly List<int> _ks = [];
        readonly Dictionary<string, int> _levels = [];
        FactScore _score;
        int _readCount;

        public StreamRun(Engine engine, double? budget, PruningConfig schedule, int warmup, int visual, PruningConfig? fixedPruning = null)
        {
            _warmup = warmup;
            _visual = visual;
            _session = new GpeSession(engine, new StreamingOptions { WindowFrames = 2, Pruning = fixedPruning, Generation = new GenerationOptions { MaxNewTokens = 48 } });
            _driver = new StreamingDriver(_session, new DriverOptions
            {
                Policy = WritePolicy.Parse("every:3"), GateThreshold = 0, FrameBudgetMs = budget, Schedule = schedule,
            });
            _driver.Start();
        }

        public void Push(BenchFrame frame, int index, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            using var img = frame.Render();
            long before = _driver.Stats.Read;
            foreach (var seg in _driver.Push(img, index, TimeSpan.Zero))
                if (seg.Question is null && frame.Score is { } s) _score += s(seg.Text);
            if (_driver.Stats.Read == before || ++_readCount <= _warmup) return;
            var r = _session.Last;
            _reads.Add(r.ReadMs);
            _ks.Add(_session.Pruning?.Budget ?? _visual);
            var level = r.Level ?? "unpruned";
            _levels[level] = _levels.GetValueOrDefault(level) + 1;
        }

        public StreamResult Result() => new(_reads, _driver.Stats.BudgetSkipped, _ks, _score, _levels);

        public void Dispose()
        {
            _driver.Dispose();
            _session.Dispose();
        }
    }
}
