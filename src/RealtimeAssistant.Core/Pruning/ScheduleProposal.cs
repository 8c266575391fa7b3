namespace RealtimeAssistant.Pruning;

/// <summary>
/// A schedule tried on `ra analyze`'s inputs: teacher-forced token agreement and KL against the
/// unpruned caption; <paramref name="CaptionAgreement"/>, the token F1 of its own greedy caption
/// against the unpruned greedy caption (what a user gets: one changed token changes the rest);
/// and the prefill's analytic FLOPs.
/// </summary>
public sealed record Candidate(int Shallow, int FilterFrom, double TokensThreshold, int? Exit, double Agreement, double CaptionAgreement, double Kl, double Flops, double KeptTokens);

/// <summary>
/// Turns what `ra analyze` measured into a schedule: the shallow stage s, the first layer the
/// filtering test runs after, the budget deadline, and the fixed exit.
/// </summary>
public static class ScheduleProposal
{
    /// <param name="layers">Decoder layers L.</param>
    /// <param name="shallow">Layers text can be barred from vision in (measured).</param>
    /// <param name="exit">First layer whose visual KV can be dropped (L: none).</param>
    /// <param name="lfMin">Earliest filtering layer the test supports.</param>
    /// <param name="lfMax">Latest filtering layer the test supports.</param>
    public static (int Shallow, int FilterFrom, int? Deadline, int? Exit, bool Traded) Propose(int layers, int shallow, int exit, int lfMin, int lfMax)
    {
        // An early exit makes a shallow stage moot: vision is dropped before it would matter.
        int s = Math.Max(0, Math.Min(shallow, exit - 1));
        // The exit drops every visual token after layer exit−1, so a filter there or later never
        // acts and budget mode cannot cut: keep at least one layer for the middle stage, giving
        // up the last shallow layers if needed.
        int lastFilter = exit < layers ? exit - 2 : layers - 2;
        bool traded = false;
        if (exit < layers && s + 1 > lastFilter && lastFilter >= 1) { s = lastFilter - 1; traded = true; }
        int from = Math.Min(Math.Max(lfMin, s + 1), layers - 1);
        if (exit < layers && from > lastFilter && lastFilter >= s + 1) from = lastFilter;
        int? deadline = from <= lastFilter ? Math.Clamp(lfMax, from, lastFilter) : null;
        return (s, from, deadline, exit < layers ? exit : null, traded);
    }

    /// <summary>
    /// The cheapest candidate (fewest FLOPs) whose greedy captions keep <paramref name="agreement"/>
    /// with the unpruned ones; if none does, the one that comes closest, and <c>Holds</c> is false.
    /// (Teacher-forced agreement is not enough: on the demo model s = 6 kept 0.992 of the tokens
    /// teacher-forced, yet its greedy captions lost 0.066 attribute F1.)
    /// </summary>
    public static (Candidate Chosen, bool Holds) Choose(IReadOnlyList<Candidate> candidates, double agreement)
    {
        if (candidates.Count == 0) throw new ArgumentException("no candidates", nameof(candidates));
        var holding = candidates.Where(c => c.CaptionAgreement >= agreement).OrderBy(c => c.Flops).FirstOrDefault();
        return holding is not null ? (holding, true) : (candidates.OrderByDescending(c => c.CaptionAgreement).ThenBy(c => c.Flops).First(), false);
    }

    /// <summary>
    /// As <see cref="Choose"/>, but when no candidate holds the agreement it takes the cheapest
    /// whose mean is within one standard error of the best one's (from <paramref name="perInput"/>,
    /// each candidate's agreement on each input): on a few inputs the best mean is partly noise,
    /// and candidates that close cannot be told apart (the one-standard-error rule).
    /// </summary>
    public static (Candidate Chosen, bool Holds) ChooseWithinOneSe(IReadOnlyList<Candidate> candidates, IReadOnlyList<double[]> perInput, double agreement)
    {
        if (candidates.Count != perInput.Count) throw new ArgumentException("one row of per-input agreements per candidate", nameof(perInput));
        var (chosen, holds) = Choose(candidates, agreement);
        if (holds) return (chosen, true);
        var row = perInput[candidates.ToList().IndexOf(chosen)];
        double mean = row.Average();
        double se = row.Length < 2 ? 0 : Math.Sqrt(row.Sum(x => (x - mean) * (x - mean)) / (row.Length - 1) / row.Length);
        return (candidates.Where(c => c.CaptionAgreement >= mean - se).OrderBy(c => c.Flops).First(), false);
    }

    /// <summary>
    /// The governor's floor (min_exit_layer): walking the ladder's earlier exits down from
    /// <paramref name="ladderExit"/>, the last that keeps <paramref name="floorAgreement"/>
    /// (a <see cref="FrameShare"/>, or any agreement with the unpruned captions). Below it the governor skips frames
    /// rather than read them into captions that no longer say what is in them. If the first earlier
    /// exit already falls short, the floor is <paramref name="ladderExit"/>: the ladder gets no
    /// earlier exit.
    /// </summary>
    public static int Floor(int ladderExit, IEnumerable<(int Exit, double Agreement)> earlierExits, double floorAgreement) =>
        LastKept(ladderExit, earlierExits.Where(e => e.Exit < ladderExit).OrderByDescending(e => e.Exit), floorAgreement);

    /// <summary>
    /// The governor's resolution floor (min_frame_pixels): walking the pixel bounds down from the
    /// frame's own area <paramref name="ownArea"/>, the last that keeps <paramref name="floorAgreement"/>.
    /// If the first lower bound already falls short, the floor is the frame's own area: the ladder
    /// gets no resolution rung.
    /// </summary>
    public static long PixelFloor(long ownArea, IEnumerable<(long Bound, double Agreement)> lowerBounds, double floorAgreement) =>
        LastKept(ownArea, lowerBounds.Where(b => b.Bound < ownArea).OrderByDescending(b => b.Bound), floorAgreement);

    /// <summary>From <paramref name="start"/> down the rungs in order, the last kept before the first that falls short.</summary>
    static T LastKept<T>(T start, IEnumerable<(T Rung, double Agreement)> downward, double floorAgreement)
    {
        var floor = start;
        foreach (var (rung, agreement) in downward)
        {
            if (agreement < floorAgreement) break;
            floor = rung;
        }
        return floor;
    }

    /// <summary>
    /// How much of what a frame adds to the captions a pruned read keeps: its captions' agreement
    /// with the unpruned ones, rescaled so that a caption of no frame at all (<paramref name="blind"/>:
    /// the prompt's common tokens, which every caption shares) is 0 and the unpruned caption is 1.
    /// Where the frame adds nothing (<paramref name="blind"/> = 1) nothing can be lost: 1.
    /// </summary>
    public static double FrameShare(double agreement, double blind) => blind >= 1 ? 1 : (agreement - blind) / (1 - blind);

    /// <summary>Token F1 of a caption against a reference caption (multisets of token ids; both empty: 1).</summary>
    public static double TokenF1(IReadOnlyList<long> caption, IReadOnlyList<long> reference)
    {
        if (caption.Count == 0 && reference.Count == 0) return 1;
        var left = reference.GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count());
        int common = 0;
        foreach (var t in caption)
            if (left.TryGetValue(t, out var n) && n > 0) { common++; left[t] = n - 1; }
        return common == 0 ? 0 : 2.0 * common / (caption.Count + reference.Count);
    }

    /// <summary>
    /// The shallow stages the check tries: the measured s, half of it and none. Each was measured
    /// alone; with the other stages its greedy captions may need a shorter one.
    /// </summary>
    public static int[] ShallowChoices(int measured) => new[] { measured, measured / 2, 0 }.Distinct().ToArray();

    /// <summary>
    /// What `ra analyze` checks on prompts of several frames for a schedule with a fixed exit: the
    /// schedule as it is (every frame exits), and sparing the newest frame with the older frames'
    /// exit at each layer from the schedule's exit to the last. Without a fixed exit, only itself.
    /// </summary>
    public static List<PruningConfig> FrameGrid(PruningConfig proposal, int layers)
    {
        var grid = new List<PruningConfig> { proposal with { KeepNewestFrame = false, OlderFramesExitLayer = null } };
        if (proposal.ExitLayer is { } x)
            for (int older = x; older < layers; older++) grid.Add(proposal with { KeepNewestFrame = true, OlderFramesExitLayer = older });
        return grid;
    }

    /// <summary>
    /// The schedules `ra analyze` checks around a proposal: every filtering layer from the
    /// proposal's to the last one that can still cut (one before a fixed exit, L − 2 without),
    /// three norm thresholds, with the proposal's exit and without any. Never empty.
    /// </summary>
    public static List<PruningConfig> Grid(PruningConfig proposal, int layers, double threshold)
    {
        int from = proposal.FirstTestLayer;
        var grid = new List<PruningConfig>();
        foreach (var exit in proposal.ExitLayer is { } x ? new int?[] { x, null } : new int?[] { null })
        {
            // A filter at exit − 1 cuts nothing the exit does not; a filter is always tried at `from`.
            int last = Math.Max(from, exit is { } e ? e - 2 : layers - 2);
            for (int f = from; f <= last; f++)
                foreach (var t in new[] { threshold, threshold / 2, threshold / 4 })
                    grid.Add(proposal with { FilterFrom = f, TokensThreshold = t, ExitLayer = exit, DeadlineLayer = Math.Max(f, proposal.DeadlineLayer ?? f) });
        }
        return grid;
    }
}
