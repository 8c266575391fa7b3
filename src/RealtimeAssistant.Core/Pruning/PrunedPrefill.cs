using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Pruning;

/// <summary>One image's visual tokens in a prefill block: [Start, Start+Length), frame index in prompt order.</summary>
public readonly record struct VisualSpan(int Start, int Length, int Frame)
{
    /// <summary>The image spans of a token sequence: runs of the image token, split into images of <paramref name="perImage"/> tokens.</summary>
    public static List<VisualSpan> FromIds(IReadOnlyList<int> ids, int imageTokenId, int perImage)
    {
        var spans = new List<VisualSpan>();
        for (int i = 0; i < ids.Count;)
        {
            if (ids[i] != imageTokenId) { i++; continue; }
            int run = 0;
            while (i + run < ids.Count && ids[i + run] == imageTokenId) run++;
            if (run % perImage != 0) throw new UserError($"an image-token run of {run} is not a whole number of {perImage}-token images");
            for (int s = 0; s < run; s += perImage) spans.Add(new VisualSpan(i + s, perImage, spans.Count));
            i += run;
        }
        return spans;
    }
}

/// <summary>What one decoder layer did in a pruned prefill.</summary>
public sealed record LayerAccount(int Layer, string Stage, int Tokens, int Visual, long CacheLength, double Flops, long[] VisualPresent);

/// <summary>Per-layer accounting of one prefill: the path taken, its analytic FLOPs, and what was kept.</summary>
public sealed class PruneReport
{
    public required string Method { get; init; }
    public required IReadOnlyList<VisualSpan> Spans { get; init; }
    public List<LayerAccount> Layers { get; } = new();
    public List<Probe> Probes { get; } = new();
    /// <summary>The final norm and lm_head for the last token.</summary>
    public double HeadFlops { get; set; }
    public int? FilterLayer { get; set; }
    public int? ExitLayer { get; set; }
    /// <summary>
    /// Visual tokens (block indices) that survived filtering; when an exit came before any filter,
    /// those it spared (none, or a spared newest frame); all of them when nothing was cut.
    /// </summary>
    public long[] KeptVisual { get; set; } = Array.Empty<long>();
    public int VisualTokens => Spans.Sum(s => s.Length);
    public int KeptTokens => KeptVisual.Length;
    public double Flops => Layers.Sum(l => l.Flops) + HeadFlops;

    /// <summary>Fraction of frames that kept each patch-grid cell (row-major), for the overlay's heatmap.</summary>
    public float[] KeptGrid(int gridW, int gridH)
    {
        var grid = new float[gridW * gridH];
        if (Spans.Count == 0) return grid;
        var kept = KeptVisual.ToHashSet();
        foreach (var s in Spans)
        {
            int offset = s.Length - grid.Length; // a CLS token (if any) comes first
            if (offset < 0) continue;
            for (int c = 0; c < grid.Length; c++)
                if (kept.Contains(s.Start + offset + c)) grid[c] += 1f / Spans.Count;
        }
        return grid;
    }
}

/// <summary>The final-normed hidden states of the rows that reached the last layer (the last of them the caller asked for), their block indices, and the report.</summary>
public sealed record PrefillResult(Tensor Hidden, long[] Rows, PruneReport Report) : IDisposable
{
    /// <summary>The last prompt token's hidden state [B, D].</summary>
    public Tensor Last => Hidden[.., -1];
    public void Dispose() => Hidden.Dispose();
}

/// <summary>
/// A prefill that prunes visual tokens for real. It is a plan (<see cref="PrunePlan"/>) that the
/// decoder's one forward follows:
/// <list type="bullet">
/// <item>Shallow layers (0..s−1): text rows are computed against the prior cache, the block's text
/// and one sink key per frame (the frame's first visual token) only; visual rows against the keys up to
/// them (layer 0: the text before them and themselves only). No text-row × visual-key score is ever
/// formed, so the FLOPs are really saved. Where the reference zeroes text→vision softmax entries after
/// the fact and moves their mass to the sink, we cannot know that mass without computing it; instead the
/// sink competes in the text rows' softmax with its own score and absorbs the probability text would put on
/// the image. The mask-based reference in the tests implements exactly this pattern.</item>
/// <item>At each layer the pruner may cut the visual tokens. It decides from the layer's queries, keys and
/// values, so the dropped tokens' keys and values still serve that layer but their attention output,
/// o_proj and MLP are never computed. The hidden states, positions, RoPE tables and every later layer's
/// cache then hold only the kept tokens, at their original position ids.</item>
/// </list>
/// Appends to <see cref="CacheGroup.Source"/>; the cache may already hold earlier frames (streaming).
/// Pruning needs batch size 1; <see cref="NonePruner"/> runs any batch.
/// </summary>
public static class PrunedPrefill
{
    /// <param name="sourceSkip">Per layer, how many of the oldest cache entries the block never attends
    /// (a streaming frame band: pruning leaves each layer a different count).</param>
    /// <param name="runner">Runs the forward (a <see cref="ForwardBatcher"/> batches it with other streams'); null: on this thread.</param>
    /// <param name="probeRow">The block row whose view the pruner decides from (default: the last). Text rows
    /// behind it ride along: a streamed frame's read with the instruction after it prunes as the frame read alone does.</param>
    /// <param name="outputRows">How many of the last rows that reach the last layer the caller reads (<see cref="DecoderStep.OutputRows"/>; null: all).</param>
    public static PrefillResult Run(LanguageModel lm, Tensor embeds, PositionIds positions, IReadOnlyList<VisualSpan> spans,
        ITokenPruner pruner, KvCache? cache = null, long[]? sourceSkip = null, IModelRunner? runner = null, int? probeRow = null, int? outputRows = null)
    {
        int L = lm.model.layers.Count;
        long B = embeds.size(0), T = embeds.size(1);
        if (positions.Length != T) throw new ArgumentException($"{positions.Length} positions for {T} tokens");
        if (B != 1 && pruner is not NonePruner) throw new UserError($"pruning runs at batch size 1 (got {B}); use method none for batches");
        bool ownCache = cache is null;
        cache ??= new KvCache(L);
        if (cache.Layers.Length != L) throw new ArgumentException($"cache has {cache.Layers.Length} layers, model {L}");
        if (sourceSkip is not null && (sourceSkip.Length != L || sourceSkip.Where((x, i) => x < 0 || x > cache.Layers[i].Source.Length).Any()))
            throw new ArgumentException("sourceSkip needs one count per layer, each within that layer's cache");
        var plan = new PrunePlan(lm.Config, (int)T, spans, pruner, sourceSkip, probeRow, outputRows);
        // Inference only (the runner's mode): the residual stream is updated in place.
        var final = (runner ?? DirectRunner.Instance).Forward(lm, embeds, new DecoderStep { Positions = positions, Cache = cache, Plan = plan, OutputRows = outputRows });
        if (ownCache) cache.Dispose();
        var rows = plan.Rows;
        return new PrefillResult(final, rows[(int)Math.Max(0, rows.Length - final.size(1))..], plan.Finish());
    }

    /// <summary>The q, k and v projections of n rows.</summary>
    internal static double QkvFlops(TextConfig c, int n)
    {
        double qd = c.NumAttentionHeads * (double)c.HeadDim, kvd = c.NumKeyValueHeads * (double)c.HeadDim;
        return 2.0 * n * c.HiddenSize * (qd + 2 * kvd);
    }

    /// <summary>o_proj and the gated MLP of n rows.</summary>
    internal static double OutMlpFlops(TextConfig c, int n) =>
        2.0 * n * c.NumAttentionHeads * c.HeadDim * c.HiddenSize + 2.0 * n * 3 * c.HiddenSize * c.IntermediateSize;

    internal static double ProjFlops(TextConfig c, int n) => QkvFlops(c, n) + OutMlpFlops(c, n);

    /// <summary>QKᵀ and PV for this many query-key pairs, all heads.</summary>
    internal static double AttnFlops(TextConfig c, double pairs) => 4.0 * pairs * c.HeadDim * c.NumAttentionHeads;

    /// <summary>Analytic FLOPs of an unpruned prefill of <paramref name="n"/> tokens on an empty cache (for checks).</summary>
    public static double DenseFlops(TextConfig c, int n) =>
        c.NumHiddenLayers * (ProjFlops(c, n) + AttnFlops(c, (double)n * (n + 1) / 2)) + 2.0 * c.HiddenSize * c.VocabSize;

    internal static Probe ListProbe(int layer, long[] rows, int[] frameOf)
    {
        var vis = rows.Where(r => frameOf[r] >= 0).ToArray();
        return new Probe { Layer = layer, Visual = vis, Frame = vis.Select(r => frameOf[r]).ToArray() };
    }

    /// <summary>
    /// The filtering test's quantities for the probe row's query at this layer (one host copy):
    /// <paramref name="probe"/> is its current (local) row, the last unless rows ride behind it;
    /// <paramref name="visualRows"/> holds the local indices of the visual rows, on the device.
    /// </summary>
    internal static Probe ScoreProbe(SelfAttention attn, int layer, long[] rows, int[] frameOf, Tensor visualRows, Tensor q, Tensor K, Tensor V, long prior, bool textMass, int probe)
    {
        using var scope = torch.NewDisposeScope();
        int H = attn.Heads, hd = attn.HeadDim;
        var visLocal = Enumerable.Range(0, rows.Length).Where(i => frameOf[rows[i]] >= 0).ToArray();
        var vis = visLocal.Select(i => rows[i]).ToArray();
        // The probe row sees the keys up to itself: rows behind it are later tokens.
        var Kr = attn.RepeatKv(K)[0].narrow(1, 0, prior + probe + 1);   // [H, S, hd]
        var Vr = attn.RepeatKv(V)[0].narrow(1, 0, prior + probe + 1);
        var ql = q[0].narrow(1, probe, 1); // [H, 1, hd]
        using var sqrtHd = Math.Sqrt(hd).ToScalar(); // alive across the calls: see Model/Rooted
        var P = torch.softmax(torch.matmul(ql, Kr.transpose(1, 2)).div(sqrtHd), -1)[.., 0]; // [H, S]
        var o = torch.matmul(P.unsqueeze(1), Vr).reshape(-1);                                    // [H·hd]
        var cols = visualRows.PlusNumber(prior);
        var Pv = P.index_select(1, cols);                                                        // [H, nv]
        var contrib = (Pv.unsqueeze(-1) * Vr.index_select(1, cols)).permute(1, 0, 2).reshape(vis.Length, H * hd);
        var norm = contrib.norm(1);
        var diff = o.unsqueeze(0) - contrib;
        var cosv = (diff * o).sum(1) / (diff.norm(1) * o.norm()).PlusNumber(1e-12);
        var mass = Pv.mean(new long[] { 0 });
        var stats = torch.stack(new[] { cosv, norm, mass }).to_type(ScalarType.Float32).cpu();
        var data = stats.data<float>().ToArray();
        int nv = vis.Length;
        double tm = double.NaN;
        if (textMass && vis.Length > 0)
        {
            // Text queries after the first image, full softmax over every key (the unpruned view).
            var firstVis = visLocal[0];
            var tRows = Enumerable.Range(0, rows.Length).Where(i => i > firstVis && frameOf[rows[i]] < 0).Select(i => (long)i).ToArray();
            if (tRows.Length > 0)
            {
                var tr = torch.tensor(tRows, device: q.device);
                var scores = torch.matmul(q[0].index_select(1, tr), Kr.transpose(1, 2)).div(sqrtHd); // [H, nt, S]
                var allowed = Rooted.Arange(Kr.size(1), q.device).unsqueeze(0) <= tr.PlusNumber(prior).unsqueeze(1);
                var Pt = torch.softmax(scores.masked_fill(allowed.logical_not().unsqueeze(0), Rooted.NegativeInfinity), -1);
                tm = Pt.index_select(2, cols).sum(2).mean().item<float>();
            }
        }
        return new Probe
        {
            Layer = layer, Visual = vis, Frame = vis.Select(r => frameOf[r]).ToArray(),
            Cos = data[..nv], Norm = data[nv..(2 * nv)], Mass = data[(2 * nv)..], TextMass = tm,
        };
    }

    /// <summary>Index sets and masks for the shallow stage's two row groups, built once per token set.</summary>
    internal sealed class ShallowPlan : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { TextRows, TextKeys, TextMask, VisRows, VisMask, Vis0Mask, Vis0Keys }) t.Dispose();
        }

        public required Tensor TextRows, TextKeys, TextMask, VisRows, VisMask, Vis0Mask, Vis0Keys;
        public required long TextPairs, VisPairs, Vis0Pairs, VisKeyEnd;

        public static ShallowPlan Build(long[] rows, int[] frameOf, long prior, bool sink, Device dev)
        {
            int n = rows.Length;
            var text = Enumerable.Range(0, n).Where(i => frameOf[rows[i]] < 0).ToArray();
            var vis = Enumerable.Range(0, n).Where(i => frameOf[rows[i]] >= 0).ToArray();
            var sinks = sink ? vis.GroupBy(i => frameOf[rows[i]]).Select(g => g.Min()).ToArray() : Array.Empty<int>();
            var tkeys = text.Concat(sinks).OrderBy(i => i).ToArray();
            int vEnd = vis[^1] + 1;
            // The masks are made on the device from the row and key indices it holds, each key at
            // its block position and the prior cache's keys at negative ones (before every row): no
            // mask crosses from the host.
            Tensor T(long[] a) => torch.tensor(a, device: dev).DetachFromDisposeScope();
            var textRows = T(text.Select(i => (long)i).ToArray());
            var textKeys = T(tkeys.Select(i => (long)i).ToArray());
            var visRows = T(vis.Select(i => (long)i).ToArray());
            var vis0Keys = T(text.Select(i => (long)i).ToArray());
            Tensor Mask(Tensor keys, Tensor queryRows, bool strictly)
            {
                using var scope = torch.NewDisposeScope();
                var at = torch.cat(new[] { Rooted.Arange(-prior, 0, 1, ScalarType.Int64, dev), keys }).unsqueeze(0);
                var row = queryRows.unsqueeze(1);
                return (strictly ? at < row : at <= row).DetachFromDisposeScope();
            }
            return new ShallowPlan
            {
                // Text rows: the prior cache and the (text ∪ sinks) keys, causal by block order.
                TextRows = textRows, TextKeys = textKeys, TextMask = Mask(textKeys, textRows, strictly: false),
                // Visual rows, layers ≥ 1: causal over the keys up to the last visual row.
                VisRows = visRows, VisMask = Mask(Rooted.Arange(vEnd, dev), visRows, strictly: false),
                // Visual rows, layer 0: the prior cache and the text before them (themselves added apart).
                Vis0Keys = vis0Keys, Vis0Mask = Mask(vis0Keys, visRows, strictly: true),
                TextPairs = text.Length * (prior + tkeys.Length), VisPairs = vis.Length * (prior + vEnd),
                Vis0Pairs = vis.Length * (prior + text.Length + 1), VisKeyEnd = prior + vEnd,
            };
        }
    }

    internal static (Tensor O, double Pairs) ShallowAttend(SelfAttention attn, ShallowPlan p, Tensor q, Tensor k, Tensor v, Tensor K, Tensor V, long prior, bool first)
    {
        Tensor WithPrior(Tensor all, Tensor block, Tensor idx)
        {
            var sel = block.index_select(2, idx);
            return prior == 0 ? sel : torch.cat(new[] { all.narrow(2, 0, prior), sel }, 2);
        }
        // Text rows never meet a visual key other than the sinks.
        var qT = q.index_select(2, p.TextRows);
        var oT = attn.Attend(qT, WithPrior(K, k, p.TextKeys), WithPrior(V, v, p.TextKeys), p.TextMask);
        var qV = q.index_select(2, p.VisRows);
        Tensor oV;
        double pairs = p.TextPairs;
        if (!first)
        {
            oV = attn.Attend(qV, K.narrow(2, 0, p.VisKeyEnd), V.narrow(2, 0, p.VisKeyEnd), p.VisMask);
            pairs += p.VisPairs;
        }
        else
        {
            // Layer 0: visual rows see the text before them (P) and themselves only.
            using var scale = (1.0 / Math.Sqrt(attn.HeadDim)).ToScalar(); // alive across the calls: see Model/Rooted
            var kS = attn.RepeatKv(k.index_select(2, p.VisRows));
            var vS = attn.RepeatKv(v.index_select(2, p.VisRows));
            var self = (qV * kS).sum(-1, keepdim: true).mul(scale);
            if (p.Vis0Mask.size(1) == 0) oV = vS;
            else
            {
                var kP = attn.RepeatKv(WithPrior(K, k, p.Vis0Keys));
                var vP = attn.RepeatKv(WithPrior(V, v, p.Vis0Keys));
                var scores = torch.matmul(qV, kP.transpose(2, 3)).mul(scale);
                scores = scores.masked_fill(p.Vis0Mask.logical_not(), Rooted.NegativeInfinity);
                var w = torch.softmax(torch.cat(new[] { scores, self }, -1), -1);
                long np = kP.size(2);
                oV = torch.matmul(w.narrow(-1, 0, np), vP).Plus(w.narrow(-1, np, 1) * vS);
            }
            pairs += p.Vis0Pairs;
        }
        var o = torch.zeros_like(q);
        o.index_copy_(2, p.TextRows, oT);
        o.index_copy_(2, p.VisRows, oV);
        return (o, pairs);
    }
}
