using System.CommandLine;
using System.Text.Json.Nodes;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Model.Kernels;

namespace RealtimeAssistant.Tests.App;

/// <summary>`ra bench pruning` and `ra bench streaming` end to end on the shipped model, shrunk to seconds: the JSON the issues specify.</summary>
public class BenchCommandTests
{
    /// <summary>Runs a bench command with --json and returns what it wrote.</summary>
    static async Task<JsonNode> RunToJson(Command command, params string[] args)
    {
        var json = Path.Combine(Capture.TestMedia.TempDir("bench-" + command.Name), "out.json");
        Assert.Equal(0, await command.Parse([.. args, "--json", json]).InvokeAsync());
        return JsonNode.Parse(File.ReadAllText(json))!;
    }

    /// <summary>
    /// `bench gate` on the demo video's own clip (seed 5, plain): gate 0 reads every frame due a
    /// read; the default gate reads fewer, and the triangle that leaves the frame at 4.6 s (a move
    /// too small for the mean) is still read. The F1s are scores, within 0..1.
    /// </summary>
    [Fact]
    public async Task Gate_OnTheDemoClip_ReadsEveryFrameDueAtZero_AndFewerAtTheDefault()
    {
        var root = await RunToJson(GateBench.Create(), "--clips", "1", "--seed", "5", "--plain", "--seconds", "8", "--gates", "0", "1");
        var gates = root["gates"]!.AsArray();
        Assert.Equal(2, gates.Count);
        var (all, gated) = (gates[0]!, gates[1]!);
        Assert.Equal(all["frames_due"]!.GetValue<long>(), all["frames_read"]!.GetValue<long>());
        Assert.Equal(24, all["frames_due"]!.GetValue<long>()); // 8 s at 15 fps, every 5th frame
        Assert.InRange(gated["frames_read"]!.GetValue<long>(), 1, all["frames_read"]!.GetValue<long>() - 1);
        // From 4.6 s the triangle leaves and the red cross drifts: the grey mean barely moved, the
        // colour cells did (a gate on the grey mean alone read 5 of these 24 frames; this one, 12).
        Assert.True(gated["frames_read"]!.GetValue<long>() >= 10, $"only {gated["frames_read"]} of 24 read: the scene's small changes went unseen");
        foreach (var g in gates)
        {
            Assert.InRange(g!["shown_f1"]!.GetValue<double>(), 0.01, 1);
            Assert.InRange(g["written_f1"]!.GetValue<double>(), 0.01, 1);
        }
        Assert.Equal(2, await GateBench.Create().Parse(["--gates", "300"]).InvokeAsync());
    }

    [Fact]
    public void Percentile_IsTheNearestRank_OfValuesInAnyOrder()
    {
        double[] v = [40, 10, 30, 20, 50];
        Assert.Equal(30, BenchStats.Percentile(v, 0.5));
        Assert.Equal(50, BenchStats.Percentile(v, 0.95));
        Assert.Equal(10, BenchStats.Percentile(v, 0.2));
        Assert.Equal(20, BenchStats.Percentile(v, 0.21));
        Assert.True(double.IsNaN(BenchStats.Percentile([], 0.5)));
    }

    [Fact]
    public void PairedSe_IsTheStandardErrorOfTheMeanDifference()
    {
        // Differences 1, 2, 3: mean 2, sample sd 1, so the SE is 1/√3. A shift common to both sides cancels.
        Assert.Equal(1 / Math.Sqrt(3), BenchStats.PairedSe(new double[] { 1.5, 2.5, 3.5 }, new double[] { 0.5, 0.5, 0.5 }), 12);
        Assert.Equal(0, BenchStats.PairedSe(new double[] { 0.9, 0.7, 0.4 }, new double[] { 0.8, 0.6, 0.3 }), 12);
        Assert.True(double.IsNaN(BenchStats.PairedSe(new double[] { 1 }, new double[] { 0 })));
        Assert.Throws<ArgumentException>(() => BenchStats.PairedSe(new double[] { 1, 2 }, new double[] { 0 }));
    }

    [Fact]
    public void RatioInterval_HoldsTheRatioOfTheTails_AndNarrowsWithMoreSamples()
    {
        static double[] Spread(int n, double scale, int seed) { var r = new Random(seed); return Enumerable.Range(0, n).Select(_ => scale * (1 + r.NextDouble())).ToArray(); }
        var (a, b) = (Spread(40, 6, 1), Spread(40, 10, 2));
        double point = BenchStats.Percentile(a, 0.95) / BenchStats.Percentile(b, 0.95);
        var few = BenchStats.RatioInterval(a, b, 0.95)!.Value;
        Assert.InRange(point, few.Low, few.High);
        Assert.True(few.Low < few.High);
        Assert.Equal(few, BenchStats.RatioInterval(a, b, 0.95)!.Value); // seeded: the same samples give the same interval
        var many = BenchStats.RatioInterval(Spread(4000, 6, 1), Spread(4000, 10, 2), 0.95)!.Value;
        Assert.True(many.High - many.Low < (few.High - few.Low) / 3, $"{many} is not narrower than {few}");
        Assert.InRange(0.6, many.Low - 0.02, many.High + 0.02); // the two spreads' true p95 ratio is 0.6
        Assert.Null(BenchStats.RatioInterval(a.Take(4).ToArray(), b, 0.95));
    }

    /// <summary>
    /// Captions of one turn share its luck (in the app, which render a ready caption waits for): a
    /// side whose turns land 16 ms apart has a p95 set by which turns it drew. The interval that
    /// resamples turns as well as captions is wider than the one that pools the captions, and both
    /// hold the measured ratio; with one turn a side the two are the same kind of interval.
    /// </summary>
    [Fact]
    public void RatioInterval_OverTurns_IsWiderThanOverPooledSamples_WhenTurnsDiffer()
    {
        static double[] Turn(double at, int seed) { var r = new Random(seed); return Enumerable.Range(0, 40).Select(_ => at + r.NextDouble()).ToArray(); }
        IReadOnlyList<double>[] a = [Turn(14, 1), Turn(30, 2), Turn(14, 3)], b = [Turn(20, 4), Turn(20, 5), Turn(36, 6)];
        var pooled = BenchStats.RatioInterval(a.SelectMany(t => t).ToArray(), b.SelectMany(t => t).ToArray(), 0.95)!.Value;
        var turns = BenchStats.RatioInterval(a, b, 0.95)!.Value;
        double point = BenchStats.Percentile(a.SelectMany(t => t), 0.95) / BenchStats.Percentile(b.SelectMany(t => t), 0.95);
        Assert.InRange(point, turns.Low, turns.High);
        Assert.True(turns.High - turns.Low > 3 * (pooled.High - pooled.Low), $"over turns {turns}, pooled {pooled}");
        Assert.True(turns.Low < 14.0 / 36 * 1.1 && turns.High > 30.0 / 20 * 0.9, $"{turns} leaves out a draw of the turns"); // all-fast a against all-slow b, and the reverse
        Assert.Null(BenchStats.RatioInterval([a[0].Take(4).ToArray()], b, 0.95));
    }

    [Fact]
    public async Task Serve_AtASpeed_StreamsTheClipReTimedWithEveryFrame_BatchingOnAndOff_DraftsOnAndOff()
    {
        var root = await RunToJson(BenchCommand.Create(), "serve", "--speed", "2", "--streams", "1", "--rounds", "1", "--seconds", "2", "--warmup", "1", "--chats", "0", "--draft-tokens", "7");
        Assert.Equal(2, root["speed"]!.GetValue<double>());
        Assert.Equal(30, root["source_fps"]!.GetValue<double>(), 1); // demo.mp4 is 15 fps
        var configs = root["configs"]!.AsArray();
        Assert.Equal(["True 0", "True 7", "False 0", "False 7"],
            configs.Select(c => $"{c!["batching"]!.GetValue<bool>()} {c["draft_tokens"]!.GetValue<int>()}").OrderBy(x => !x.StartsWith("True")).ThenBy(x => x));
        foreach (var c in configs) Assert.True(c!["caption_hz_total"]!.GetValue<double>() > 0, $"no caption with batching {c["batching"]}, drafts {c["draft_tokens"]}");
        Assert.True(root["total_hz_1_drafts_over_off"]!.GetValue<double>() > 0);
    }

    [Fact]
    public async Task App_TakesTurnsBetweenTheModes_AndScoresF1AtTheRungsTheTimedTurnsRead()
    {
        var root = await RunToJson(BenchCommand.Create(), "app", "--seconds", "4", "--rounds", "1", "--warmup", "1", "--f1-clips", "2", "--frame-budget-ms", "12", "--gate", "0"); // every frame offered: enough captions for the intervals
        var modes = root["modes"]!.AsArray();
        Assert.Equal(["gpe", "reencode"], modes.Select(m => m!["mode"]!.GetValue<string>()));
        Assert.Equal("gpe", root["default_mode"]!.GetValue<string>());
        Assert.Equal(modes[0]!["caption_hz"]!.GetValue<double>(), root["caption_hz"]!.GetValue<double>()); // the top level is the default mode's
        var schedule = RealtimeAssistant.Pruning.PruningConfig.Load(Path.Combine(RealtimeAssistant.Cli.App.AppModel.Resolve(null), "pruning.json"));
        var ladder = RealtimeAssistant.Streaming.FrameGovernor.Ladder(schedule, 8, 64).Select(l => l.Name).ToHashSet();
        foreach (var m in modes)
        {
            Assert.True(m!["render_fps"]!.GetValue<double>() > 0);
            Assert.True(m["caption_hz"]!.GetValue<double>() > 0, $"{m["mode"]} wrote no caption");
            Assert.True(m["latency_ms_p50"]!.GetValue<double>() <= m["latency_ms_p95"]!.GetValue<double>());
            // A caption's first word is on screen no later than the caption is whole.
            Assert.InRange(m["first_word_ms_p50"]!.GetValue<double>(), 0.1, m["latency_ms_p95"]!.GetValue<double>());
            Assert.InRange(m["f1"]!.GetValue<double>(), 0.01, 1);
            // The F1 pass reads at the rungs the timed turns read, drawn in their proportions, with no governor of its own.
            var timed = m["levels_read"]!.AsObject();
            Assert.All(timed, kv => Assert.Contains(kv.Key, ladder));
            var f1Levels = m["f1_levels_read"]!.AsObject();
            Assert.True(f1Levels.Sum(kv => kv.Value!.GetValue<long>()) > 0);
            Assert.All(f1Levels, kv => Assert.Contains(kv.Key, timed.Select(t => t.Key)));
            Assert.Equal("drawn in the timed turns' proportions", m["f1_levels"]!.GetValue<string>());
            Assert.Equal(0, m["f1_budget_skipped_frames"]!.GetValue<long>());
        }
        var ratio = root["gpe_over_reencode"]!;
        Assert.Equal(Math.Round(modes[0]!["caption_hz"]!.GetValue<double>() / modes[1]!["caption_hz"]!.GetValue<double>(), 3), ratio["caption_hz_ratio"]!.GetValue<double>(), 3);
        // Each measured caption's latency is there, and the p95 is theirs.
        foreach (var m in modes)
        {
            var each = m!["latency_ms"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            Assert.Equal(m["latency_ms_p95"]!.GetValue<double>(), BenchStats.Percentile(each, 0.95), 1);
            // A turn's edges can hold one caption's first word and not its end, or the other way round.
            Assert.InRange(m["first_word_ms"]!.AsArray().Count, each.Length - 2, each.Length + 2);
        }
        // An interval needs 5 captions a side; a short turn at a tight budget may write fewer.
        if (modes.All(m => m!["latency_ms"]!.AsArray().Count >= 5))
        {
            var ci = ratio["latency_p95_ratio_ci95"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            Assert.True(ci[0] > 0 && ci[0] <= ci[1], $"interval {ci[0]}–{ci[1]}");
        }
        else Assert.Null(ratio["latency_p95_ratio_ci95"]);
    }

    [Fact]
    public async Task Budget_WithLevels_HoldsEachRungOfTheLadder_ItsReadTimesF1AndShareOverEachBudget()
    {
        var root = await RunToJson(BudgetBench.Create(), "--skip-llava", "--clips", "2", "--fractions", "100,50", "--warmup-reads", "2", "--levels");
        var demo = root["configs"]!.AsArray().Single()!;
        var ladder = demo["ladder"]!.AsArray().Select(l => l!.GetValue<string>()).ToList();
        var held = demo["levels_held"]!.AsArray();
        Assert.Equal(ladder, held.Select(l => l!["level"]!.GetValue<string>()));
        foreach (var l in held)
        {
            Assert.InRange(l!["f1"]!.GetValue<double>(), 0, 1);
            Assert.True(l["read_ms_p50"]!.GetValue<double>() > 0);
            Assert.True(l["read_ms_p50"]!.GetValue<double>() <= l["read_ms_p95"]!.GetValue<double>());
            var over = l["over_budget_fraction_at"]!;
            // The same reads against a tighter budget: never fewer over it.
            Assert.InRange(over["100%"]!.GetValue<double>(), 0, over["50%"]!.GetValue<double>());
        }
        // A rung drawn at random for each read: several rungs of the ladder, every read counted, beside the held rungs' mean.
        var mixed = demo["levels_mixed"]!;
        var drawn = mixed["levels"]!.AsObject();
        Assert.True(drawn.Count >= 2, $"the draw read {drawn.Count} rung(s)");
        Assert.All(drawn, kv => Assert.Contains(kv.Key, ladder));
        Assert.Equal(2 * 17 - 2, drawn.Sum(kv => kv.Value!.GetValue<int>())); // two clips of 17 frames, less the warm-up reads
        Assert.InRange(mixed["f1"]!.GetValue<double>(), 0, 1);
        // The mean is rounded to 4 places, so it is within that rounding of the held rungs' mean.
        Assert.Equal(held.Average(l => l!["f1"]!.GetValue<double>()), mixed["held_levels_mean_f1"]!.GetValue<double>(), tolerance: 1e-4);
        // By default a budget is a fraction of the unpruned read's p95: the one its reads meet with at most 5% over.
        Assert.Equal("p95", demo["budget_base"]!.GetValue<string>());
        var at100 = demo["budgets"]!.AsArray().Single(b => b!["fraction"]!.GetValue<double>() == 1)!;
        Assert.Equal(demo["unpruned_read_ms_p95"]!.GetValue<double>(), at100["budget_ms"]!.GetValue<double>(), 2);
        // Each budget's stream took turns with the most aggressive level: a budget below that level's
        // time in turns is held by skipping, one above it is a target; the time at the start is kept beside.
        foreach (var b in demo["budgets"]!.AsArray())
        {
            double inTurns = b!["most_aggressive_read_ms_p95_in_turns"]!.GetValue<double>(), budget = b["budget_ms"]!.GetValue<double>();
            Assert.True(inTurns > 0);
            Assert.True(b["most_aggressive_read_ms_p50_in_turns"]!.GetValue<double>() <= inTurns);
            Assert.Equal(budget < inTurns ? "below the most aggressive level: held by skipping" : "≤ 5% of reads over budget", b["target"]!.GetValue<string>());
            Assert.Equal(budget < demo["most_aggressive_read_ms_p95"]!.GetValue<double>(), b["below_most_aggressive_at_start"]!.GetValue<bool>());
            // The unpruned reads took turns as well: the budget against their p95 then, not at the start.
            double unprunedInTurns = b["unpruned_read_ms_p95_in_turns"]!.GetValue<double>();
            Assert.InRange(b["unpruned_read_ms_p50_in_turns"]!.GetValue<double>(), 0.001, unprunedInTurns);
            // The JSON's p95 is rounded to 0.01 ms and the ratio to 3 places; the ratio was taken before either.
            Assert.Equal(budget / unprunedInTurns, b["budget_over_unpruned_in_turns"]!.GetValue<double>(), tolerance: 2e-3);
        }
        // Without --levels nothing is held; --budget-base p50 takes the median instead.
        var plain = await RunToJson(BudgetBench.Create(), "--skip-llava", "--clips", "1", "--fractions", "100", "--warmup-reads", "2", "--budget-base", "p50");
        var plainDemo = plain["configs"]![0]!;
        Assert.Null(plainDemo["levels_held"]);
        Assert.Null(plainDemo["levels_mixed"]);
        Assert.Equal("p50", plainDemo["budget_base"]!.GetValue<string>());
        Assert.Equal(plainDemo["unpruned_read_ms_p50"]!.GetValue<double>(), plainDemo["budgets"]![0]!["budget_ms"]!.GetValue<double>(), 2);
    }

    /// <summary>
    /// `bench weights` loads one model per format and captions the same frames in turns: on a
    /// Qwen2-VL checkpoint stored in bf16, auto keeps its bf16 weights, and every round's times and
    /// tokens are paired with the first format's. As on a CPU without native bf16 products, the
    /// bf16 prefill multiplies float32 widenings of the same weights, so its tokens are float32's.
    /// </summary>
    [Fact]
    public async Task Weights_LoadsEachFormat_AndPairsEveryRoundWithTheFirst()
    {
        var dir = Capture.TestMedia.TempDir("bench-weights-model");
        var fixture = new RealtimeAssistant.Tests.Model.Families.HfFixture("qwen2_vl").Dir;
        foreach (var f in Directory.GetFiles(fixture).Where(f => !Path.GetFileName(f).StartsWith("expected", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        var reader = RealtimeAssistant.Model.Checkpoint.SafeTensorsReader.Open(Path.Combine(fixture, "model.safetensors"));
        RealtimeAssistant.Model.Checkpoint.SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            reader.Tensors.Keys.Select(k => (k, reader.Load(k).to_type(TorchSharp.torch.ScalarType.BFloat16))).ToList());

        var root = await RunToJson(BenchCommand.Create(), "weights", "-m", dir, "--formats", "f32", "auto", "q8", "--rounds", "2", "--max-new-tokens", "3", "--frame-size", "64", "48");
        var formats = root["formats"]!.AsArray();
        Assert.Equal(["f32", "auto", "q8"], formats.Select(f => f!["format"]!.GetValue<string>()));
        Assert.Equal(["f32", "bf16", "q8"], formats.Select(f => f!["loaded_as"]!.GetValue<string>()));
        foreach (var f in formats)
        {
            Assert.Equal(2, f!["vision_ms"]!.AsArray().Count);
            Assert.Equal(2, f["decode_ms_per_token"]!.AsArray().Count);
            Assert.True(f["prompt_tokens"]!.GetValue<int>() > 0);
        }
        // bf16 and q8 hold fewer bytes than float32.
        Assert.True(formats[2]!["weight_mb"]!.GetValue<double>() < formats[0]!["weight_mb"]!.GetValue<double>());
        var ratios = root["ratios"]!.AsArray();
        Assert.Equal(["auto", "q8"], ratios.Select(r => r!["format"]!.GetValue<string>()));
        Assert.All(ratios, r => Assert.Equal("f32", r!["to"]!.GetValue<string>()));
        Assert.All(ratios, r => Assert.True(r!["read"]!.GetValue<double>() > 0 && r["decode_step"]!.GetValue<double>() > 0));
        Assert.All(ratios, r => Assert.InRange(r!["tokens_equal_rounds"]!.GetValue<int>(), 0, 2));
        var widened = await RunToJson(BenchCommand.Create(), "weights", "-m", dir, "--formats", "f32", "auto", "--rounds", "2", "--max-new-tokens", "3", "--frame-size", "64", "48", "--no-bf16-matmul");
        Assert.Equal(RealtimeAssistant.Model.Kernels.CpuIsa.HasBf16Matmul ? "off (--no-bf16-matmul)" : "none on this CPU", widened["bf16_matmul"]!.GetValue<string>());
        Assert.Equal("bf16", widened["formats"]![1]!["loaded_as"]!.GetValue<string>());
        Assert.Equal(2, widened["ratios"]![0]!["tokens_equal_rounds"]!.GetValue<int>());
        // One format is no comparison.
        Assert.Equal(2, await BenchCommand.Create().Parse(["weights", "-m", dir, "--formats", "f32"]).InvokeAsync());
    }

    [Theory]
    [InlineData("f32", "Float32")]
    [InlineData("bf16", "BFloat16")]
    [InlineData("q8", "BFloat16")]
    public async Task Engine_ReportsEachWeightFormatsDecodeBandwidth_BesideTheReferencesInTheModelsDtype(string weights, string prefillDtype)
    {
        var root = await RunToJson(BenchCommand.Create(), "engine", "--layers", "2", "--hidden", "128", "--tokens", "12", "--decode", "3", "--reps", "1", "--weights", weights, "--profile");
        Assert.Equal(weights, root["weights"]!.GetValue<string>());
        Assert.Equal("Float32", root["matmul_dtype"]!.GetValue<string>()); // the reference runs in the model's dtype
        Assert.True(root["matmul_gflops"]!.GetValue<double>() > 0);
        Assert.True(root["memory_read_gbs"]!.GetValue<double>() > 0);
        // The prefill's fraction is of the matmul its products run: the weights' own dtype for dense
        // ones, and for bf16 and q8 bfloat16 only where the CPU has it natively (else float32 widenings of the weights).
        var expected = weights != "f32" && !RealtimeAssistant.Model.Kernels.CpuIsa.HasBf16Matmul ? "Float32" : prefillDtype;
        Assert.Equal(expected, root["prefill_matmul_dtype"]?.GetValue<string>() ?? "Float32");
        double mb = root["weight_mb"]!.GetValue<double>();
        // 2 layers of width 128 and a 32064×128 head: the head dominates, 16.4 MB in float32.
        Assert.InRange(mb, weights switch { "f32" => 17.0, "bf16" => 8.5, _ => 4.8 }, weights switch { "f32" => 18.0, "bf16" => 9.0, _ => 5.2 });
        Assert.True(root["decode_weight_gbs"]!.GetValue<double>() > 0);
        // Decode steps run fused (the default): the profile is the fused step's stages, and the layer path's is not run.
        var stages = root["decode_profile_fused"]!.AsArray().Select(r => r!["op"]!.GetValue<string>()).ToList();
        Assert.Subset(stages.ToHashSet(), new HashSet<string> { "embedding", "RMSNorm", "q/k/v product", "attention", "gate/up product", "down product", "lm_head" });
        Assert.Null(root["decode_profile"]);
    }

    [Fact]
    public async Task Engine_ProfilesTheLayerPathOpByOp_WhenDecodeIsNotFused()
    {
        var root = await RunToJson(BenchCommand.Create(), "engine", "--layers", "2", "--hidden", "128", "--tokens", "12", "--decode", "3", "--reps", "1", "--fused-decode", "off", "--profile");
        Assert.Equal(2, root["decode_profile"]!.AsArray().Count(r => r!["op"]!.GetValue<string>() is "RMSNorm" or "lm_head"));
        Assert.Null(root["decode_profile_fused"]);
    }

    /// <summary>
    /// `--attention compare` runs the folded and per-key attention kernels in turns each round,
    /// and both decode the same tokens; every turn also times verify blocks of up to 8 rows.
    /// Comparing two settings at once is a user error.
    /// </summary>
    [Fact]
    public async Task Engine_ComparesTheAttentionKernels_InTurns_AndTimesVerifyBlocks()
    {
        var root = await RunToJson(BenchCommand.Create(), "engine", "--layers", "2", "--hidden", "128", "--tokens", "40", "--decode", "6", "--reps", "2", "--attention", "compare");
        Assert.Equal("compare", root["attention"]!.GetValue<string>());
        Assert.True(root["folded_attention_same_tokens"]!.GetValue<bool>());
        Assert.Equal(2, root["per_key_attention_runs_ms_per_token"]!.AsArray().Count);
        Assert.Equal(2, root["decode_runs_ms_per_token"]!.AsArray().Count);
        Assert.True(root["folded_attention_speedup"]!.GetValue<double>() > 0);
        Assert.True(root["folded_attention_block_speedup"]!.GetValue<double>() > 0);
        Assert.Equal(6, root["verify_block_rows"]!.GetValue<int>());
        Assert.True(root["verify_block_ms"]!.GetValue<double>() > 0);
        Assert.Equal(2, await BenchCommand.Create().Parse(["engine", "--attention", "compare", "--fused-decode", "compare"]).InvokeAsync());
        Assert.Equal(2, await BenchCommand.Create().Parse(["engine", "--attention", "sideways"]).InvokeAsync());
    }

    /// <summary>
    /// `--long-rows compare` decodes with x shared across four weight rows and one weight row at a
    /// time in turns, on a decoder whose down product has 4,096 inputs (width 1536): the same
    /// tokens, a ratio per round. Two comparisons at once, or an unknown value, are user errors.
    /// </summary>
    [Fact]
    public async Task Engine_ComparesSharedXAgainstPerRowProducts_InTurns()
    {
        var root = await RunToJson(BenchCommand.Create(), "engine", "--layers", "1", "--hidden", "1536", "--tokens", "20", "--decode", "4", "--reps", "2", "--long-rows", "compare");
        Assert.Equal("compare", root["long_rows"]!.GetValue<string>());
        Assert.True(root["shared_x_same_tokens"]!.GetValue<bool>());
        Assert.Equal(2, root["per_row_runs_ms_per_token"]!.AsArray().Count);
        Assert.Equal(2, root["decode_runs_ms_per_token"]!.AsArray().Count);
        Assert.True(root["shared_x_speedup"]!.GetValue<double>() > 0);
        Assert.Equal(2, await BenchCommand.Create().Parse(["engine", "--long-rows", "compare", "--attention", "compare"]).InvokeAsync());
        Assert.Equal(2, await BenchCommand.Create().Parse(["engine", "--long-rows", "sideways"]).InvokeAsync());
    }

    /// <summary>
    /// `--isa avx2` runs the CPU kernels' AVX2 path on a wider CPU (a laptop's path, timed here),
    /// shared x included, and says so in the JSON; a path this CPU lacks or an unknown one is a
    /// user error.
    /// </summary>
    [Fact]
    public async Task Engine_TimesANarrowerCpusKernelPath()
    {
        if (CpuIsa.Detected < KernelIsa.Avx2) Assert.Skip($"this CPU has no AVX2 path (it has {CpuIsa.Detected})");
        var root = await RunToJson(BenchCommand.Create(), "engine", "--layers", "1", "--hidden", "1536", "--tokens", "20", "--decode", "4", "--reps", "2", "--isa", "avx2", "--long-rows", "compare");
        Assert.StartsWith("Avx2 on ", root["kernels"]!.GetValue<string>());
        Assert.True(root["shared_x_same_tokens"]!.GetValue<bool>());
        Assert.Equal(KernelIsa.Avx512 <= CpuIsa.Detected ? 0 : 2, await BenchCommand.Create().Parse(["engine", "--layers", "1", "--hidden", "64", "--tokens", "4", "--decode", "1", "--reps", "1", "--isa", "avx512"]).InvokeAsync());
        Assert.Equal(2, await BenchCommand.Create().Parse(["engine", "--isa", "sse2"]).InvokeAsync());
        Assert.Equal(CpuIsa.Detected, CpuIsa.Current);
    }

    /// <summary>`--json -` leaves stdout to the JSON alone (the table goes to stderr), so the output pipes into jq.</summary>
    [Fact]
    public async Task JsonToStdout_IsTheJsonAlone()
    {
        var (code, stdout, stderr) = await Server.ServerTestSupport.Run("dotnet", [Server.ServerTestSupport.RaDll, "bench", "engine", "--layers", "1", "--hidden", "64", "--tokens", "4", "--decode", "2", "--reps", "1", "--json", "-"]);
        Assert.True(code == 0, stderr);
        var root = JsonNode.Parse(stdout)!; // anything on stdout but the JSON fails to parse
        Assert.True(root["prefill_ms"]!.GetValue<double>() > 0);
        Assert.Contains("prefill_ms", stderr); // the table, on stderr
    }

    [Fact]
    public async Task CaptionJson_IsAllOfStdout_TheTextStreamingToStderr()
    {
        var image = Path.Combine(RealtimeAssistant.Tests.Capture.TestMedia.TempDir("caption-json"), "frame.png");
        using (var frame = new OpenCvSharp.Mat(64, 64, OpenCvSharp.MatType.CV_8UC3, new OpenCvSharp.Scalar(40, 120, 200))) OpenCvSharp.Cv2.ImWrite(image, frame);
        var (code, stdout, stderr) = await Server.ServerTestSupport.Run("dotnet", [Server.ServerTestSupport.RaDll, "caption", "--image", image, "--max-new-tokens", "6", "--json"]);
        Assert.True(code == 0, stderr);
        var root = JsonNode.Parse(stdout)!; // anything on stdout but the JSON fails to parse
        var text = root["text"]!.GetValue<string>();
        Assert.NotEmpty(text);
        Assert.Equal(text, string.Concat(root["tokens"]!.AsArray().Select(t => t!["text"]!.GetValue<string>())));
        Assert.Contains(text, stderr); // streamed as it was generated
    }

    [Fact]
    public async Task StreamJsonlToStdout_IsOneSegmentALine_TheRestOnStderr()
    {
        var cwd = RealtimeAssistant.Tests.Capture.TestMedia.TempDir("stream-jsonl");
        var (code, stdout, stderr) = await Server.ServerTestSupport.Run("dotnet", [Server.ServerTestSupport.RaDll, "stream", "--max-frames", "60", "--policy", "every:3", "--jsonl", "-"], cwd);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        foreach (var line in lines) Assert.False(string.IsNullOrEmpty(JsonNode.Parse(line)!["text"]!.GetValue<string>()), line);
        Assert.Contains($"[00:00.0] {JsonNode.Parse(lines[0])!["text"]}", stderr); // the text as a reader sees it, on stderr
        Assert.False(File.Exists(Path.Combine(cwd, "-")), "wrote a file named '-'");
    }

    [Fact]
    public async Task Pruning_WritesEveryMethodsPrefillFlopsKeptTokensAndF1()
    {
        var root = await RunToJson(PruningBench.Create(), "--skip-llava", "--window-frames", "1", "--frames", "1", "--reps", "1", "--scenes", "2");
        var demo = root["configs"]!.AsArray().Single()!;
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
            // The gap to none carries its noise (paired over the same scenes); none has no gap.
            if (name == "none") Assert.Null(m["f1_gap_se"]);
            else Assert.True(m["f1_gap_se"]!.GetValue<double>() >= 0);
        }
        // The ceiling keeps nothing after layer 0 and costs the fewest FLOPs of all.
        var ceiling = methods["ceiling (no visual token after layer 0)"];
        Assert.Equal(0, ceiling["kept_tokens"]!.GetValue<double>());
        Assert.True(methods.Values.Where(m => m["flops"] is not null).All(m => m["flops"]!.GetValue<double>() >= ceiling["flops"]!.GetValue<double>()));
        // Budget mode keeps at most its k (12 on the demo model).
        Assert.True(methods["visipruner-budget"]["kept_tokens"]!.GetValue<double>() <= 12);
    }

    [Fact]
    public async Task Streaming_WritesEachMethodsLatencyAtEveryCheckpointAndItsF1()
    {
        var root = await RunToJson(StreamingBench.Create(), "--window", "6", "--at", "2", "9", "--clips", "2", "--caption-tokens", "2");
        var methods = root["methods"]!.AsArray();
        Assert.Equal(new[] { "gpe", "re-encoding", "interleaved" }, methods.Select(m => m!["method"]!.GetValue<string>()));
        foreach (var m in methods)
        {
            var at = m!["update_ms_at"]!.AsObject();
            Assert.Equal(new[] { "2", "9" }, at.Select(kv => kv.Key).OrderBy(k => int.Parse(k)));
            Assert.All(at, kv => Assert.True(kv.Value!.GetValue<double>() > 0));
            Assert.InRange(m["f1"]!.GetValue<double>(), 0, 1);
        }
        var summary = root["summary"]!;
        // The shipped model's frames attended 4 frames in training: that is the default band at W 6.
        Assert.Equal(4, summary["gpe_frame_band"]!.GetValue<int>());
        Assert.Equal(2, summary["clips"]!.GetValue<int>());
        Assert.True(summary["f1_gpe_minus_reencoding_se"]!.GetValue<double>() >= 0);
    }

    [Theory]
    [InlineData("--clips", "0")]
    [InlineData("--quality-window", "40")] // no caption would have a full window: F1 of nothing
    [InlineData("--frame-band", "all")]
    public async Task Streaming_AbsurdArgumentsAreUserErrors(string option, string value) =>
        Assert.Equal(2, await StreamingBench.Create().Parse([option, value]).InvokeAsync());
}
