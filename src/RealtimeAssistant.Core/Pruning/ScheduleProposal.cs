namespace RealtimeAssistant.Pruning;

/// <summary>A schedule tried on `ra analyze`'s inputs: teacher-forced agreement with the unpruned caption, and the prefill's analytic FLOPs.</summary>
public sealed record Candidate(int FilterFrom, double TokensThreshold, int? Exit, double Agreement, double Kl, double Flops, double KeptTokens);

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
    /// The cheapest candidate (fewest FLOPs) that keeps <paramref name="agreement"/>; if none does,
    /// the one that comes closest, and <c>Holds</c> is false.
    /// </summary>
    public static (Candidate Chosen, bool Holds) Choose(IReadOnlyList<Candidate> candidates, double agreement)
    {
        if (candidates.Count == 0) throw new ArgumentException("no candidates", nameof(candidates));
        var holding = candidates.Where(c => c.Agreement >= agreement).OrderBy(c => c.Flops).FirstOrDefault();
        return holding is not null ? (holding, true) : (candidates.OrderByDescending(c => c.Agreement).ThenBy(c => c.Flops).First(), false);
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
