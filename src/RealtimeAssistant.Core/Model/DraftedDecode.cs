using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Drafts for prompt-lookup decoding: the tokens that followed, in text the model has written
/// before, the last few tokens it has just written. A live stream's captions repeat each other
/// (the scene changes less often than it is described), so the previous caption predicts much of
/// the next. The longest suffix (up to <see cref="MaxNgram"/> tokens) that occurs wins, the
/// earlier text before the caption so far. In the earlier text the occurrence nearest the same
/// place wins (a caption that repeats the last one lines up with it token for token); in the
/// caption so far, the first (it leaves the most to follow).
/// </summary>
public sealed class PromptLookup(IReadOnlyList<int> earlier)
{
    public const int MaxNgram = 3;

    /// <summary>Up to <paramref name="max"/> draft tokens after <paramref name="generated"/> (the caption so far, its last token not yet fed back) into <paramref name="into"/> (cleared first).</summary>
    public void Draft(IReadOnlyList<int> generated, int max, List<int> into)
    {
        into.Clear();
        if (max <= 0 || generated.Count == 0) return;
        for (int n = Math.Min(MaxNgram, generated.Count); n >= 1; n--)
        {
            int at = Nearest(earlier, earlier.Count, generated, n, generated.Count - n);
            var text = earlier;
            if (at < 0) { at = Nearest(generated, generated.Count - 1, generated, n, -1); text = generated; }
            if (at < 0) continue;
            for (int j = at + n; j < text.Count && into.Count < max; j++) into.Add(text[j]);
            return;
        }
    }

    /// <summary>
    /// Where <paramref name="generated"/>'s last <paramref name="n"/> tokens occur in
    /// <paramref name="text"/> with a token after them, before <paramref name="end"/>: the
    /// occurrence nearest <paramref name="near"/> (−1: the first); −1 when none.
    /// </summary>
    static int Nearest(IReadOnlyList<int> text, int end, IReadOnlyList<int> generated, int n, int near)
    {
        int g = generated.Count - n, best = -1;
        for (int at = 0; at + n < Math.Min(end, text.Count); at++)
        {
            int i = 0;
            while (i < n && text[at + i] == generated[g + i]) i++;
            if (i < n) continue;
            if (near < 0) return at;
            if (best < 0 || Math.Abs(at - near) < Math.Abs(best - near)) best = at;
        }
        return best;
    }
}

/// <summary>
/// The decode loop with drafts verified in one pass (prompt-lookup decoding): the last token and
/// up to <c>k</c> drafted ones go through the decoder together; each row's logits give the token
/// that follows it, sampled as a step would sample it, and the drafts are taken while they match.
/// The first token that differs (or the one after the last draft) comes free with them. The
/// tokens are the ones <see cref="DirectRunner.StepByStep"/> gives, in the same order, with the
/// same sampler draws; only the arithmetic's rounding differs (a block's rows instead of one).
/// Rejected drafts leave the cache at once, so it holds what the step loop would hold, also when
/// the caller stops early.
/// </summary>
public static class DraftedDecode
{
    /// <summary>As <see cref="IModelRunner.Decode"/>; <paramref name="draftTokens"/> is the most drafts one pass verifies.</summary>
    public static IEnumerable<(int Id, double Ms)> Run(IModelRunner runner, LanguageModel lm, int first, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, int count, PromptLookup lookup, int draftTokens, DraftStats? stats = null)
    {
        var generated = new List<int> { first };
        var draft = new List<int>(draftTokens);
        var taken = new List<int>(draftTokens + 1);
        int id = first, fed = 0;
        int surplus = 0; // entries in the cache for tokens the caller has not taken yet
        try
        {
            while (fed < count)
            {
                var sw = Stopwatch.StartNew();
                lookup.Draft(generated, Math.Min(draftTokens, count - fed - 1), draft);
                taken.Clear();
                if (draft.Count == 0)
                {
                    using (var logits = runner.Step(lm, id, position, cache, group))
                    using (torch.inference_mode())
                        taken.Add(sampler.Next(logits));
                }
                else Verify(runner, lm, id, draft, position, cache, group, sampler, stops, taken);
                // Kept: one entry per token taken (the rows before the first token that differs, or the stop).
                int rows = draft.Count + 1, keep = taken.Count;
                if (keep < rows) Trim(cache, group, rows - keep);
                stats?.Pass(draft.Count, keep - 1);
                position += keep;
                fed += keep;
                surplus += keep;
                double ms = sw.Elapsed.TotalMilliseconds / keep;
                foreach (var t in taken)
                {
                    surplus--;
                    generated.Add(t);
                    yield return (t, ms);
                    if (stops.Contains(t)) yield break;
                }
                id = taken[^1];
            }
        }
        finally
        {
            if (surplus > 0) Trim(cache, group, surplus);
        }
    }

    /// <summary>One pass over [<paramref name="last"/>, drafts…]; the tokens sampled from its rows while each matches the draft it follows, and the one that does not (or a stop).</summary>
    static void Verify(IModelRunner runner, LanguageModel lm, int last, List<int> draft, long position, KvCache cache, CacheGroup group,
        Sampler sampler, IReadOnlyCollection<int> stops, List<int> taken)
    {
        int rows = draft.Count + 1;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var device = lm.model.embed_tokens.weight.device;
        var ids = torch.tensor(draft.Prepend(last).Select(i => (long)i).ToArray(), device: device).view(1, rows);
        using var h = runner.Forward(lm, lm.model.embed_tokens.forward(ids), new DecoderStep
        {
            Positions = PositionIds.Range(position, rows), Cache = cache, Group = group, OutputRows = rows,
        });
        var logits = lm.Logits(h[0]);
        // Greedy: every row's choice in one read from the device.
        long[]? greedy = sampler.Greedy && !sampler.RecordsLogProbs ? logits.argmax(-1).cpu().data<long>().ToArray() : null;
        for (int r = 0; r < rows; r++)
        {
            int t = greedy is null ? sampler.Next(logits[r]) : (int)greedy[r];
            taken.Add(t);
            if (r == draft.Count || t != draft[r] || stops.Contains(t)) return;
        }
    }

    static void Trim(KvCache cache, CacheGroup group, int entries)
    {
        foreach (var layer in cache.Layers)
        {
            var g = layer[group];
            g.Evict(g.Length - entries, entries);
        }
    }
}

/// <summary>How drafting went: passes that verified drafts, and how many of their drafts were taken.</summary>
public sealed class DraftStats
{
    long _passes, _drafted, _accepted;
    public long Passes => Interlocked.Read(ref _passes);
    public long Drafted => Interlocked.Read(ref _drafted);
    public long Accepted => Interlocked.Read(ref _accepted);

    internal void Pass(int drafted, int accepted)
    {
        if (drafted == 0) return;
        Interlocked.Increment(ref _passes);
        Interlocked.Add(ref _drafted, drafted);
        Interlocked.Add(ref _accepted, accepted);
    }
}
