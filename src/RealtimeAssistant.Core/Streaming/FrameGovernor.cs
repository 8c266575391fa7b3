using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

/// <summary>One rung of the governor's ladder: a pruning setting and what its reads have cost lately.</summary>
public sealed class GovernorLevel(string name, PruningConfig? pruning)
{
    // Reads divided by the machine's drift when they ran: what they would cost at the speed the
    // governor first measured, so that a slow spell seen at one level moves every level's estimate.
    readonly Queue<double> _recent = new();
    public string Name { get; } = name;
    public PruningConfig? Pruning { get; } = pruning;
    public int? Budget => Pruning?.Budget;
    /// <summary>The pixel bound a frame is read at (null: the model's own): a dynamic-resolution family's resolution rung.</summary>
    public long? MaxPixels { get; init; }
    /// <summary>
    /// The decoder work of one frame read at this level, in visual token-layers, at most (null:
    /// not known). What the governor scales measured read times by to expect a level it has not read.
    /// </summary>
    public double? Work { get; init; }
    public long Reads { get; private set; }
    /// <summary>The 80th percentile of the level's last 16 reads, each divided by the drift when it ran (null: not measured, or forgotten).</summary>
    public double? BaseEstimate { get; private set; }
    /// <summary>The median of the same reads (null: none).</summary>
    internal double? BaseMedian { get; private set; }
    /// <summary>The machine's drift now (<see cref="FrameGovernor.Drift"/>).</summary>
    internal double Drift { get; set; } = 1;
    /// <summary>The read the level is expected to take now: <see cref="BaseEstimate"/> at the machine's drift now.</summary>
    public double? Estimate => BaseEstimate * Drift;
    /// <summary>The level's last read as measured, in ms (null: not read yet).</summary>
    public double? LastReadMs { get; private set; }
    /// <summary>The governor's read count when this level was last read.</summary>
    public long LastRead { get; private set; } = long.MinValue / 2;
    /// <summary>Reads at the level above before this one is tried again; doubles each time a try runs over.</summary>
    public int ProbeInterval { get; internal set; } = FrameGovernor.FirstProbe;
    /// <summary>The next more aggressive level's <see cref="BaseEstimate"/> when this one was last read (null: not known): how far that level's cost has moved since, beyond the drift, is how far this one's may have.</summary>
    public double? AboveWhenRead { get; internal set; }

    internal void Observe(double readMs, double baseMs, long readIndex)
    {
        LastReadMs = readMs;
        _recent.Enqueue(baseMs);
        while (_recent.Count > 16) _recent.Dequeue();
        BaseEstimate = FrameGovernor.LowerQuantile(_recent, 0.8);
        BaseMedian = FrameGovernor.LowerQuantile(_recent, 0.5);
        Reads++;
        LastRead = readIndex;
    }

    /// <summary>Drops what was measured: the costs may have changed since (the next read measures it afresh).</summary>
    internal void Forget()
    {
        _recent.Clear();
        BaseEstimate = BaseMedian = null;
    }
}

/// <summary>
/// The pixel bounds a dynamic-resolution family can read a stream's frames at, below its own: each
/// bound with the visual tokens the stream's frame becomes under it, the area halving from one to
/// the next down to the family's least (<see cref="IPixelBoundedVision.LeastFramePixels"/>); and the
/// vision tower's work per token in decoder token-layers.
/// </summary>
public sealed record PixelRungs(IReadOnlyList<(long MaxPixels, int Tokens)> Bounds, double VisionWorkPerToken)
{
    /// <summary>The least bound the rungs go down to: <paramref name="least"/> (the schedule's min_frame_pixels), else the family's own, never under what the processor takes.</summary>
    public static long Floor(IPixelBoundedVision model, long? least) => Math.Max(model.SmallestBound, least ?? model.LeastFramePixels);

    /// <summary>
    /// The rungs for a frame of this size, down to <paramref name="least"/> (null: the family's
    /// own; none where the frame already reads at or under it).
    /// </summary>
    public static PixelRungs For(IPixelBoundedVision model, int height, int width, long? least = null)
    {
        var bounds = new List<(long, int)>();
        int full = model.TokensAt(height, width, model.MaxPixels), last = full;
        long area = Math.Min(model.MaxPixels, (long)height * width);
        long floor = Floor(model, least);
        if (floor >= area) return new PixelRungs(bounds, model.VisionWorkPerToken);
        // Halving from the frame's own area as read (a bound above it changes nothing).
        for (long b = area / 2; ; b /= 2)
        {
            b = Math.Max(b, floor);
            int n = model.TokensAt(height, width, b);
            if (n < last) { bounds.Add((b, n)); last = n; }
            if (b == floor) break;
        }
        return new PixelRungs(bounds, model.VisionWorkPerToken);
    }
}

/// <summary>What the governor decided for one frame.</summary>
public readonly record struct GovernorChoice(bool Skip, int Level, GovernorLevel? Rung);

/// <summary>
/// Holds reads to a frame budget: for each frame read it picks how hard to prune, from what reads
/// at each level have cost lately, moved by how the machine's speed has drifted since (a slow spell
/// seen at one level is expected at every level). The levels come from the model's own schedule
/// (pruning.json): the schedule as measured, then the newest frame pruned too, then smaller
/// VisiPruner budgets k, then earlier exits. It steps up as soon as a level is expected to run over
/// (its expected read times the <see cref="Slack"/> reads have shown lately over the budget),
/// relaxes when the level below measured recently with headroom, and otherwise tries the level
/// below again now and then (less often each time a try runs over; not while its last cost, moved
/// as the level above has moved since, or for a level not read yet the measured levels' line, is
/// over the budget, unless that cost is more than <see cref="Fresh"/> reads old). When even the
/// most aggressive level cannot fit, it skips frames (counted) rather than let work queue: the time
/// a read runs over the budget is paid back by the frames after it.
/// </summary>
public sealed class FrameGovernor
{
    readonly double _budget;
    readonly List<GovernorLevel> _levels;
    readonly Queue<double> _surprise = new(); // each recent read's time over what was expected of it
    readonly Queue<double> _drifts = new(); // each recent read's time over its level's median at the speed first measured
    double _debt; // ms of reading beyond the budget not yet paid back by frames the source delivered
    long _reads;
    int _sinceChange, _probing = -1;
    bool _probeForStaleness;

    /// <summary>
    /// Fraction of the budget a level must be expected to fit in to stay chosen while the governor
    /// has not yet seen <see cref="SlackMinReads"/> reads against what it expected of them; and
    /// what a try at a gentler level must read within to count as fitting.
    /// </summary>
    public const double Fit = 0.85;
    /// <summary>
    /// Once enough reads are in, a level stays chosen while its expected read times the slack fits
    /// the budget: this quantile of the last <see cref="SlackWindow"/> reads' time over what was
    /// expected of them. A fixed margin is too wide where reads are steady (it pushed the demo from
    /// the schedule's rung to exit 6 at a budget of the schedule's own p95) and too narrow where
    /// they are not; the measured slack follows the machine.
    /// </summary>
    public const double SlackQuantile = 0.9;
    public const int SlackWindow = 64, SlackMinReads = 16;
    /// <summary>
    /// Reads whose drift the governor takes the median of. A slow spell moves it after 3 slow
    /// reads; a single slow read does not.
    /// </summary>
    public const int DriftWindow = 5;
    /// <summary>Fraction of the budget a recently measured level below must fit in to relax to it.</summary>
    public const double Relax = 0.7;
    /// <summary>A level's measurement counts as recent for this many reads.</summary>
    public const int Fresh = 64;
    /// <summary>Reads at one level before the level below is first tried again; doubled after each try that ran over, up to <see cref="MaxProbe"/>.</summary>
    public const int FirstProbe = 8, MaxProbe = 256;

    public FrameGovernor(double budgetMs, IReadOnlyList<GovernorLevel> levels)
    {
        if (!(budgetMs > 0) || double.IsInfinity(budgetMs)) throw new UserError($"frame budget must be a positive number of milliseconds, got {budgetMs}");
        if (levels.Count == 0) throw new ArgumentException("the governor needs at least one level");
        _budget = budgetMs;
        _levels = levels.ToList();
    }

    public double BudgetMs => _budget;
    public IReadOnlyList<GovernorLevel> Levels => _levels;
    public int Current { get; private set; }
    public GovernorLevel CurrentLevel => _levels[Current];
    public long Skipped { get; private set; }
    public long OverBudget { get; private set; }
    public long Reads => _reads;

    /// <summary>
    /// Before a frame: read it (at which level) or skip it. <paramref name="framesElapsed"/> is how
    /// many budget periods passed since the last decision (1 per frame given in file and headless
    /// pacing; in live pacing the clock's time since the last frame taken, in budgets): each pays
    /// the budget back.
    /// </summary>
    public GovernorChoice Choose(double framesElapsed = 1)
    {
        _debt = Math.Max(0, _debt - _budget * Math.Max(0, framesElapsed - 1));
        int last = _levels.Count - 1;
        if (_debt > 0 && Current == last && !Fits(last))
        {
            _debt = Math.Max(0, _debt - _budget);
            Skipped++;
            return new GovernorChoice(true, Current, null);
        }
        _debt = 0;
        int was = Current;
        // Step up while the current level is expected to run over.
        while (Current < last && !Fits(Current)) Current++;
        if (Current == was && Current > 0)
        {
            var below = _levels[Current - 1];
            bool recent = _reads - below.LastRead <= Fresh;
            if (recent && below.Estimate is { } e && e <= Relax * _budget) Current--;
            else if (_sinceChange >= below.ProbeInterval && CurrentLevel.BaseEstimate is { } cur && MightFit(below, cur))
            {
                // Costs move (the machine's load, the scene): measure the level below afresh.
                // A try made only because the level's cost went stale is paced by Fresh, not by
                // the doubling interval: a genuine speed-up is still found a probe interval after it.
                _probeForStaleness = !CostMightFit(below, cur);
                below.Forget();
                _probing = Current - 1;
                Current--;
            }
        }
        if (Current != was) _sinceChange = 0;
        return new GovernorChoice(false, Current, CurrentLevel);
    }

    /// <summary>What a level's expected read is multiplied by before it is held against the budget (1 / <see cref="Fit"/> until enough reads are in); updated once per read.</summary>
    public double Slack { get; private set; } = 1 / Fit;

    /// <summary>
    /// How much slower the machine reads now than when the governor first measured it: the median,
    /// over the last <see cref="DriftWindow"/> reads, of each read's time over its level's median
    /// read (each divided by the drift when it ran). Every level's estimate is its measured reads
    /// at this drift, so a level not read during a slow spell is expected slow too, and the slack
    /// measures how reads stray from that, not the spell again.
    /// </summary>
    public double Drift { get; private set; } = 1;

    bool Fits(int level) => Expected(level) is not { } e || e * Slack <= _budget;

    /// <summary>
    /// Whether a level last read a while ago is worth trying again: its old estimate, moved as the
    /// level above it (<paramref name="aboveNow"/>, at the speed first measured) has moved since,
    /// is within the budget. A try that cannot fit only runs over; with nothing to compare (the
    /// level above was not measured then), it is tried. A cost measured more than <see cref="Fresh"/> reads ago no longer
    /// decides: it may have been a passing slowdown of the machine's that the level above, read
    /// before or after it, never saw, and it would keep the governor at a harsher level for good.
    /// </summary>
    bool MightFit(GovernorLevel level, double aboveNow) => Stale(level) || CostMightFit(level, aboveNow);

    bool Stale(GovernorLevel level) => _reads - level.LastRead > Fresh;

    bool CostMightFit(GovernorLevel level, double aboveNow)
    {
        if (level.Estimate is not { } old) return !(Expected(_levels.IndexOf(level)) > _budget); // never read, or forgotten: the measured levels' line
        return level.AboveWhenRead is not { } then || then <= 0 || old * aboveNow / then <= _budget;
    }

    /// <summary>
    /// What a read at <paramref name="level"/> is expected to take: its own recent reads, else
    /// the measured levels' times as a line in their work (a fixed cost plus a cost per
    /// token-layer), else the nearest measured level's time scaled by work. Null: nothing to go on
    /// (the level is tried). Scaling by work alone leaves out the fixed cost, so it errs low: the
    /// governor stops at the first level that might fit, and its read corrects the line.
    /// </summary>
    public double? Expected(int level)
    {
        var l = _levels[level];
        if (l.Estimate is { } e) return e;
        if (l.Work is not { } w) return null;
        var measured = _levels.Where(m => m.Estimate is not null && m.Work is not null).Select(m => (W: m.Work!.Value, Ms: m.Estimate!.Value)).ToList();
        if (measured.Count == 0) return null;
        if (measured.Select(m => m.W).Distinct().Count() >= 2)
        {
            double mw = measured.Average(m => m.W), ms = measured.Average(m => m.Ms);
            double slope = measured.Sum(m => (m.W - mw) * (m.Ms - ms)) / measured.Sum(m => (m.W - mw) * (m.W - mw));
            double fixedMs = ms - slope * mw;
            if (slope > 0 && fixedMs >= 0) return fixedMs + slope * w;
        }
        var nearest = measured.MinBy(m => Math.Abs(m.W - w));
        return nearest.W > 0 ? nearest.Ms * w / nearest.W : nearest.Ms;
    }

    /// <summary>
    /// After a read that may have paid one-time costs (a stream's first: the stream's own first
    /// blocks, and the model's first pass where nothing warmed it up, <see cref="SessionModes.WarmUp"/>).
    /// It counts against the budget, but it is not taken as what its level costs: on a cold demo
    /// model a stream's first read took about 100 ms where the next took 9, and as a level's cost
    /// it sent the governor down to the ladder's harshest rungs, from where it took about 50 reads
    /// to climb back.
    /// </summary>
    public void ObserveCold(double readMs)
    {
        _reads++;
        _sinceChange++;
        CountAgainstBudget(readMs);
    }

    void CountAgainstBudget(double readMs)
    {
        if (readMs <= _budget) return;
        OverBudget++;
        _debt += readMs - _budget;
    }

    /// <summary>After a read at <paramref name="level"/>: its measured time.</summary>
    public void Observe(int level, double readMs)
    {
        var l = _levels[level];
        if (Expected(level) is { } expected && expected > 0)
        {
            _surprise.Enqueue(readMs / expected);
            while (_surprise.Count > SlackWindow) _surprise.Dequeue();
            if (_surprise.Count >= SlackMinReads) Slack = Math.Max(1, LowerQuantile(_surprise, SlackQuantile));
        }
        if (l.BaseMedian is { } median && median > 0)
        {
            _drifts.Enqueue(readMs / median);
            while (_drifts.Count > DriftWindow) _drifts.Dequeue();
            Drift = LowerQuantile(_drifts, 0.5);
            foreach (var each in _levels) each.Drift = Drift;
        }
        l.AboveWhenRead = level + 1 < _levels.Count ? _levels[level + 1].BaseEstimate : null;
        l.Observe(readMs, readMs / Drift, _reads++);
        _sinceChange++;
        if (_probing == level)
        {
            if (readMs <= Fit * _budget) l.ProbeInterval = FirstProbe;
            else if (!_probeForStaleness) l.ProbeInterval = Math.Min(MaxProbe, 2 * l.ProbeInterval);
            _probing = -1;
        }
        CountAgainstBudget(readMs);
    }

    /// <summary>The sample at rank ⌊q (n − 1)⌋ of the sorted samples: a time the governor has seen, never one between two.</summary>
    internal static double LowerQuantile(IEnumerable<double> samples, double q)
    {
        var sorted = samples.Order().ToArray();
        return sorted[(int)Math.Floor(q * (sorted.Length - 1))];
    }

    /// <summary>
    /// The ladder for a model's schedule (pruning.json, or the reference's defaults): the schedule
    /// itself; with the newest frame spared, the newest frame exiting with the older ones; then the
    /// token budget k halved down to 1 (where a filter runs before the exit); then each earlier exit,
    /// down to the schedule's floor (<see cref="PruningConfig.Floor"/>). Below the schedule, a rung
    /// with no filter before its exit has no shallow stage (<see cref="TextReadsEveryLayer"/>).
    /// With <paramref name="pixels"/> (a dynamic-resolution family), the schedule at each lower pixel
    /// bound comes before the rungs below the schedule, which then read at the least bound. Settings
    /// a model cannot run are left out.
    /// </summary>
    public static List<GovernorLevel> Ladder(PruningConfig schedule, int layers, int visualTokensPerFrame, PixelRungs? pixels = null)
    {
        var levels = new List<GovernorLevel>();
        var asked = new List<(PruningConfig, long?)>(); // each rung as the ladder asked for it (before the stage was dropped), at its bound
        long? bound = null;
        int tokens = visualTokensPerFrame;
        double vision = pixels?.VisionWorkPerToken ?? 0;
        void Add(PruningConfig p)
        {
            if (asked.Contains((p, bound))) return;
            asked.Add((p, bound));
            if (levels.Count > 0) p = TextReadsEveryLayer(p, layers); // the schedule itself runs as given
            try { StreamingOptions.ValidatePruning(p, layers); }
            catch (UserError) { return; }
            if (levels.Any(l => l.Pruning == p && l.MaxPixels == bound)) return;
            levels.Add(new GovernorLevel(SessionBase.LevelName(p, bound) ?? p.Method, p) { MaxPixels = bound, Work = ReadWork(p, layers, tokens) + vision * tokens });
        }
        var s = schedule with { Method = "visipruner" };
        Add(s);
        // A dynamic-resolution family reads the frame at fewer pixels first: the vision tower's
        // work falls with the decoder's, and the model reads the whole (smaller) frame. The rungs
        // below the schedule then run at the least of them.
        foreach (var (maxPixels, n) in pixels?.Bounds ?? Array.Empty<(long, int)>())
        {
            (bound, tokens) = (maxPixels, n);
            Add(s);
        }
        int exit = LadderExit(s, layers);
        var alone = s with { KeepNewestFrame = false, OlderFramesExitLayer = null, ExitLayer = exit < layers ? exit : null };
        Add(alone);
        // Budgets matter only where a filter runs at least one layer before the exit.
        int filter = s.Deadline(layers);
        if (filter < exit - 1)
            for (int k = Math.Max(1, tokens / 2); ; k = Math.Max(1, k / 2))
            {
                Add(alone with { Budget = k, DeadlineLayer = filter });
                if (k == 1) break;
            }
        for (int e = Math.Min(exit, layers) - 1; e >= s.Floor; e--)
            Add(alone with { ExitLayer = e, Budget = filter < e - 1 ? 1 : null, DeadlineLayer = filter < e - 1 ? filter : s.DeadlineLayer });
        if (levels.Count == 0) throw new UserError("no pruning level of this model's schedule can run on a stream");
        return levels;
    }

    /// <summary>
    /// The ladder a stream of this model runs on, sized by its first read: the frame's visual tokens
    /// and, for a dynamic-resolution family, the frame's size (its resolution rungs).
    /// </summary>
    public static List<GovernorLevel> LadderFor(Engine engine, PruningConfig schedule, int visualTokensPerFrame, int frameHeight, int frameWidth) =>
        Ladder(schedule, engine.Text.NumHiddenLayers, Math.Max(1, visualTokensPerFrame),
            engine.Model is IPixelBoundedVision v ? PixelRungs.For(v, frameHeight, frameWidth, schedule.MinFramePixels) : null);

    /// <summary>
    /// Whether the governor can run this schedule on this model (its ladder, its resolution floor),
    /// as a user's error before anything runs or is written, not mid-stream.
    /// </summary>
    public static void CheckSchedule(PruningConfig schedule, Engine engine)
    {
        Ladder(schedule, engine.Text.NumHiddenLayers, 64);
        var model = engine.Model;
        if (schedule.MinFramePixels is not { } least) return;
        if (model is not IPixelBoundedVision v)
            throw new UserError($"min_frame_pixels (--min-frame-pixels) applies to families whose visual tokens follow the frame's area (qwen2_vl, qwen2_5_vl); {model.ModelType} resizes every frame to one size");
        if (least < v.SmallestBound)
            throw new UserError($"min_frame_pixels must be at least {v.SmallestBound} for {model.ModelType}, got {least}");
    }

    /// <summary>
    /// A rung where every frame leaves at a fixed exit and no filter runs before it, with the
    /// shallow stage dropped: the text then reads the frame in every layer the frame reaches. The
    /// shallow stage bars text from vision so that the filter can decide after it; with no filter
    /// it only takes layers from the text, and an exit at or below it leaves the caption blind (on
    /// the demo model with s = 3, exit 2 scored F1 0.06 against 0.975 without it; BENCHMARKS.md,
    /// "Earlier exits and the shallow stage"). The filter stays where it was, at or past the exit,
    /// so the rung still reads the whole frame up to its exit and nothing after.
    /// </summary>
    internal static PruningConfig TextReadsEveryLayer(PruningConfig p, int layers) =>
        p is { Method: "visipruner", ShallowLayers: > 0, KeepNewestFrame: false, Budget: null, ExitLayer: { } x } && p.FirstTestLayer >= x - 1
            ? p with { ShallowLayers = 0, FilterFrom = Math.Min(p.FirstTestLayer, layers - 1) }
            : p;

    /// <summary>
    /// The exit of the ladder's rungs below the schedule (every frame leaving together): the older
    /// frames' exit where the newest is spared, else the schedule's exit; <paramref name="layers"/>
    /// without one. The ladder's earlier exits start one layer above it.
    /// </summary>
    public static int LadderExit(PruningConfig schedule, int layers) =>
        Math.Min((schedule.KeepNewestFrame ? schedule.OlderFramesExitLayer ?? schedule.ExitLayer : schedule.ExitLayer) ?? layers, layers);

    /// <summary>
    /// A frame read's decoder work at a VisiPruner setting, in visual token-layers, at most: every
    /// token up to the filtering layer (the budget's deadline; without a budget the threshold may
    /// never fire, so the exit), k tokens from there to the exit, none after. A spared newest frame
    /// enters whole.
    /// </summary>
    public static double ReadWork(PruningConfig p, int layers, int visualTokensPerFrame)
    {
        double v = visualTokensPerFrame;
        if (p.Method != "visipruner" || p.KeepNewestFrame) return v * layers;
        int exit = Math.Min(p.ExitLayer ?? layers, layers);
        if (p.Budget is not { } k) return v * exit;
        int whole = Math.Min(p.Deadline(layers) + 1, exit);
        return v * whole + Math.Min(k, v) * (exit - whole);
    }
}
