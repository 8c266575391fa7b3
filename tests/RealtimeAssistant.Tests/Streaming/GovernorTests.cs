using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Streaming;

/// <summary>The frame-budget governor: it prunes harder until reads fit, relaxes when they fit easily, and skips frames when nothing fits.</summary>
public class GovernorTests(ITestOutputHelper log)
{
    static List<GovernorLevel> Levels(int n) => Enumerable.Range(0, n).Select(i => new GovernorLevel($"L{i}", null)).ToList();

    /// <summary>Runs reads whose cost is the chosen level's; returns the levels read at.</summary>
    static List<int> Drive(FrameGovernor g, double[] cost, int frames)
    {
        var chosen = new List<int>();
        for (int i = 0; i < frames; i++)
        {
            var c = g.Choose();
            if (c.Skip) continue;
            chosen.Add(c.Level);
            g.Observe(c.Level, cost[c.Level]);
        }
        return chosen;
    }

    [Fact]
    public void StepsUpUntilReadsFit_ThenRelaxesWhenTheyFitEasily()
    {
        var g = new FrameGovernor(50, Levels(4));
        var read = Drive(g, [100, 60, 40, 20], 60);
        Assert.Equal(2, g.Current);                       // 40 ms fits 50 with the margin; 60 does not
        Assert.InRange(read.Skip(10).Count(l => l != 2), 0, 3); // it stays there, trying level 1 now and then
        Assert.Equal(0, g.Skipped);

        read = Drive(g, [55, 30, 15, 8], 200);          // the machine got faster
        Assert.Equal(1, g.Current);                       // level 1 fits now; level 0 (55 ms) still does not
        // Trying level 0 again runs over each time, so it is tried less and less often.
        int overs = read.TakeLast(150).Count(l => l == 0);
        Assert.InRange(overs, 1, 8);
    }

    [Fact]
    public void ALevelThatRanFarOver_IsTriedAgainOnlyWhenItsCostIsStale_OrTheLevelAboveGetsCheaperInProportion()
    {
        var g = new FrameGovernor(100, Levels(2));
        var read = Drive(g, [160, 50], 300);
        Assert.Equal(1, g.Current);
        // Level 0 is read first (nothing known), then tried once more with level 1 measured beside
        // it; from then on 160 ms at a level-1 cost of 50 cannot fit, and it is tried again only
        // when that cost is more than Fresh reads old.
        var tries = read.Select((l, i) => (l, i)).Where(x => x.l == 0).Select(x => x.i).ToList();
        Assert.InRange(tries.Count, 3, 3 + 300 / FrameGovernor.Fresh);
        Assert.All(tries.Skip(2).Zip(tries.Skip(1)), p => Assert.True(p.First - p.Second > FrameGovernor.Fresh, string.Join(",", tries)));
        long over = g.OverBudget;
        Assert.Equal(tries.Count, over);

        read = Drive(g, [80, 25], 40);                   // everything got twice as fast
        Assert.Equal(0, g.Current);                       // 160 × 25/50 = 80 might fit: tried within a probe interval, and it does
        Assert.Equal(over, g.OverBudget);
    }

    [Fact]
    public void ItsMarginFollowsHowFarReadsStrayFromWhatItExpects()
    {
        var g = new FrameGovernor(50, Levels(2));
        double[] cost = [45, 30];
        // Until it has seen enough reads it keeps a fixed margin: 45 ms is too close to 50.
        var read = Drive(g, cost, FrameGovernor.SlackMinReads);
        Assert.Equal(1 / FrameGovernor.Fit, g.Slack, 6);
        Assert.Equal(1, g.Current);
        // Steady reads: the slack is 1, and 45 ms fits.
        read = Drive(g, cost, 100);
        Assert.Equal(1, g.Slack);
        Assert.Equal(0, g.Current);
        Assert.True(read.TakeLast(50).All(l => l == 0), string.Join(",", read));
        // Reads that stray: one in eight takes 1.3× what it should. Level 0's 80th percentile is
        // still 45 ms, but one read in eight would run over. The slack grows past 50/45, and the
        // governor leaves level 0 for level 1, whose slow reads (39 ms) still fit.
        double[] stray = [1, 0.95, 1, 1, 1.3, 1, 0.98, 1];
        int i = 0;
        read.Clear();
        long overBefore = g.OverBudget;
        for (int n = 0; n < 200; n++)
        {
            var c = g.Choose();
            if (c.Skip) continue;
            read.Add(c.Level);
            g.Observe(c.Level, cost[c.Level] * stray[i++ % stray.Length]);
        }
        Assert.True(g.Slack > 50.0 / 45, $"slack {g.Slack}");
        Assert.Equal(1, g.Current);
        Assert.True(read.TakeLast(100).Count(l => l == 1) >= 90, string.Join(",", read));
        Assert.True(g.OverBudget - overBefore < 30, $"{g.OverBudget - overBefore} reads over");
    }

    [Fact]
    public void ASlowSpell_MovesItOnlyAsFarAsTheSpellNeeds_AndBackWhenItEnds()
    {
        var g = new FrameGovernor(10, Levels(4));
        double[] cost = [8, 6, 4, 2];
        Drive(g, [12, 6, 4, 2], 30);                      // levels 0 and 1 measured
        var read = Drive(g, cost, 100);
        Assert.Equal(0, g.Current);
        Assert.Equal(1, g.Slack);
        // The machine slows by 1.4 for 60 reads: level 0 (11.2 ms) runs over, level 1 (8.4) fits.
        // The spell, seen at level 0, is expected at level 1 too; it is not counted again as the
        // reads' stray from their estimates, which would push the governor past level 1.
        read = Drive(g, cost.Select(c => c * 1.4).ToArray(), 60);
        log.WriteLine($"spell: {string.Join(",", read)}; drift {g.Drift:0.00}, slack {g.Slack:0.00}");
        Assert.Equal(1.4, g.Drift, 6);
        Assert.True(read.Skip(10).All(l => l == 1), string.Join(",", read));
        // The spell ends: back at level 0 within a probe interval or two.
        read = Drive(g, cost, 60);
        log.WriteLine($"after: {string.Join(",", read)}; drift {g.Drift:0.00}, slack {g.Slack:0.00}");
        Assert.Equal(1, g.Drift, 6);
        Assert.True(read.Skip(2 * FrameGovernor.FirstProbe).All(l => l == 0), string.Join(",", read));
    }

    [Fact]
    public void AfterABurstOfSlowReads_ItComesBackToTheGentlestLevelThatFits()
    {
        var g = new FrameGovernor(10, Levels(3));
        double[] cost = [7, 4, 2];
        Drive(g, cost.Select(c => c * 1.5).ToArray(), 20); // a slow start: level 0 runs over, level 1 is measured
        Drive(g, cost, 60);
        Assert.Equal(0, g.Current);
        Drive(g, cost.Select(c => c * 3).ToArray(), 6);     // a passing burst: level 0's cost reads 21
        Assert.NotEqual(0, g.Current);
        // Level 0's burst cost, against level 1's ordinary one, says it cannot fit. That reading is
        // stale once Fresh reads have passed: level 0 is tried again, fits, and stays.
        var read = Drive(g, cost, 200);
        Assert.Equal(0, g.Current);
        Assert.True(read.TakeLast(100).All(l => l == 0), string.Join(",", read));
        Assert.True(read.Take(FrameGovernor.Fresh + 2 * FrameGovernor.FirstProbe).Contains(0), "level 0 is tried within Fresh reads and a probe or two");
    }

    [Fact]
    public void WhenNothingFits_FramesAreSkippedAndCounted_NotQueued()
    {
        var g = new FrameGovernor(50, Levels(3));
        var read = Drive(g, [200, 150, 120], 120);
        Assert.Equal(2, g.Current);
        // A 120 ms read takes the time of 2.4 frames: after each read about 1.4 frames are skipped.
        Assert.InRange(g.Skipped, 60, 80);
        Assert.Equal(120 - g.Skipped, read.Count);
        Assert.True(g.OverBudget >= read.Count - 3);
    }

    /// <summary>
    /// At the edge the budget bench's 25% budget sits at on the LLaVA shape (a few percent above
    /// the hardest rung's p95), noisy reads keep the target: at most 5% of reads over. The reads
    /// are shaped like that bench's trace (BENCHMARKS.md, "bench budget with 96 LLaVA-shaped
    /// reads"): each rung 35 ms dearer than the next, 7% noise, 3% of reads 1.2× slower, a ±5%
    /// drift; 300 seeded streams of 96 reads, the first 8 of each left out as the bench does.
    /// </summary>
    [Theory]
    [InlineData(1.04, 0.05)]
    [InlineData(1.08, 0.04)]
    [InlineData(1.26, 0.03)]
    public void OnNoisyReads_ABudgetJustAboveTheHardestRung_HasAtMostFivePercentOver(double overHardestP95, double atMost)
    {
        int[] exits = [14, 13, 12, 11, 10, 9, 8, 7]; // gentlest first
        static double Gauss(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        static double Read(Random r, int exit, int i) =>
            (265 + 35 * (exit - 7)) * (1 + 0.05 * Math.Sin(i / 6.0)) * Math.Exp(0.07 * Gauss(r)) * (r.NextDouble() < 0.03 ? 1.2 : 1);
        var alone = new Random(5);
        var hardest = Enumerable.Range(0, 20_000).Select(i => Read(alone, 7, i)).Order().ToArray();
        double budget = overHardestP95 * hardest[(int)(0.95 * hardest.Length)];
        long reads = 0, over = 0;
        double exitSum = 0;
        for (int seed = 0; seed < 300; seed++)
        {
            var r = new Random(seed);
            var g = new FrameGovernor(budget, exits.Select(e => new GovernorLevel($"exit {e}", null) { Work = 576.0 * e }).ToList());
            for (int i = 0; i < 96; i++)
            {
                var c = g.Choose();
                if (c.Skip) continue;
                double ms = Read(r, exits[c.Level], i);
                g.Observe(c.Level, ms);
                if (i < 8) continue;
                reads++;
                exitSum += exits[c.Level];
                if (ms > budget) over++;
            }
        }
        log.WriteLine($"budget {budget:0.0} ms ({overHardestP95}× the hardest rung's p95): {100.0 * over / reads:0.00}% of {reads} reads over, mean exit {exitSum / reads:0.00}");
        Assert.InRange(over / (double)reads, 0, atMost);
    }

    [Fact]
    public void ALiveSourceThatMovedOnPaysTheOverrunBack()
    {
        // Live pacing: a slow read means the next frame taken is several periods later; nothing more to skip.
        var g = new FrameGovernor(50, Levels(1));
        g.Observe(0, 120);
        Assert.False(g.Choose(framesElapsed: 3).Skip);
    }

    [Fact]
    public void TheLadderFollowsTheSchedule_NewestThenBudgetsThenEarlierExits()
    {
        var ladder = FrameGovernor.Ladder(AppTestSupport.TinySchedule, layers: 4, visualTokensPerFrame: 16);
        log.WriteLine(string.Join(" | ", ladder.Select(l => l.Name)));
        Assert.Equal(AppTestSupport.TinySchedule with { Method = "visipruner" }, ladder[0].Pruning);
        Assert.False(ladder[1].Pruning!.KeepNewestFrame);
        Assert.Equal(3, ladder[1].Pruning!.ExitLayer);
        var budgets = ladder.Select(l => l.Budget).Where(k => k is not null).Select(k => k!.Value).ToList();
        Assert.Equal([8, 4, 2, 1], budgets);
        Assert.Equal([2, 1], ladder.Skip(2 + budgets.Count).Select(l => l.Pruning!.ExitLayer!.Value));
        foreach (var l in ladder) StreamingOptions.ValidatePruning(l.Pruning, 4);
    }

    [Fact]
    public void AScheduleWhoseFilterStartsAtTheOlderFramesExit_GivesALadderOfPureExits()
    {
        // The demo model's schedule since v19: the filter never runs before an exit, so each rung
        // below the schedule is the whole frame up to its exit and nothing after (no k rungs).
        var schedule = new PruningConfig { ShallowLayers = 0, FilterFrom = 3, ExitLayer = 1, KeepNewestFrame = true, OlderFramesExitLayer = 3 };
        var ladder = FrameGovernor.Ladder(schedule, layers: 4, visualTokensPerFrame: 16);
        Assert.Equal(["newest spared, older exit 3", "exit 3", "exit 2", "exit 1"], ladder.Select(l => l.Name));
        Assert.All(ladder, l => Assert.Null(l.Budget));
        Assert.Equal([64.0, 48, 32, 16], ladder.Select(l => l.Work!.Value));
        using var engine = AppTestSupport.TinyEngine();
        var clip = ClipGenerator.Generate(7, 40, 15);
        foreach (var rung in ladder.Skip(1))
        {
            using var session = new GpeSession(engine, AppTestSupport.TinyOptions(window: 2, pruning: rung.Pruning));
            for (int f = 0; f < 2; f++)
                using (var img = clip.Render(f, 32, 32)) session.Read(img);
            int exit = rung.Pruning!.ExitLayer!.Value;
            // Every visual token up to the exit, none after: no filter dropped any on the way.
            Assert.Equal(Enumerable.Range(0, 4).Select(l => l < exit ? 16 : 0), session.Last.VisualPerLayer);
        }
    }

    [Fact]
    public void MinExitLayer_EndsTheLadder_SoBelowItFramesAreSkipped()
    {
        var schedule = new PruningConfig { ShallowLayers = 0, FilterFrom = 3, ExitLayer = 1, KeepNewestFrame = true, OlderFramesExitLayer = 3, MinExitLayer = 2 };
        var ladder = FrameGovernor.Ladder(schedule, layers: 4, visualTokensPerFrame: 16);
        Assert.Equal(["newest spared, older exit 3", "exit 3", "exit 2"], ladder.Select(l => l.Name));
        // From pruning.json, and checked against the model's depth.
        var dir = TestMedia.TempDir("min-exit");
        var path = Path.Combine(dir, "pruning.json");
        File.WriteAllText(path, """{"keep_newest_frame": true, "older_frames_exit_layer": 3, "min_exit_layer": 2}""");
        Assert.Equal(2, PruningConfig.Load(path).MinExitLayer);
        Assert.Contains("min_exit_layer", Assert.Throws<UserError>(() => (schedule with { MinExitLayer = 5 }).Validate(4)).Message);
        Assert.Contains("min_exit_layer", Assert.Throws<UserError>(() => (schedule with { MinExitLayer = 0 }).Validate(4)).Message);
        // With the floor at the schedule's own exit, only the schedule and its whole-frame exit remain.
        Assert.Equal(2, FrameGovernor.Ladder(schedule with { MinExitLayer = 3 }, 4, 16).Count);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryRungOfTheLadder_StreamsOnTheModel_AsTheGovernorMovesBetweenThem(bool shallowStage)
    {
        // With a shallow stage (s = 2 of 4 layers) the earliest exit falls inside it: after a frame
        // that left at layer 1, layer 0 holds a longer prior cache than layer 1, and a frame read
        // at a gentler rung next crosses both shallow layers.
        var schedule = shallowStage ? new PruningConfig { ShallowLayers = 2 } : AppTestSupport.TinySchedule;
        using var engine = AppTestSupport.TinyEngine();
        var ladder = FrameGovernor.Ladder(schedule, layers: 4, visualTokensPerFrame: 16);
        var clip = ClipGenerator.Generate(31, 40, 15);
        // Down the ladder one rung at a time and back up, as the governor moves.
        var order = Enumerable.Range(0, ladder.Count).Concat(Enumerable.Range(0, ladder.Count).Reverse()).ToList();
        using var session = new GpeSession(engine, AppTestSupport.TinyOptions(window: 3, pruning: ladder[0].Pruning));
        int frame = 0;
        foreach (var level in order)
        {
            var rung = ladder[level];
            session.Pruning = rung.Pruning;
            using (var img = clip.Render(frame++ % clip.FrameCount, 32, 32)) session.Read(img);
            Assert.Equal(rung.Name, session.Last.Level);
            var lengths = session.Cache.Layers.Select(l => l.Source.Length).ToArray();
            log.WriteLine($"{rung.Name}: source entries per layer {string.Join(",", lengths)}");
            if (frame % 3 == 0) Assert.NotEmpty(session.Write().Where(t => t.Id >= 0));
        }
        // Each rung alone, from a fresh stream: an exit leaves the deep layers fewer entries.
        foreach (var rung in ladder.Where(r => r.Pruning!.ExitLayer is not null && !r.Pruning.KeepNewestFrame))
        {
            using var alone = new GpeSession(engine, AppTestSupport.TinyOptions(window: 3, pruning: rung.Pruning));
            for (int f = 0; f < 3; f++) using (var img = clip.Render(f, 32, 32)) alone.Read(img);
            var lengths = alone.Cache.Layers.Select(l => l.Source.Length).ToArray();
            Assert.True(lengths[rung.Pruning!.ExitLayer!.Value] < lengths[0], $"{rung.Name}: layer {rung.Pruning.ExitLayer} holds as many entries as layer 0");
        }
    }

    [Theory]
    [InlineData(32)]
    [InlineData(28)]
    [InlineData(8)]
    public void NoRungOfTheReferenceLadder_BarsTheTextFromEveryLayerTheFrameReaches(int layers)
    {
        // The reference schedule (what a checkpoint without pruning.json runs) has a shallow stage
        // in which text reads no image token. A rung whose exit came at or before its end would
        // caption blind; one with no filter before its exit has no use for the stage at all.
        var ladder = FrameGovernor.Ladder(PruningConfig.Reference(layers), layers, visualTokensPerFrame: 576);
        int s = PruningConfig.Reference(layers).ShallowLayers;
        Assert.True(s > 0);
        foreach (var rung in ladder)
        {
            var p = rung.Pruning!;
            if (p.ExitLayer is not { } x || p.KeepNewestFrame) continue;
            Assert.True(p.ShallowLayers < x, $"{rung.Name}: the text is barred from vision in layers 0..{p.ShallowLayers - 1}, and the frame leaves at {x}");
            if (p.Budget is null && p.FirstTestLayer >= x - 1)
                Assert.Equal(0, p.ShallowLayers);
            else Assert.Equal(s, p.ShallowLayers); // a filter runs before the exit: the schedule's stage stays
            StreamingOptions.ValidatePruning(p, layers);
        }
        // With no measured floor, the ladder ends one layer past the stage: by the schedule's own
        // account an exit at or before s would keep little of the frame.
        Assert.Equal($"exit {s + 1}", ladder[^1].Name);
        Assert.Equal(576.0 * (s + 1), ladder[^1].Work); // the whole frame up to its exit, as before
        // A measured floor still rules, and reaches below the stage with the stage dropped.
        var measured = FrameGovernor.Ladder(PruningConfig.Reference(layers) with { MinExitLayer = 1 }, layers, 576);
        Assert.Equal("exit 1", measured[^1].Name);
        Assert.Equal(0, measured[^1].Pruning!.ShallowLayers);
    }

    [Fact]
    public void TheScheduleItself_KeepsItsShallowStage_OnlyTheRungsBelowItDropIt()
    {
        var schedule = new PruningConfig { ShallowLayers = 2, ExitLayer = 4, MinExitLayer = 1 };
        var ladder = FrameGovernor.Ladder(schedule, layers: 8, visualTokensPerFrame: 16);
        Assert.Equal(schedule with { Method = "visipruner" }, ladder[0].Pruning);
        Assert.Equal(["exit 4", "exit 3", "exit 2", "exit 1"], ladder.Select(l => l.Name));
        Assert.All(ladder.Skip(1), l => Assert.Equal(0, l.Pruning!.ShallowLayers));
    }

    [Fact]
    public void AnExitInsideTheShallowStage_IsRefused_WithTheReason()
    {
        var e = Assert.Throws<UserError>(() => new PruningConfig { ShallowLayers = 3, ExitLayer = 3 }.Validate(8));
        Assert.Contains("exit_layer 3", e.Message);
        Assert.Contains("shallow", e.Message);
        new PruningConfig { ShallowLayers = 3, ExitLayer = 4 }.Validate(8);
        // The older frames may leave inside it: the spared newest frame carries them to the text.
        new PruningConfig { ShallowLayers = 3, KeepNewestFrame = true, OlderFramesExitLayer = 2 }.Validate(8);
    }

    [Fact]
    public void TheLaddersWork_FallsRungByRung()
    {
        var ladder = FrameGovernor.Ladder(PruningConfig.Reference(32), layers: 32, visualTokensPerFrame: 576);
        var work = ladder.Select(l => l.Work!.Value).ToList();
        log.WriteLine(string.Join(" | ", ladder.Select(l => $"{l.Name}: {l.Work}")));
        Assert.Equal(576.0 * 32, work[0]);
        for (int i = 1; i < work.Count; i++) Assert.True(work[i] <= work[i - 1], $"{ladder[i].Name} ({work[i]}) works more than {ladder[i - 1].Name} ({work[i - 1]})");
        Assert.Equal(576.0 * 7, work[^1]); // exit 7, one past the reference's shallow stage (s = 6): the frame's tokens in layers 0..6
    }

    [Theory]
    [InlineData(0.25)]
    [InlineData(0.4)]
    [InlineData(0.6)]
    public void OnALongLadder_ATightBudgetIsReachedInAFewReads_NotRungByRung(double fraction)
    {
        // A LLaVA-7B-shaped ladder (32 layers, 576 tokens a frame: 40 rungs, with a floor measured
        // at exit 1). Reads cost a fixed 30 ms plus 0.05 ms per token-layer, which the governor is not told.
        var ladder = FrameGovernor.Ladder(PruningConfig.Reference(32) with { MinExitLayer = 1 }, layers: 32, visualTokensPerFrame: 576);
        var cost = ladder.Select(l => 30 + 0.05 * l.Work!.Value).ToArray();
        double budget = fraction * cost[0];
        var g = new FrameGovernor(budget, ladder);
        var read = Drive(g, cost, 100);
        int over = read.Count(l => cost[l] > budget);
        log.WriteLine($"budget {budget:0} ms: levels {string.Join(",", read.Take(12))} …; {over} of {read.Count} reads over, {g.Skipped} skipped; at {g.CurrentLevel.Name} ({cost[g.Current]:0} ms)");
        Assert.True(over <= 5, $"{over} of {read.Count} reads over the budget");
        Assert.True(read.Take(5).Any(l => cost[l] <= FrameGovernor.Fit * budget), "no fitting level within the first 5 reads");
        // Not harder than needed: the level it settles at fits (these reads cost exactly what is
        // expected of them, so the slack is 1), and the one before it does not fit easily.
        Assert.Equal(1, g.Slack);
        Assert.True(cost[g.Current] <= budget);
        Assert.True(g.Current == 0 || cost[g.Current - 1] > FrameGovernor.Relax * budget, $"settled at {g.CurrentLevel.Name} though the level before it fits easily");
    }

    /// <summary>A started driver over <paramref name="session"/> with the governor at <paramref name="budgetMs"/> (the tiny model's schedule unless given), every frame read.</summary>
    static StreamingDriver Governed(ICaptionSession session, double budgetMs, string policy = "every:1000", PruningConfig? schedule = null)
    {
        var driver = new StreamingDriver(session, new DriverOptions
        {
            Policy = WritePolicy.Parse(policy), GateThreshold = 0, FrameBudgetMs = budgetMs, Schedule = schedule ?? AppTestSupport.TinySchedule,
        });
        driver.Start();
        return driver;
    }

    [Fact]
    public void AStreamsColdFirstRead_CountsAgainstTheBudget_ButDoesNotSendTheGovernorDownTheLadder()
    {
        using var engine = AppTestSupport.TinyEngine();
        // A budget far over the tiny model's reads: a stall of the machine's (CI runs tests side by
        // side; one there once pushed a read past 100 ms) must not stand in for the cold read.
        using var cold = new SlowedSession(new GpeSession(engine, AppTestSupport.TinyOptions())) { ExtraMs = (_, read) => read == 0 ? 2000 : 0 };
        using var driver = Governed(cold, 500);
        var clip = ClipGenerator.Generate(1_000_007, 20, 15);
        var levels = new List<string>();
        for (int i = 0; i < 24; i++)
        {
            using var img = clip.Render(i % clip.FrameCount, 32, 32);
            driver.Push(img, i, TimeSpan.Zero);
            levels.Add(cold.Last.Level ?? "unpruned");
        }
        // The tiny model's reads take a few milliseconds after the first, far under 500: every read
        // stays at the schedule. Taken as the schedule's cost, the first read's 2 s would have put
        // the next reads on the ladder's harshest rungs.
        // (The first read writes too; through this hook its report is the write's, which names no rung.)
        var schedule = driver.Governor!.Levels[0].Name;
        log.WriteLine(string.Join(", ", levels));
        Assert.All(levels.Skip(1), l => Assert.Equal(schedule, l));
        Assert.Equal(0, driver.Governor.Current);
        Assert.Equal(1, driver.Stats.OverBudget);
        Assert.Equal(24, driver.Stats.Read);
    }

    [Fact]
    public void ACountedColdRead_LeavesTheLevelsUnmeasured()
    {
        var g = new FrameGovernor(50, Levels(3));
        g.ObserveCold(500);
        Assert.Equal(1, g.OverBudget);
        Assert.All(g.Levels, l => Assert.Null(l.Estimate));
        var c = g.Choose();
        Assert.False(c.Skip);
        Assert.Equal(0, c.Level);
        g.ObserveCold(20);
        Assert.Equal(1, g.OverBudget);
    }

    [Fact]
    public void OnTheModel_KFallsUntilReadsFit_AndRisesWhenTheSlowDownGoes()
    {
        using var engine = AppTestSupport.TinyEngine();
        using var slowed = new SlowedSession(new GpeSession(engine, AppTestSupport.TinyOptions()));
        using var driver = Governed(slowed, 130);
        var clip = ClipGenerator.Generate(1_000_005, 20, 15);
        int frame = 0;
        (int Level, int? K, string Name) Run(int frames)
        {
            for (int i = 0; i < frames; i++)
            {
                using var img = clip.Render(frame++ % clip.FrameCount, 32, 32);
                driver.Push(img, frame, TimeSpan.Zero);
            }
            var g = driver.Governor!;
            return (g.Current, g.CurrentLevel.Budget, g.CurrentLevel.Name);
        }
        // 3 ms per token and layer: the whole frame in all 4 layers (the schedule) costs ~190 ms,
        // k = 8 ~120 ms, k = 2 ~100 ms: the governor must prune to a small k to fit 130 with its slack.
        slowed.MsPerTokenLayer = 3;
        var slow = Run(30);
        log.WriteLine($"slowed: level {slow.Level} ({slow.Name}); levels {string.Join(", ", driver.Governor!.Levels.Select(l => $"{l.Name}: {l.Estimate:0}"))}");
        Assert.True(slow.Level >= 2, $"still at {slow.Name}");
        Assert.True(slow.K is null or <= 4, $"k {slow.K}");
        Assert.True(driver.Governor!.CurrentLevel.Estimate <= 130);
        // The stats count every read at the level it ran at.
        var levels = driver.Stats.Levels;
        Assert.Equal(driver.Stats.Read, levels.Values.Sum());
        Assert.True(levels.GetValueOrDefault(slow.Name) > 0, $"no read counted at {slow.Name}: {string.Join(", ", levels)}");
        // The slow-down goes: reads take a few milliseconds, and the governor relaxes back to the schedule.
        slowed.MsPerTokenLayer = 0;
        var fast = Run(120);
        log.WriteLine($"fast: level {fast.Level} ({fast.Name})");
        Assert.True(fast.Level < slow.Level, $"stayed at {fast.Name}");
        Assert.Equal(0, fast.Level);
        Assert.Equal(0, driver.Stats.BudgetSkipped);
        // Nothing fits a 20 ms budget: even the last rung (every visual token leaves after layer 1)
        // sleeps 3 ms × its tokens, well over it on any machine, so frames are skipped, and counted.
        slowed.MsPerTokenLayer = 3;
        using var tight = Governed(slowed, 20);
        for (int i = 0; i < 40; i++)
        {
            using var img = clip.Render(i, 32, 32);
            tight.Push(img, i, TimeSpan.Zero);
        }
        log.WriteLine($"tight: {tight.Stats.Read} read, {tight.Stats.BudgetSkipped} skipped");
        Assert.True(tight.Stats.BudgetSkipped > 0);
        Assert.Equal(40, tight.Stats.Read + tight.Stats.BudgetSkipped);
    }
    [Fact]
    public void WithPixelRungs_TheLadderLowersTheResolutionBeforeAnyRungBelowTheSchedule()
    {
        var schedule = new PruningConfig { ShallowLayers = 0, ExitLayer = 6, MinExitLayer = 3 };
        var pixels = new PixelRungs(new[] { (200_000L, 256), (100_000L, 128) }, VisionWorkPerToken: 10);
        var ladder = FrameGovernor.Ladder(schedule, layers: 8, visualTokensPerFrame: 512, pixels);
        log.WriteLine(string.Join("\n", ladder.Select(l => $"{l.Name}: work {l.Work}")));
        // The schedule at the model's own resolution, then the same schedule at each lower bound.
        Assert.Equal(new long?[] { null, 200_000, 100_000 }, ladder.Take(3).Select(l => l.MaxPixels));
        Assert.All(ladder.Take(3), l => Assert.Equal(schedule with { Method = "visipruner" }, l.Pruning));
        Assert.Equal("exit 6, max 200000 px", ladder[1].Name);
        // Every rung below it reads at the least bound: k from half the tokens read there, then the
        // earlier exits down to the floor.
        Assert.All(ladder.Skip(3), l => Assert.Equal(100_000, l.MaxPixels));
        Assert.Equal(64, ladder[3].Budget);
        Assert.Equal(new int?[] { 5, 4, 3 }, ladder.TakeLast(3).Select(l => l.Pruning!.ExitLayer));
        // Work counts the vision tower's share with the decoder's: a token costs 10 + (its layers).
        Assert.Equal(512 * (10 + 6), ladder[0].Work);
        Assert.Equal(128 * (10 + 6), ladder[2].Work);
        Assert.Equal(128 * (10 + 3), ladder[^1].Work);
        Assert.True(ladder.Zip(ladder.Skip(1)).All(p => p.Second.Work < p.First.Work), "work must fall down the ladder");
        // Without pixel rungs the ladder is the one every fixed-size family had.
        var plain = FrameGovernor.Ladder(schedule, layers: 8, visualTokensPerFrame: 512);
        Assert.All(plain, l => Assert.Null(l.MaxPixels));
        Assert.Equal(ladder.Count - 2 + 2, plain.Count); // two resolutions more, two k rungs fewer (512 tokens against 128)
    }

    [Fact]
    public void PixelRungs_HalveTheFramesArea_DownToTheLeastQwenReadsAVideoFrameAt()
    {
        using var engine = Engine.Load(RealtimeAssistant.Tests.Model.Families.QwenFixtures.Folder("qwen2_vl"), new EngineOptions { Device = "cpu", MaxPixels = 28 * 28 * 1024 });
        var model = Assert.IsAssignableFrom<IPixelBoundedVision>(engine.Model);
        Assert.Equal(128 * 28 * 28, model.LeastFramePixels); // qwen-vl-utils' VIDEO_MIN_PIXELS
        var rungs = PixelRungs.For(model, 480, 640);
        int full = model.TokensAt(480, 640, model.MaxPixels);
        log.WriteLine($"full {full} tokens; rungs {string.Join(", ", rungs.Bounds.Select(b => $"{b.MaxPixels} px: {b.Tokens}"))}; vision work per token {rungs.VisionWorkPerToken:0.00}");
        Assert.Equal(17 * 23, full); // 480×640 rounded to 28-pixel blocks, under the bound
        Assert.Equal(new[] { 640L * 480 / 2, 128 * 28 * 28 }, rungs.Bounds.Select(b => b.MaxPixels));
        Assert.All(rungs.Bounds.Select(b => b.Tokens).Prepend(full).Zip(rungs.Bounds.Select(b => b.Tokens)), p => Assert.InRange(p.Second, p.First * 0.3, p.First * 0.75));
        Assert.Equal(model.TokensAt(480, 640, 128 * 28 * 28), rungs.Bounds[^1].Tokens);
        Assert.InRange(rungs.Bounds[^1].Tokens, 100, 128);
        Assert.True(rungs.VisionWorkPerToken > 0);
        // A frame that already reads at the least bound has none.
        Assert.Empty(PixelRungs.For(model, 240, 320).Bounds);
        // The schedule's floor (min_frame_pixels, --min-frame-pixels) moves the least bound: at the
        // frame's own area there are no rungs; lower, the halving goes on down to it; under the
        // processor's smallest bound it stops there.
        Assert.Empty(PixelRungs.For(model, 480, 640, least: 480 * 640).Bounds);
        var deeper = PixelRungs.For(model, 480, 640, least: 50_176);
        Assert.Equal(new[] { 153_600L, 76_800, 50_176 }, deeper.Bounds.Select(b => b.MaxPixels));
        Assert.Equal(model.SmallestBound, PixelRungs.For(model, 480, 640, least: 1).Bounds[^1].MaxPixels);
        var schedule = new PruningConfig { ShallowLayers = 0, MinFramePixels = 50_176 };
        Assert.Equal(50_176, FrameGovernor.LadderFor(engine, schedule, full, 480, 640).Last().MaxPixels);
        // A fixed-size family's ladder has no resolution rung, and its session takes no pixel bound.
        using var llava = AppTestSupport.TinyEngine();
        Assert.All(FrameGovernor.LadderFor(llava, AppTestSupport.TinySchedule, 16, 480, 640), l => Assert.Null(l.MaxPixels));
        using var session = new GpeSession(llava, AppTestSupport.TinyOptions());
        Assert.Throws<InvalidOperationException>(() => session.MaxPixels = 50_000);
    }

    [Fact]
    public void OnADynamicResolutionModel_TheGovernorLowersThePixelsUntilReadsFit_AndRaisesThemWhenTheSlowDownGoes()
    {
        using var engine = Engine.Load(RealtimeAssistant.Tests.Model.Families.QwenFixtures.Folder("qwen2_vl"), new EngineOptions { Device = "cpu", MaxPixels = 28 * 28 * 1024 });
        using var slowed = new SlowedSession(new GpeSession(engine, AppTestSupport.TinyOptions()));
        var schedule = new PruningConfig { ShallowLayers = 0 };
        using var driver = Governed(slowed, 220, schedule: schedule);
        var clip = ClipGenerator.Generate(1_000_005, 20, 15);
        int frame = 0;
        void Run(int frames)
        {
            for (int i = 0; i < frames; i++)
            {
                using var img = clip.Render(frame++ % clip.FrameCount, 640, 480);
                driver.Push(img, frame, TimeSpan.Zero);
            }
        }
        // 0.3 ms per visual token and decoder layer: the whole frame (391 tokens, 2 layers) sleeps
        // ~235 ms, half its pixels ~120 ms, the least ~75 ms. The governor must lower the
        // resolution, and no further than a rung that still reads the frame in every layer.
        slowed.MsPerTokenLayer = 0.3;
        Run(30);
        var g = driver.Governor!;
        log.WriteLine($"slowed: at {g.CurrentLevel.Name}; {string.Join(", ", g.Levels.Select(l => $"{l.Name}: {l.Estimate:0} ms"))}; read {string.Join(", ", driver.Stats.Levels)}");
        Assert.Equal(4, g.Levels.Count); // the schedule at 3 resolutions, then exit 1 at the least
        Assert.NotNull(g.CurrentLevel.MaxPixels);
        Assert.Equal(schedule with { Method = "visipruner" }, g.CurrentLevel.Pruning);
        Assert.True(g.CurrentLevel.Estimate <= 220);
        Assert.True(driver.Stats.Levels.Keys.Any(k => k.Contains(" px")), "no read at a lower resolution");
        // The report of a read at a lower bound carries fewer visual tokens than the frame's own.
        Assert.True(slowed.Last.VisualTokens < 17 * 23, $"{slowed.Last.VisualTokens} visual tokens");
        // Pruning off (the live app's P key) reads the whole frame at the model's own bound; on
        // again, the governor's rung and its bound come back.
        driver.PruningEnabled = false;
        Assert.Null(slowed.MaxPixels);
        Assert.Null(slowed.Pruning);
        driver.PruningEnabled = true;
        Assert.Equal(g.CurrentLevel.MaxPixels, slowed.MaxPixels);
        Assert.Equal(g.CurrentLevel.Pruning, slowed.Pruning);
        // The slow-down goes: the governor reads the whole frame again. It tries the level below a
        // probe interval apart, doubled after a try that ran over (a busy machine can make one
        // run over), so it gets up to 400 frames, 10 at a time.
        slowed.MsPerTokenLayer = 0;
        int fastFrames = 0;
        do { Run(10); fastFrames += 10; } while ((g.Current != 0 || g.CurrentLevel.MaxPixels is not null) && fastFrames < 400);
        log.WriteLine($"fast: at {g.CurrentLevel.Name} after {fastFrames} frames");
        Assert.Equal(0, g.Current);
        Assert.Null(g.CurrentLevel.MaxPixels);
        Assert.Equal(17 * 23, slowed.Last.VisualTokens);
        Assert.Equal(0, driver.Stats.BudgetSkipped);
    }

    [Fact]
    public void ReEncoding_CountsItsRebuildAsTheFramesRead_SoTheGovernorHoldsItToo()
    {
        // A caption per read: each read comes with its write, and re-encoding rebuilds the whole
        // window then. That prefill is the frame's read (what GPE's fused pass counts too), so the
        // governor measures and prunes it; a plain write still counts its prefill as the write's.
        using var engine = AppTestSupport.TinyEngine();
        using var session = new ReEncodingSession(engine, AppTestSupport.TinyOptions(window: 3));
        using var driver = Governed(session, 1000, "every:1");
        var clip = ClipGenerator.Generate(1_000_007, 2, 15);
        var segments = new List<StreamSegment>();
        for (int i = 0; i < 6; i++)
        {
            using var img = clip.Render(i, 32, 32);
            segments.AddRange(driver.Push(img, i, TimeSpan.Zero));
        }
        Assert.Equal(6, segments.Count);
        foreach (var seg in segments)
        {
            var r = seg.Report;
            Assert.Equal("read+write", r.Kind);
            Assert.Equal(r.PreprocessMs + r.VisionMs + r.DecoderMs, seg.ReadMs, 6);
            Assert.Equal(r.DecodeMs.Sum(), seg.WriteMs, 6);
            Assert.Equal("newest spared, older exit 3", r.Level); // a loose budget: the schedule's rung
        }
        // The governor saw the rebuilds: its level measured each of those reads but the first,
        // the stream's cold start (counted against the budget, not as the level's cost).
        var level = driver.Governor!.CurrentLevel;
        Assert.Equal(segments.Count - 1, level.Reads);
        Assert.Equal(segments[^1].ReadMs, level.LastReadMs);
        // A write on its own (a question) rebuilds too, and counts that as the write's.
        driver.Ask("w3 w4 w5");
        using (var img = clip.Render(7, 32, 32))
        {
            var answer = driver.Push(img, 7, TimeSpan.Zero).First(s => s.Question is not null);
            Assert.Equal("write", answer.Report.Kind);
            Assert.Equal(answer.Report.DecoderMs + answer.Report.DecodeMs.Sum(), answer.WriteMs, 6);
        }
    }
}
