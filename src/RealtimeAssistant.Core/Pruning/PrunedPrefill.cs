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

/// <summary>The final-normed hidden states of the rows that reached the last layer, their block indices, and the report.</summary>
public sealed record PrefillResult(Tensor Hidden, long[] Rows, PruneReport Report) : IDisposable
{
    /// <summary>The last prompt token's hidden state [B, D].</summary>
    public Tensor Last => Hidden[.., -1];
    public void Dispose() => Hidden.Dispose();
}

/// <summary>
/// A decoder prefill that runs the layers itself, so visual tokens can be skipped for real:
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
    public static PrefillResult Run(LanguageModel lm, Tensor embeds, long[] positions, IReadOnlyList<VisualSpan> spans,
        ITokenPruner pruner, KvCache? cache = null, long[]? sourceSkip = null)
    {
        var dec = lm.model;
        int L = dec.layers.Count;
        long B = embeds.shape[0], T = embeds.shape[1];
        if (positions.Length != T) throw new ArgumentException($"{positions.Length} positions for {T} tokens");
        if (B != 1 && pruner is not NonePruner) throw new UserError($"pruning runs at batch size 1 (got {B}); use method none for batches");
        foreach (var s in spans)
            if (s.Start < 0 || s.Start + s.Length > T) throw new ArgumentException($"visual span {s} outside the {T}-token block");
        pruner.Reset();
        var c = lm.Config;
        var report = new PruneReport { Method = pruner.Name, Spans = spans };
        bool ownCache = cache is null;
        cache ??= new KvCache(L);
        if (cache.Layers.Length != L) throw new ArgumentException($"cache has {cache.Layers.Length} layers, model {L}");
        if (sourceSkip is not null && (sourceSkip.Length != L || sourceSkip.Where((x, i) => x < 0 || x > cache.Layers[i].Source.Length).Any()))
            throw new ArgumentException("sourceSkip needs one count per layer, each within that layer's cache");

        // Block bookkeeping (host side).
        var frameOf = new int[T];
        Array.Fill(frameOf, -1);
        foreach (var s in spans) for (int i = s.Start; i < s.Start + s.Length; i++) frameOf[i] = s.Frame;
        long[] rows = Enumerable.Range(0, (int)T).Select(i => (long)i).ToArray(); // block index of each current row
        var allVisual = rows.Where(r => frameOf[r] >= 0).ToArray();
        report.KeptVisual = allVisual;
        int version = 0, maskVersion = -1;
        ShallowPlan? plan = null;

        using var scope = torch.NewDisposeScope();
        using var inference = torch.inference_mode(); // inference only: the residual stream is updated in place
        var dev = embeds.device;
        var (cos, sin) = dec.Rope.Tables(torch.tensor(positions, device: dev), embeds.dtype);
        var h = embeds;
        var pos = positions;

        // The current rows (local indices) that stay when only these visual tokens are kept; null: all stay.
        long[]? Staying(long[] keepVisual)
        {
            var keepSet = keepVisual.ToHashSet();
            var local = new List<long>();
            for (int i = 0; i < rows.Length; i++)
                if (frameOf[rows[i]] < 0 || keepSet.Contains(rows[i])) local.Add(i);
            return local.Count == rows.Length ? null : local.ToArray();
        }

        // Drops every row but `local` from the bookkeeping, and from h unless the layer already did.
        void Cut(long[] local, Tensor idx, bool hCut)
        {
            if (!hCut) h = h.index_select(1, idx);
            cos = cos.index_select(0, idx); sin = sin.index_select(0, idx);
            rows = local.Select(i => rows[i]).ToArray();
            pos = local.Select(i => pos[i]).ToArray();
            version++;
        }

        if (allVisual.Length > 0 && pruner.BeforeFirstLayer(ListProbe(-1, rows, frameOf)) is { } keep0)
        {
            if (Staying(keep0) is { } local0) Cut(local0, torch.tensor(local0, device: dev), hCut: false);
            report.KeptVisual = keep0;
            report.FilterLayer = -1; // before layer 0
        }

        for (int li = 0; li < L; li++)
        {
            var layer = dec.layers[li];
            var attn = layer.self_attn;
            var kv = cache.Layers[li].Source;
            long skip = sourceSkip?[li] ?? 0;
            long prior = kv.Length - skip; // the earlier entries this block attends
            int n = rows.Length;
            int nVis = rows.Count(r => frameOf[r] >= 0);
            bool shallow = li < pruner.ShallowLayers && nVis > 0 && nVis < n;
            double flops = QkvFlops(c, n);

            var x = layer.input_layernorm.forward(h);
            var (q, k, v) = attn.Project(x, cos, sin);
            kv.Append(k, v, pos);
            // On an empty cache the block's own keys are the cache: skip two native calls a layer.
            var (K, V) = prior == 0 && skip == 0 ? (k, v) : (kv.Keys, kv.Values);
            if (skip > 0) (K, V) = (K.narrow(2, skip, K.shape[2] - skip), V.narrow(2, skip, V.shape[2] - skip)); // views: never scored

            // The pruner decides here, before the layer is finished: its probe reads only this layer's
            // queries, keys and values. Rows it drops after this layer then need their keys and values
            // (the kept rows attend them) but no attention output, o_proj or MLP.
            var need = nVis > 0 ? pruner.Need(li) : ProbeNeed.None;
            long[]? keep = null;
            if (need != ProbeNeed.None)
            {
                var probe = need == ProbeNeed.List ? ListProbe(li, rows, frameOf)
                    : ScoreProbe(attn, li, rows, frameOf, q, K, V, prior, pruner is AnalysisPruner { Measuring: true });
                if (need == ProbeNeed.Scores) flops += AttnFlops(c, prior + n);
                report.Probes.Add(probe);
                keep = pruner.After(li, probe);
            }
            var stay = keep is null ? null : Staying(keep);
            var stayIdx = stay is null ? null : torch.tensor(stay, device: dev);

            Tensor? o = null;
            if (shallow)
            {
                if (maskVersion != version || plan is null) { plan = ShallowPlan.Build(rows, frameOf, prior, pruner.Sink, dev); maskVersion = version; }
                (o, var pairs) = ShallowAttend(attn, plan, q, k, v, K, V, prior, li == 0);
                flops += AttnFlops(c, pairs);
                if (stayIdx is not null) o = o.index_select(2, stayIdx);
            }
            else if (stay is null)
            {
                o = attn.Attend(q, K, V, null);
                flops += AttnFlops(c, prior == 0 ? (double)n * (n + 1) / 2 : (double)n * (prior + n));
            }
            else if (stay.Length > 0)
            {
                // Only the staying rows query: row i (block order) sees the prior cache and the block up to itself.
                long S = prior + n;
                var allowed = new bool[stay.Length * S];
                for (int r = 0; r < stay.Length; r++) Array.Fill(allowed, true, (int)(r * S), (int)(prior + stay[r] + 1));
                o = attn.Attend(q.index_select(2, stayIdx!), K, V, torch.tensor(allowed, device: dev).view(stay.Length, S));
                flops += AttnFlops(c, stay.Sum(i => prior + i + 1));
            }
            if (stayIdx is not null) h = h.index_select(1, stayIdx);
            if (o is not null)
            {
                h = h + attn.Output(o); // a new tensor: the caller's embeds are not touched
                h.add_(layer.mlp.forward(layer.post_attention_layernorm.forward(h)));
                flops += OutMlpFlops(c, stay?.Length ?? n);
            }

            report.Layers.Add(new LayerAccount(li, shallow ? "shallow" : li <= (report.FilterLayer ?? int.MaxValue) ? "full" : "pruned",
                n, nVis, kv.Length, flops, rows.Where(r => frameOf[r] >= 0).ToArray()));
            if (keep is not null)
            {
                if (pruner.FilterLayer == li) { report.FilterLayer = li; report.KeptVisual = keep; }
                else if (report.FilterLayer is null && (keep.Length == 0 || pruner.ExitLayer == li)) report.KeptVisual = keep; // exit before any filter (what it spared, if anything)
                if (stay is not null) Cut(stay, stayIdx!, hCut: true);
            }
        }
        report.ExitLayer = pruner.ExitLayer;
        report.HeadFlops = 2.0 * c.HiddenSize * c.VocabSize;
        var final = dec.norm.forward(h).MoveToOuterDisposeScope();
        if (ownCache) cache.Dispose();
        return new PrefillResult(final, rows, report);
    }

    /// <summary>The q, k and v projections of n rows.</summary>
    static double QkvFlops(TextConfig c, int n)
    {
        double qd = c.NumAttentionHeads * (double)c.HeadDim, kvd = c.NumKeyValueHeads * (double)c.HeadDim;
        return 2.0 * n * c.HiddenSize * (qd + 2 * kvd);
    }

    /// <summary>o_proj and the gated MLP of n rows.</summary>
    static double OutMlpFlops(TextConfig c, int n) =>
        2.0 * n * c.NumAttentionHeads * c.HeadDim * c.HiddenSize + 2.0 * n * 3 * c.HiddenSize * c.IntermediateSize;

    static double ProjFlops(TextConfig c, int n) => QkvFlops(c, n) + OutMlpFlops(c, n);

    /// <summary>QKᵀ and PV for this many query-key pairs, all heads.</summary>
    static double AttnFlops(TextConfig c, double pairs) => 4.0 * pairs * c.HeadDim * c.NumAttentionHeads;

    /// <summary>Analytic FLOPs of an unpruned prefill of <paramref name="n"/> tokens on an empty cache (for checks).</summary>
    public static double DenseFlops(TextConfig c, int n) =>
        c.NumHiddenLayers * (ProjFlops(c, n) + AttnFlops(c, (double)n * (n + 1) / 2)) + 2.0 * c.HiddenSize * c.VocabSize;

    static Probe ListProbe(int layer, long[] rows, int[] frameOf)
    {
        var vis = rows.Where(r => frameOf[r] >= 0).ToArray();
        return new Probe { Layer = layer, Visual = vis, Frame = vis.Select(r => frameOf[r]).ToArray() };
    }

    /// <summary>The filtering test's quantities for the last row's query at this layer (one host copy).</summary>
    static Probe ScoreProbe(SelfAttention attn, int layer, long[] rows, int[] frameOf, Tensor q, Tensor K, Tensor V, long prior, bool textMass)
    {
        using var scope = torch.NewDisposeScope();
        int H = attn.Heads, hd = attn.HeadDim;
        var visLocal = Enumerable.Range(0, rows.Length).Where(i => frameOf[rows[i]] >= 0).ToArray();
        var vis = visLocal.Select(i => rows[i]).ToArray();
        var Kr = attn.RepeatKv(K)[0];   // [H, S, hd]
        var Vr = attn.RepeatKv(V)[0];
        var ql = q[0].narrow(1, rows.Length - 1, 1); // [H, 1, hd]
        var P = torch.softmax(torch.matmul(ql, Kr.transpose(1, 2)) / Math.Sqrt(hd), -1)[.., 0]; // [H, S]
        var o = torch.matmul(P.unsqueeze(1), Vr).reshape(-1);                                    // [H·hd]
        var cols = torch.tensor(visLocal.Select(i => prior + i).ToArray(), device: q.device);
        var Pv = P.index_select(1, cols);                                                        // [H, nv]
        var contrib = (Pv.unsqueeze(-1) * Vr.index_select(1, cols)).permute(1, 0, 2).reshape(vis.Length, H * hd);
        var norm = contrib.norm(1);
        var diff = o.unsqueeze(0) - contrib;
        var cosv = (diff * o).sum(1) / (diff.norm(1) * o.norm() + 1e-12f);
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
                var scores = torch.matmul(q[0].index_select(1, tr), Kr.transpose(1, 2)) / Math.Sqrt(hd); // [H, nt, S]
                var allowed = torch.arange(Kr.shape[1], device: q.device).unsqueeze(0) <= (tr + prior).unsqueeze(1);
                var Pt = torch.softmax(scores.masked_fill(allowed.logical_not().unsqueeze(0), float.NegativeInfinity), -1);
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
    sealed class ShallowPlan
    {
        public required Tensor TextRows, TextKeys, TextMask, VisRows, VisMask, Vis0Mask, Vis0Keys;
        public required long TextPairs, VisPairs, Vis0Pairs, VisKeyEnd;

        public static ShallowPlan Build(long[] rows, int[] frameOf, long prior, bool sink, Device dev)
        {
            int n = rows.Length;
            var text = Enumerable.Range(0, n).Where(i => frameOf[rows[i]] < 0).ToArray();
            var vis = Enumerable.Range(0, n).Where(i => frameOf[rows[i]] >= 0).ToArray();
            var sinks = sink ? vis.GroupBy(i => frameOf[rows[i]]).Select(g => g.Min()).ToArray() : Array.Empty<int>();
            var tkeys = text.Concat(sinks).OrderBy(i => i).ToArray();
            // Text rows: prior cache + (text ∪ sinks) keys, causal by block order.
            var tm = new bool[text.Length * (prior + tkeys.Length)];
            for (int r = 0; r < text.Length; r++)
            {
                long off = r * (prior + tkeys.Length);
                for (long j = 0; j < prior; j++) tm[off + j] = true;
                for (int j = 0; j < tkeys.Length; j++) tm[off + prior + j] = tkeys[j] <= text[r];
            }
            // Visual rows, layers ≥ 1: causal over the keys up to the last visual row.
            int vEnd = vis[^1] + 1;
            var vm = new bool[vis.Length * (prior + vEnd)];
            for (int r = 0; r < vis.Length; r++)
                for (long j = 0; j < prior + vEnd; j++) vm[r * (prior + vEnd) + j] = j < prior || j - prior <= vis[r];
            // Visual rows, layer 0: the prior cache and the text before them (plus themselves, added apart).
            var v0 = new bool[vis.Length * (prior + text.Length)];
            for (int r = 0; r < vis.Length; r++)
                for (long j = 0; j < prior + text.Length; j++) v0[r * (prior + text.Length) + j] = j < prior || text[j - prior] < vis[r];
            Tensor T(long[] a) => torch.tensor(a, device: dev).DetachFromDisposeScope();
            Tensor M(bool[] m, long r, long cc) => torch.tensor(m, device: dev).view(r, cc).DetachFromDisposeScope();
            return new ShallowPlan
            {
                TextRows = T(text.Select(i => (long)i).ToArray()), TextKeys = T(tkeys.Select(i => (long)i).ToArray()),
                TextMask = M(tm, text.Length, prior + tkeys.Length),
                VisRows = T(vis.Select(i => (long)i).ToArray()), VisMask = M(vm, vis.Length, prior + vEnd),
                Vis0Keys = T(text.Select(i => (long)i).ToArray()), Vis0Mask = M(v0, vis.Length, prior + text.Length),
                TextPairs = text.Length * (prior + tkeys.Length), VisPairs = vis.Length * (prior + vEnd),
                Vis0Pairs = vis.Length * (prior + text.Length + 1), VisKeyEnd = prior + vEnd,
            };
        }
    }

    static (Tensor O, double Pairs) ShallowAttend(SelfAttention attn, ShallowPlan p, Tensor q, Tensor k, Tensor v, Tensor K, Tensor V, long prior, bool first)
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
            double scale = 1.0 / Math.Sqrt(attn.HeadDim);
            var kS = attn.RepeatKv(k.index_select(2, p.VisRows));
            var vS = attn.RepeatKv(v.index_select(2, p.VisRows));
            var self = (qV * kS).sum(-1, keepdim: true) * scale;
            if (p.Vis0Mask.shape[1] == 0) oV = vS;
            else
            {
                var kP = attn.RepeatKv(WithPrior(K, k, p.Vis0Keys));
                var vP = attn.RepeatKv(WithPrior(V, v, p.Vis0Keys));
                var scores = torch.matmul(qV, kP.transpose(2, 3)) * scale;
                scores = scores.masked_fill(p.Vis0Mask.logical_not(), float.NegativeInfinity);
                var w = torch.softmax(torch.cat(new[] { scores, self }, -1), -1);
                long np = kP.shape[2];
                oV = torch.matmul(w.narrow(-1, 0, np), vP) + w.narrow(-1, np, 1) * vS;
            }
            pairs += p.Vis0Pairs;
        }
        var o = torch.zeros_like(q);
        o.index_copy_(2, p.TextRows, oT);
        o.index_copy_(2, p.VisRows, oV);
        return (o, pairs);
    }
}
