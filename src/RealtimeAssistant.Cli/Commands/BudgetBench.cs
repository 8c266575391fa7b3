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
/// held-out clips. The unpruned reads and the ladder's most aggressive level are timed in the
/// same process first. Each governed stream then takes turns with that level, a clip at a time in
/// a shuffled order: a budget tighter than the level as timed in turns can only be held by
/// skipping frames, and a shared machine's speed drifts during a run.
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
        var split = Cli.ClipSplitOption("a parameter");
        var clips = new Option<int>("--clips") { Description = "clips streamed per budget on the demo model (17 reads each; 48 give the ~800 reads a 5% target needs)", DefaultValueFactory = _ => 48 };
        var llavaHidden = new Option<int>("--llava-hidden") { Description = "width of the LLaVA-shaped checkpoint (7B: 4096; reduced for 2 CPU cores)", DefaultValueFactory = _ => 512 };
        var llavaReads = new Option<int>("--llava-reads") { Description = "frames read per budget on the LLaVA-shaped checkpoint (96: ~88 measured, where one read over budget is 1.1%)", DefaultValueFactory = _ => 96 };
        var skipLlava = new Option<bool>("--skip-llava") { Description = "only the demo model" };
        var levels = new Option<bool>("--levels") { Description = "also stream with each rung of the governor's ladder held fixed: its read times and F1 (JSON levels_held); and with a rung drawn at random for each read (levels_mixed)" };
        var budgetBase = new Option<string>("--budget-base") { Description = "which percentile of a read's time the budgets and the most aggressive level's time are: p95 (the budget the unpruned reads meet with at most 5% over) or p50", DefaultValueFactory = _ => "p95" };
        budgetBase.AcceptOnlyFromAmong("p95", "p50");
        var warm = new Option<int>("--warmup-reads") { Description = "reads at the start of each budget that count toward nothing (the governor finding its level)", DefaultValueFactory = _ => 8 };
        var threads = Cli.ThreadsOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("budget", "The frame-budget governor at 100/60/40/25% of the unpruned read time: reads p50/p95, fraction over budget, skipped frames, mean k, F1 (demo model).")
            { json, model, fractions, split, clips, llavaHidden, llavaReads, skipLlava, levels, budgetBase, warm, threads, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var fr = pr.GetValue(fractions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(f => double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && v <= 1000 ? v / 100 : throw new UserError($"--fractions takes percentages in (0, 1000], got '{f}'"))
                .ToArray();
            double basePct = pr.GetValue(budgetBase) == "p50" ? 0.5 : 0.95;
            int nClips = pr.GetValue(clips), nReads = pr.GetValue(llavaReads), D = pr.GetValue(llavaHidden), warmup = pr.GetValue(warm);
            if (nClips is < 1 or > 10_000) throw new UserError($"--clips must be 1..10000, got {nClips}");
            if (nReads is < 4 or > 100_000) throw new UserError($"--llava-reads must be 4..100000, got {nReads}");
            if (D < 64 || D % 64 != 0) throw new UserError($"--llava-hidden must be a multiple of 64, got {D}");
            if (warmup < 0) throw new UserError("--warmup-reads must be ≥ 0");
            if (pr.GetValue(threads) is { } t) Engine.SetThreads(t);
            var configs = new List<Dictionary<string, object?>>();
            var engineOptions = Cli.EngineOptions(pr, device, dtype, weights);
            using (var engine = Engine.Load(AppModel.Resolve(pr.GetValue(model)), engineOptions))
                configs.Add(Run("demo", engine, DemoFrames(nClips, Cli.FirstClipSeed(pr.GetValue(split))), DemoFramesPerClip, fr, basePct, warmup, scoreF1: true, pr.GetValue(levels), ct));
            if (!pr.GetValue(skipLlava))
            {
                var dir = Path.Combine(Path.GetTempPath(), $"ra-bench-budget-{Environment.ProcessId}");
                try
                {
                    BenchModels.WriteLlavaShaped(dir, D);
                    using var engine = Engine.Load(dir, engineOptions);
                    configs.Add(Run($"llava-1.5-7b-shaped (hidden {D})", engine, NoiseFrames(nReads), 4, fr, basePct, warmup, scoreF1: false, pr.GetValue(levels), ct));
                }
                finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
            }
            foreach (var c in configs)
            {
                AnsiConsole.MarkupLine($"[bold]{Markup.Escape((string)c["config"]!)}[/]: unpruned read p50 {c["unpruned_read_ms_p50"]} / p95 {c["unpruned_read_ms_p95"]} ms in a stream ({c["unpruned_read_alone_ms_p50"]} ms alone), most aggressive level ({Markup.Escape((string)c["most_aggressive_level"]!)}) p50 {c["most_aggressive_read_ms_p50"]} / p95 {c["most_aggressive_read_ms_p95"]} ms{(c["unpruned_f1"] is { } uf ? $", unpruned F1 {uf}" : "")}; budgets from the {c["budget_base"]}");
                var table = new Table().AddColumns("budget", "budget ms", "read p50", "read p95", "over budget", "skipped", "mean k", "F1", "target", "p95 in turns: unpruned / most aggressive");
                foreach (var b in (List<Dictionary<string, object?>>)c["budgets"]!)
                    table.AddRow($"{b["fraction"]:0%}", $"{b["budget_ms"]}", $"{b["read_ms_p50"]}", $"{b["read_ms_p95"]}", $"{b["over_budget_fraction"]:0.0%}", $"{b["skipped_frames"]}",
                        $"{b["mean_k"]}", $"{b["f1"] ?? "–"}", Markup.Escape((string)b["target"]!),
                        $"{b["unpruned_read_ms_p95_in_turns"]} / {b["most_aggressive_read_ms_p95_in_turns"]}");
                AnsiConsole.Write(table);
            }
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { configs });
            return Task.FromResult(0);
        });
    }

    /// <summary>A frame, and what scores a caption written at it (null: not scored).</summary>
    sealed record BenchFrame(Func<Mat> Render, Func<string, FactScore>? Score);

    /// <summary>Frames a demo clip gives the stream (every 5th of 6 s): a turn of the in-turns streams.</summary>
    const int DemoFramesPerClip = 17;

    /// <summary>Clips (odd seeds from <paramref name="firstSeed"/>), every 5th frame of each, back to back in one stream; a caption is scored against the scene at its frame once the window holds two frames of that clip.</summary>
    static IEnumerable<BenchFrame> DemoFrames(int clips, int firstSeed)
    {
        for (int c = 0; c < clips; c++)
        {
            var clip = ClipGenerator.Generate(firstSeed + 2 * c, 6, AppSources.SyntheticFps);
            for (int f = 0; f + 5 < clip.FrameCount; f += 5)
            {
                int frame = f;
                yield return new BenchFrame(() => clip.Render(frame, 64, 64),
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
            yield return new BenchFrame(() =>
            {
                var m = new Mat(336, 336, MatType.CV_8UC3);
                Cv2.Randu(m, new Scalar(0, 0, 0), new Scalar(255, 255, 255));
                Cv2.Circle(m, new Point(seed % 300 + 18, seed / 7 % 300 + 18), 30, new Scalar(seed % 255, 90, 200), -1);
                return m;
            }, null);
        }
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
        return BenchStats.Percentile(ms, 0.5);
    }

    /// <param name="basePct">The percentile of a read's time that budgets are fractions of, and that the most aggressive level is compared at.</param>
    /// <param name="piece">Frames the governed stream and the most aggressive level read in each turn.</param>
    static Dictionary<string, object?> Run(string name, Engine engine, IEnumerable<BenchFrame> stream, int piece, double[] fractions, double basePct, int warmup, bool scoreF1, bool levels, CancellationToken ct)
    {
        var frames = stream.ToList();
        int layers = engine.Text.NumHiddenLayers;
        var schedule = engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers) with { Method = "visipruner" };
        var probe = frames.Take(Math.Min(frames.Count, 14)).ToList();
        int visual;
        using (var img = probe[0].Render()) using (var enc = engine.Model.EncodeOne(img, ImageUse.VideoFrame)) visual = enc.Count;
        var ladder = FrameGovernor.Ladder(schedule, layers, visual);
        // Both ends of the ladder, timed in this process before the budgets, as the governed streams
        // read: in a stream of the same frames with the same writes (a read beside captions costs
        // more than one alone). The unpruned read sets the budgets: its time at basePct.
        var unprunedRun = Stream(engine, frames, null, schedule, warmup, visual, ct);
        var aggressiveRun = Stream(engine, frames, null, schedule, warmup, visual, ct, fixedPruning: ladder[^1].Pruning);
        double unpruned = BenchStats.Percentile(unprunedRun.Reads, basePct), aggressive = Math.Round(BenchStats.Percentile(aggressiveRun.Reads, basePct), 2);
        double BudgetAt(double fraction) => Math.Round(fraction * unpruned, 2);
        // Each rung held fixed for the whole stream: what the governor trades when it moves.
        var fixedLevels = new List<Dictionary<string, object?>>();
        if (levels)
            foreach (var lv in ladder)
            {
                var lr = Stream(engine, frames, null, schedule, warmup, visual, ct, fixedPruning: lv.Pruning);
                fixedLevels.Add(new Dictionary<string, object?>
                {
                    ["level"] = lv.Name, ["work"] = lv.Work,
                    ["read_ms_p50"] = Math.Round(BenchStats.Percentile(lr.Reads, 0.5), 2), ["read_ms_p80"] = Math.Round(BenchStats.Percentile(lr.Reads, 0.8), 2), ["read_ms_p95"] = Math.Round(BenchStats.Percentile(lr.Reads, 0.95), 2),
                    ["f1"] = scoreF1 ? Math.Round(lr.F1, 4) : null,
                    // Held at this rung, the share of its reads that would run over each budget: a
                    // budget no rung holds to 5% is one the machine's noise, not the governor, decides.
                    ["over_budget_fraction_at"] = fractions.ToDictionary(f => $"{f:0%}", f => Math.Round(lr.Reads.Count(x => x > BudgetAt(f)) / (double)Math.Max(1, lr.Reads.Count), 4)),
                });
                Console.Error.WriteLine($"bench budget: {name}, level {lv.Name} held: read p50 {BenchStats.Percentile(lr.Reads, 0.5):0.00} ms, p95 {BenchStats.Percentile(lr.Reads, 0.95):0.00} ms{(scoreF1 ? $", F1 {lr.F1:0.000}" : "")}");
            }
        // Each read at a rung drawn at random (seeded): what moving between rungs costs, against
        // the held rungs' mean, without the machine's timing choosing the moves.
        Dictionary<string, object?>? mixed = null;
        if (levels)
        {
            var draw = new Random(18);
            var rungs = frames.Select(_ => ladder[draw.Next(ladder.Count)].Pruning).ToArray();
            var mr = Stream(engine, frames, null, schedule, warmup, visual, ct, perFrame: i => rungs[i]);
            mixed = new Dictionary<string, object?>
            {
                ["f1"] = scoreF1 ? Math.Round(mr.F1, 4) : null, ["levels"] = mr.Levels,
                ["held_levels_mean_f1"] = scoreF1 ? Math.Round(fixedLevels.Average(l => (double)l["f1"]!), 4) : null,
            };
            Console.Error.WriteLine($"bench budget: {name}, a rung drawn at random for each read{(scoreF1 ? $": F1 {mr.F1:0.000}, the held rungs' mean {mixed["held_levels_mean_f1"]}" : "")}");
        }
        double alone = ReadTime(engine, null, probe, ct);
        double? unprunedF1 = scoreF1 ? unprunedRun.F1 : null;
        var budgets = new List<Dictionary<string, object?>>();
        var order = new Random(18);
        foreach (var f in fractions)
        {
            double budget = BudgetAt(f);
            // The governed stream and the most aggressive level take turns a piece at a time: what
            // the last rung costs while the governor runs, on a machine whose speed drifts. A budget
            // below that is one only skipping can hold, and the target does not apply to it.
            // The unpruned reads take turns too: the budget was set from their time before the
            // budgets ran, and a machine that has slowed since makes "100%" a tighter budget than
            // the unpruned model itself holds (budget_over_unpruned_in_turns says by how much).
            var streams = InTurns(new[]
            {
                new BenchStream(engine, budget, schedule, warmup, visual),
                new BenchStream(engine, null, schedule, warmup, visual, ladder[^1].Pruning),
                new BenchStream(engine, null, schedule, warmup, visual),
            }, frames, piece, order, ct);
            var (r, inTurns, unprunedInTurns) = (streams[0], streams[1], streams[2]);
            double unprunedP95InTurns = BenchStats.Percentile(unprunedInTurns.Reads, basePct);
            // Decided on the rounded time the JSON records, as the budget itself is rounded, so the
            // record's own numbers always give its verdict.
            bool heldBySkipping = budget < Math.Round(BenchStats.Percentile(inTurns.Reads, basePct), 2);
            budgets.Add(new Dictionary<string, object?>
            {
                ["fraction"] = f, ["budget_ms"] = budget,
                ["read_ms_p50"] = Math.Round(BenchStats.Percentile(r.Reads, 0.5), 2), ["read_ms_p95"] = Math.Round(BenchStats.Percentile(r.Reads, 0.95), 2),
                ["over_budget_fraction"] = Math.Round(r.Reads.Count == 0 ? 0 : r.Reads.Count(x => x > budget) / (double)r.Reads.Count, 4),
                ["skipped_frames"] = r.Skipped, ["reads"] = r.Reads.Count, ["mean_k"] = Math.Round(r.Ks.DefaultIfEmpty(0).Average(), 2),
                ["levels"] = r.Levels, ["f1"] = scoreF1 ? Math.Round(r.F1, 4) : null,
                ["target"] = heldBySkipping ? "below the most aggressive level: held by skipping" : "≤ 5% of reads over budget",
                ["most_aggressive_read_ms_p50_in_turns"] = Math.Round(BenchStats.Percentile(inTurns.Reads, 0.5), 2), ["most_aggressive_read_ms_p95_in_turns"] = Math.Round(BenchStats.Percentile(inTurns.Reads, 0.95), 2),
                // The same comparison against the level as timed when the bench began (before the budgets).
                ["below_most_aggressive_at_start"] = budget < aggressive,
                ["unpruned_read_ms_p50_in_turns"] = Math.Round(BenchStats.Percentile(unprunedInTurns.Reads, 0.5), 2), ["unpruned_read_ms_p95_in_turns"] = Math.Round(BenchStats.Percentile(unprunedInTurns.Reads, 0.95), 2),
                ["budget_over_unpruned_in_turns"] = Math.Round(budget / unprunedP95InTurns, 3),
                // Each measured read in order, with its level: where the reads over the budget fell.
                ["read_ms"] = r.Reads.Select(x => Math.Round(x, 2)).ToArray(), ["read_levels"] = r.ReadLevels,
            });
            Console.Error.WriteLine($"bench budget: {name} at {f:0%} ({budget} ms): read p95 {BenchStats.Percentile(r.Reads, 0.95):0.0} ms, {r.Skipped} skipped{(scoreF1 ? $", F1 {r.F1:0.000}" : "")}");
        }
        return new Dictionary<string, object?>
        {
            ["config"] = name, ["decoder_layers"] = layers, ["visual_tokens_per_frame"] = visual, ["frames"] = frames.Count,
            ["budget_base"] = basePct == 0.5 ? "p50" : "p95",
            ["unpruned_read_ms_p50"] = Math.Round(BenchStats.Percentile(unprunedRun.Reads, 0.5), 2), ["unpruned_read_ms_p95"] = Math.Round(BenchStats.Percentile(unprunedRun.Reads, 0.95), 2),
            ["unpruned_read_alone_ms_p50"] = Math.Round(alone, 2), ["most_aggressive_level"] = ladder[^1].Name,
            ["most_aggressive_read_ms_p50"] = Math.Round(BenchStats.Percentile(aggressiveRun.Reads, 0.5), 2), ["most_aggressive_read_ms_p95"] = Math.Round(BenchStats.Percentile(aggressiveRun.Reads, 0.95), 2), ["ladder"] = ladder.Select(l => l.Name).ToArray(),
            ["unpruned_f1"] = unprunedF1 is { } u ? Math.Round(u, 4) : null, ["budgets"] = budgets,
            ["levels_held"] = levels ? fixedLevels : null, ["levels_mixed"] = mixed,
        };
    }

    /// <param name="ReadLevels">The level of each read in <paramref name="Reads"/>, in order.</param>
    sealed record StreamResult(List<double> Reads, long Skipped, List<int> Ks, double F1, Dictionary<string, int> Levels, List<string> ReadLevels);

    /// <summary>One stream over the frames: the governor at <paramref name="budget"/> (null: no governor; reads unpruned, or at <paramref name="fixedPruning"/>), a caption every third read.</summary>
    static StreamResult Stream(Engine engine, List<BenchFrame> frames, double? budget, PruningConfig schedule, int warmup, int visual, CancellationToken ct,
        PruningConfig? fixedPruning = null, Func<int, PruningConfig?>? perFrame = null)
    {
        using var stream = new BenchStream(engine, budget, schedule, warmup, visual, fixedPruning);
        for (int i = 0; i < frames.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            if (perFrame is not null) stream.Pruning = perFrame(i);
            stream.Push(frames[i], i);
        }
        return stream.Result();
    }

    /// <summary>
    /// Streams over the same frames, taking turns <paramref name="piece"/> frames at a time in a
    /// shuffled order: each piece of one is timed within seconds of the same piece of the others,
    /// so a drift in the machine's speed reaches all of them. Disposes them.
    /// </summary>
    static StreamResult[] InTurns(BenchStream[] streams, List<BenchFrame> frames, int piece, Random order, CancellationToken ct)
    {
        try
        {
            for (int start = 0; start < frames.Count; start += piece)
                foreach (var s in streams.OrderBy(_ => order.Next()).ToArray())
                    for (int i = start; i < Math.Min(frames.Count, start + piece); i++)
                    {
                        ct.ThrowIfCancellationRequested();
                        s.Push(frames[i], i);
                    }
            return streams.Select(s => s.Result()).ToArray();
        }
        finally { foreach (var s in streams) s.Dispose(); }
    }

    /// <summary>A GPE stream with its driver, fed a frame at a time: the reads it timed (after the warm-up), the skips, k, the levels and F1.</summary>
    sealed class BenchStream : IDisposable
    {
        readonly GpeSession _session;
        readonly StreamingDriver _driver;
        readonly int _warmup, _visual;
        readonly List<double> _reads = new();
        readonly List<int> _ks = new();
        readonly Dictionary<string, int> _levels = new();
        readonly List<string> _readLevels = new();
        FactScore _score;
        int _readCount;

        public BenchStream(Engine engine, double? budget, PruningConfig schedule, int warmup, int visual, PruningConfig? fixedPruning = null)
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

        public void Push(BenchFrame frame, int index)
        {
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
            _readLevels.Add(level);
        }

        public StreamResult Result() => new(_reads, _driver.Stats.BudgetSkipped, _ks, _score.F1, _levels, _readLevels);

        /// <summary>The setting the next read is at, where no governor chooses it.</summary>
        public PruningConfig? Pruning { set => _session.Pruning = value; }

        public void Dispose()
        {
            _driver.Dispose();
            _session.Dispose();
        }
    }
}
