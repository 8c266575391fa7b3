using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model;

/// <summary>
/// LLaMA / Qwen2 causal LM with HF's module tree (model.embed_tokens, model.layers.N.self_attn.q_proj,
/// model.norm, lm_head). Qwen2 differs only by its q/k/v biases.
/// </summary>
public sealed class LanguageModel : nn.Module
{
    public readonly DecoderModel model;
    public readonly Linear? lm_head; // absent when the embeddings are tied
    public TextConfig Config { get; }

    public LanguageModel(TextConfig c, TensorSpec spec) : base(nameof(LanguageModel))
    {
        Config = c;
        model = new DecoderModel(c, spec);
        if (!c.TieWordEmbeddings) lm_head = new Linear(c.HiddenSize, c.VocabSize, false, spec);
        RegisterComponents();
    }

    /// <summary>hidden [.., D] → logits [.., vocab] in float32.</summary>
    public Tensor Logits(Tensor hidden) =>
        (lm_head?.forward(hidden) ?? model.embed_tokens.Project(hidden)).to_type(ScalarType.Float32);
}

/// <summary>What one decoder forward does with the KV cache and the attention pattern.</summary>
public sealed record DecoderStep
{
    /// <summary>Position ids of the new tokens (non-contiguous and group positions allowed; M-RoPE models: t, h, w).</summary>
    public required PositionIds Positions { get; init; }
    /// <summary>When set, new keys/values are appended to this cache and queries attend through it.</summary>
    public KvCache? Cache { get; init; }
    public CacheGroup Group { get; init; } = CacheGroup.Source;
    /// <summary>An explicit boolean mask [T, Tkeys] or per row [B, 1, T, T] (true = may attend); default is causal over the new block.</summary>
    public Tensor? Mask { get; init; }
    /// <summary>Per-row position ids [B, T] on the device (training batches); overrides <see cref="Positions"/> for RoPE.</summary>
    public Tensor? PositionTensor { get; init; }
    /// <summary>
    /// Per-layer decisions beyond causal attention over the cache: which keys each row attends
    /// (a frame band, the pruner's shallow stage, a training mask) and which rows leave at a layer
    /// (the pruner). The one forward follows it; null: plain causal attention.
    /// </summary>
    public ILayerPlan? Plan { get; init; }
    /// <summary>
    /// How many of the block's last rows the caller reads the final hidden states of (null: all;
    /// 0: none, a pass that only fills the cache). At the last layer the other rows' keys and
    /// values still enter the cache, and their o_proj and MLP, which nothing would read, are not
    /// computed (llama.cpp's output ids do the same). The batch forward (training) only narrows
    /// its result.
    /// </summary>
    public int? OutputRows { get; init; }
}

/// <summary>What one layer's attention sees: the current rows' queries and the keys and values they may attend.</summary>
/// <param name="BlockK">The block's own keys [B, Hkv, n, hd] (the current rows, after RoPE).</param>
/// <param name="K">The layer's cache for the block's group after the append: <paramref name="Before"/> earlier entries, then the block.</param>
/// <param name="Skip">The oldest entries of <paramref name="K"/> the plan said the block does not attend (<see cref="ILayerPlan.Skip"/>).</param>
public readonly record struct AttentionInput(int Layer, SelfAttention Attention, Tensor Q, Tensor BlockK, Tensor BlockV, Tensor K, Tensor V, long Before, long Skip)
{
    public long Rows => Q.size(2);
    /// <summary>Earlier entries the block attends: the cache before it, less the skipped ones.</summary>
    public long Prior => Before - Skip;
    /// <summary>The keys and values the block attends (the skipped ones are never scored).</summary>
    public (Tensor K, Tensor V) Attended => Skip == 0 ? (K, V) : (K.narrow(2, Skip, K.size(2) - Skip), V.narrow(2, Skip, V.size(2) - Skip));
}

/// <summary>
/// One layer's outcome: the attention output of the rows that stay, and which of the current rows
/// stay (ascending; null: all), on the host and, as <paramref name="StayIndex"/>, on the model's
/// device, uploaded once for every use of it.
/// </summary>
public readonly record struct LayerAttention(Tensor? Output, long[]? Stay = null, Tensor? StayIndex = null)
{
    public Tensor Index(Device device) => StayIndex ?? torch.tensor(Stay!, device: device);
}

/// <summary>
/// The per-layer decisions one decoder forward follows. A plan never runs layers itself: it
/// decides, from a layer's queries, keys and values, which keys each row attends and which rows
/// go on to the next layer; rows that leave at a layer still serve as that layer's keys and
/// values, and skip its attention output, o_proj and MLP.
/// </summary>
public interface ILayerPlan
{
    /// <summary>Before layer 0: the block's rows that enter at all (ascending; null: all).</summary>
    long[]? Enter() => null;
    /// <summary>The oldest entries of this layer's cache group the block never attends (a frame band).</summary>
    long Skip(int layer) => 0;
    LayerAttention Attend(in AttentionInput a);
    /// <summary>
    /// Whether nothing is left to decide from <paramref name="layer"/> on: every later layer attends
    /// causally over its cache after <see cref="Skip"/> and keeps every row (a pruned read once its
    /// visual tokens have all left). The forward may then run those layers without
    /// <see cref="Attend"/>, telling the plan of each through <see cref="Passed"/>.
    /// </summary>
    bool PlainFrom(int layer) => false;
    /// <summary>A layer run without <see cref="Attend"/> (see <see cref="PlainFrom"/>): <paramref name="rows"/> rows over <paramref name="before"/> earlier entries.</summary>
    void Passed(int layer, long before, int rows) { }
}

/// <summary>
/// A frame band with one pass for a frame and what follows it: the leading <paramref name="Rows"/>
/// rows (the frame) attend only the entries after each layer's oldest <paramref name="SkipEntries"/>
/// (layers differ where older frames left the deep layers); the rest (an instruction) attend
/// every entry. Views, no mask copy: the skipped keys are never scored.
/// </summary>
public sealed record BandPlan(long[] SkipEntries, int Rows) : ILayerPlan
{
    public LayerAttention Attend(in AttentionInput a)
    {
        var attn = a.Attention;
        long skip = SkipEntries[a.Layer];
        var (kNear, vNear) = skip == 0 ? (a.K, a.V) : (a.K.narrow(2, skip, a.K.size(2) - skip), a.V.narrow(2, skip, a.V.size(2) - skip));
        if (Rows >= a.Rows) return new(attn.Attend(a.Q, kNear, vNear, null));
        var near = attn.AttendRows(a.Q, 0, Rows, kNear, vNear);
        var all = attn.AttendRows(a.Q, Rows, (int)a.Rows - Rows, a.K, a.V);
        return new(torch.cat(new[] { near, all }, 2));
    }
}

/// <summary>
/// Training a visual exit: layers from <paramref name="From"/> on use <paramref name="Deep"/> instead
/// of <paramref name="Mask"/> (text stops reading the image at that depth, exactly as a pruner's exit makes it).
/// </summary>
public sealed record MaskPlan(Tensor? Mask, Tensor Deep, int From) : ILayerPlan
{
    public LayerAttention Attend(in AttentionInput a) => new(a.Attention.Attend(a.Q, a.K, a.V, a.Layer >= From ? Deep : Mask));
}

public sealed class DecoderModel : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<DecoderLayer> layers = new();
    public readonly RmsNorm norm;
    readonly TextConfig _c;
    Rope? _rope;
    FusedDecodeStep? _fused;

    /// <summary>
    /// Whether decode steps on float32 CPU caches run every layer on the kernels alone
    /// (<see cref="FusedDecodeStep"/>; the default). Off, they take the layer path: what `ra bench
    /// engine --fused-decode` compares against, and what the tests check the fused step by.
    /// </summary>
    public static bool FusedDecodeEnabled { get; set; } = true;

    /// <summary>Decode forwards this model ran fused (tests check the path was taken).</summary>
    internal long FusedForwards { get; private set; }

    /// <summary>Rows the last layer's o_proj and MLP ran on, over every forward (tests check what <see cref="DecoderStep.OutputRows"/> saves).</summary>
    internal long LastLayerRows { get; private set; }

    /// <summary>Null, or a clock the fused decode steps time their stages into (`ra bench engine --profile`).</summary>
    public StageClock? FusedStepClock { get; set; }

    public DecoderModel(TextConfig c, TensorSpec spec) : base(nameof(DecoderModel))
    {
        _c = c;
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, spec);
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new DecoderLayer(c, spec));
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, spec);
        RegisterComponents();
    }

    public Rope Rope => _rope ??= new Rope(_c.HeadDim, _c.RopeTheta, embed_tokens.weight.device, _c.MropeSection);

    /// <summary>
    /// embeds [B, T, D] → final-normed hidden states [B, T', D] of the rows that reached the last
    /// layer (T' = T without a plan that drops rows). One sequence (every inference pass) is
    /// <see cref="ForwardMany"/> of one; a batch of rows with their own positions (training) runs
    /// the batch forward below.
    /// </summary>
    public Tensor Forward(Tensor embeds, DecoderStep step) =>
        embeds.size(0) == 1 && step.PositionTensor is null ? ForwardMany([(embeds, step)])[0] : Forward(embeds, step, -1, out _);

    /// <summary>
    /// The batch forward (training: B rows, each with its own positions and mask). As
    /// <see cref="Forward(Tensor, DecoderStep)"/>, and also returns the residual stream after layer
    /// <paramref name="tapLayer"/> (training's auxiliary heads read it; −1: none).
    /// </summary>
    public Tensor Forward(Tensor embeds, DecoderStep step, int tapLayer, out Tensor? tapped)
    {
        using var scope = torch.NewDisposeScope();
        var (cos, sin) = step.PositionTensor is { } pt ? Rope.Tables(pt, embeds.dtype) : Rope.Tables(step.Positions, embeds.dtype, embeds.device);
        if (step.PositionTensor is not null) { cos = cos.unsqueeze(1); sin = sin.unsqueeze(1); } // [B,1,T,D]: broadcast over heads
        var h = embeds;
        var positions = step.Positions;
        tapped = null;
        if (step.Plan?.Enter() is { } enter)
        {
            var idx = torch.tensor(enter, device: embeds.device);
            (h, cos, sin, positions) = (h.index_select(1, idx), cos.index_select(-2, idx), sin.index_select(-2, idx), positions.Select(enter));
        }
        HashSet<Tensor> carried = new(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < layers.Count; i++)
        {
            var kv = step.Cache?.Layers[i];
            // As in ForwardMany: the layer's intermediates die with it (autograd keeps what backward needs).
            var layerScope = torch.NewDisposeScope();
            try
            {
                if (step.Plan is not { } plan) h = layers[i].Forward(h, cos, sin, step, kv);
                else if (layers[i].Forward(ref h, cos, sin, positions, step, kv, plan, i) is { Stay: { } stay } cut)
                {
                    var idx = cut.Index(embeds.device);
                    (cos, sin, positions) = (cos.index_select(-2, idx), sin.index_select(-2, idx), positions.Select(stay));
                }
                if (i == tapLayer) tapped = h;
            }
            finally { carried = Carry(layerScope, carried, [h, cos, sin, tapped]); }
        }
        tapped?.MoveToOuterDisposeScope();
        return norm.forward(LastRows(h, step.OutputRows)).MoveToOuterDisposeScope();
    }

    /// <summary>The last <paramref name="rows"/> rows of hidden states [B, T, D] (null: all).</summary>
    static Tensor LastRows(Tensor h, int? rows) =>
        rows is { } n && n < h.size(1) ? h.narrow(1, h.size(1) - n, n) : h;

    /// <summary>
    /// One forward for several sequences at once, each with its own block, cache, positions and
    /// plan (the streams that share a model: their decode steps, frame reads and prompt passes
    /// together). Each embeds is [1, T, D] (T may differ); returns, per sequence, the final-normed
    /// hidden states [1, T', D] of its rows that reached the last layer, exactly as its own
    /// <see cref="Forward(Tensor, DecoderStep)"/> would. The rows of every sequence go through the
    /// projections, o_proj and the MLPs together (the weights are read once, not once per sequence);
    /// each sequence appends to and attends over its own cache, as its plan says. Decode steps
    /// that can (<see cref="KernelRows"/>) go first, as one unit whose attention is one kernel call.
    /// </summary>
    public Tensor[] ForwardMany(IReadOnlyList<(Tensor Embeds, DecoderStep Step)> seqs)
    {
        foreach (var (e, st) in seqs)
        {
            if (e.size(0) != 1 || st.PositionTensor is not null || st.Positions.Length != e.size(1))
                throw new ArgumentException($"each sequence is one block [1, T, D] with T position ids (got {string.Join("x", e.shape)}, {st.Positions.Length} positions)");
            if (st.OutputRows < 0) throw new ArgumentException($"output rows must be ≥ 0, got {st.OutputRows}");
        }
        using var scope = torch.NewDisposeScope();
        var rowIdx = KernelRows(seqs);
        if (rowIdx.Count == seqs.Count && FusedFor(rowIdx.Count) is { } fused)
        {
            var e = Cat(seqs.Select(x => x.Embeds).ToList(), 1);
            var (c, s) = Rope.Tables(PositionIds.Concat(seqs.Select(x => x.Step.Positions).ToArray()), ScalarType.Float32, e.device);
            var hidden = fused.Run(e, seqs.Select(x => x.Step).ToList(), c, s, FusedStepClock);
            FusedForwards++;
            return Enumerable.Range(0, seqs.Count).Select(i => (seqs.Count == 1 ? hidden : hidden.narrow(1, i, 1)).MoveToOuterDisposeScope()).ToArray();
        }
        // One sequence's few rows with no plan (drafted tokens being verified, a short prompt):
        // every layer on the kernels, as a decode step runs.
        if (seqs.Count == 1 && rowIdx.Count == 0 && seqs[0].Step is { Plan: null, Mask: null, Cache: { } blockCache } blockStep
            && seqs[0].Embeds is var blockEmbeds && blockEmbeds.size(1) <= Kernels.Gemv.MaxRows && KernelBlock(blockEmbeds, blockCache)
            && FusedFor((int)blockEmbeds.size(1)) is { } whole)
            return [RunBlockFused(whole, 0, blockEmbeds, blockStep, null)];
        var blockIdx = Enumerable.Range(0, seqs.Count).Except(rowIdx).ToList();
        var rowSeqs = rowIdx.Select(i => seqs[i]).ToList();
        int m = rowIdx.Count, first = m > 0 ? 1 : 0; // unit 0: the kernel rows, if any; then one unit per block
        int n = first + blockIdx.Count;
        var h = new Tensor[n];
        var cos = new Tensor[n];
        var sin = new Tensor[n];
        var positions = new PositionIds[n];
        if (m > 0)
        {
            var e0 = rowSeqs[0].Embeds;
            h[0] = Cat(rowSeqs.Select(x => x.Embeds).ToList(), 1);
            positions[0] = PositionIds.Concat(rowSeqs.Select(x => x.Step.Positions).ToArray());
            (cos[0], sin[0]) = Rope.Tables(positions[0], e0.dtype, e0.device);
        }
        for (int u = first; u < n; u++)
        {
            var (embeds, step) = seqs[blockIdx[u - first]];
            (h[u], positions[u]) = (embeds, step.Positions);
            (cos[u], sin[u]) = Rope.Tables(step.Positions, embeds.dtype, embeds.device);
            if (step.Plan?.Enter() is { } enter)
            {
                var idx = torch.tensor(enter, device: embeds.device);
                (h[u], cos[u], sin[u], positions[u]) = (h[u].index_select(1, idx), cos[u].index_select(-2, idx), sin[u].index_select(-2, idx), positions[u].Select(enter));
            }
        }
        // The units' rows side by side, and their RoPE tables: joined again only after a plan
        // dropped rows.
        Tensor? hAll = null, cosAll = null, sinAll = null;
        HashSet<Tensor> carried = new(ReferenceEqualityComparer.Instance);
        for (int l = 0; l < layers.Count; l++)
        {
            // One sequence whose plan has nothing left to decide (a pruned read after its visual
            // tokens left) and a few rows: the rest of the layers on the kernels.
            if (n == 1 && m == 0 && seqs[0].Step is { Plan: { } blockPlan, Cache: { } cache, Mask: null, Group: CacheGroup.Source } only
                && blockPlan.PlainFrom(l) && h[0].size(1) <= Kernels.Gemv.MaxRows && KernelBlock(h[0], cache) && FusedFor((int)h[0].size(1)) is { } rest)
                return [RunBlockFused(rest, l, h[0], only with { Positions = positions[0] }, blockPlan)];
            // Each layer's intermediates die with it; the rows and tables carried to the next layer move out.
            var layerScope = torch.NewDisposeScope();
            try
            {
                var layer = layers[l];
                hAll ??= Cat(h, 1);
                cosAll ??= Cat(cos, -2);
                sinAll ??= Cat(sin, -2);
                var (q, k, v) = layer.self_attn.Project(layer.input_layernorm.forward(hAll), cosAll, sinAll);
                if (n == first) // decode rows only
                {
                    hAll = layer.ResidualMlp(hAll.Plus(layer.self_attn.Output(AttendRowsOnKernel(q, k, v, rowSeqs, l, layer.self_attn.KvHeads))));
                    continue;
                }
                var outs = new List<Tensor>(n);
                var going = new List<int>(n); // the units with rows that go on through o_proj and the MLP
                long offset = 0;
                if (m > 0)
                {
                    outs.Add(AttendRowsOnKernel(q.narrow(2, 0, m), k.narrow(2, 0, m), v.narrow(2, 0, m), rowSeqs, l, layer.self_attn.KvHeads));
                    going.Add(0);
                    offset = m;
                }
                for (int u = first; u < n; u++)
                {
                    long rows = h[u].size(1);
                    var (qi, ki, vi) = n == 1 ? (q, k, v) : (q.narrow(2, offset, rows), k.narrow(2, offset, rows), v.narrow(2, offset, rows));
                    offset += rows;
                    var step = seqs[blockIdx[u - first]].Step;
                    var kv = step.Cache?.Layers[l];
                    Tensor o;
                    if (step.Plan is not { } plan) o = layer.self_attn.AttendCached(qi, ki, vi, step, kv);
                    else
                    {
                        var r = layer.AttendPlanned(qi, ki, vi, positions[u], step, kv, plan, l);
                        if (r.Stay is { } stay)
                        {
                            var idx = r.Index(h[u].device);
                            if (stay.Length != h[u].size(1)) h[u] = h[u].index_select(1, idx);
                            (cos[u], sin[u], positions[u]) = (cos[u].index_select(-2, idx), sin[u].index_select(-2, idx), positions[u].Select(stay));
                            (cosAll, sinAll) = (null, null);
                        }
                        if (r.Output is not { } po) continue; // no row of this sequence goes on: its h is what it was
                        o = po;
                    }
                    if (l == layers.Count - 1 && step.OutputRows is { } keep && keep < h[u].size(1))
                    {
                        // The rows nobody reads leave here: their keys and values are in the cache already.
                        long from = h[u].size(1) - keep;
                        (h[u], o) = (h[u].narrow(1, from, keep), o.narrow(2, from, keep));
                        if (keep == 0) continue;
                    }
                    outs.Add(o);
                    going.Add(u);
                }
                if (going.Count == 0) { hAll = null; continue; }
                var updated = layer.ResidualMlp(Cat(going.Select(u => h[u]).ToList(), 1).Plus(layer.self_attn.Output(Cat(outs, 2))));
                if (l == layers.Count - 1) LastLayerRows += updated.size(1);
                hAll = going.Count == n ? updated : null;
                offset = 0;
                foreach (var u in going)
                {
                    long t = h[u].size(1);
                    h[u] = going.Count == 1 ? updated : updated.narrow(1, offset, t);
                    offset += t;
                }
            }
            finally
            {
                carried = Carry(layerScope, carried, h.Concat(cos).Concat(sin).Append(hAll).Append(cosAll).Append(sinAll));
            }
        }
        var final = norm.forward(hAll ?? Cat(h, 1));
        var result = new Tensor[seqs.Count];
        long at = 0;
        for (int j = 0; j < m; j++) result[rowIdx[j]] = (seqs.Count == 1 ? final : final.narrow(1, at++, 1)).MoveToOuterDisposeScope();
        for (int u = first; u < n; u++)
        {
            result[blockIdx[u - first]] = (n == 1 ? final : final.narrow(1, at, h[u].size(1))).MoveToOuterDisposeScope();
            at += h[u].size(1);
        }
        return result;
    }

    /// <summary>
    /// Ends a layer's scope: of the tensors the next layer reads (<paramref name="next"/>), those the
    /// layer made move out to the forward's scope; those an earlier layer carried that nothing reads
    /// any more are freed now, not when the forward ends. The forward's own inputs are never touched.
    /// </summary>
    static HashSet<Tensor> Carry(DisposeScope layerScope, HashSet<Tensor> carried, IEnumerable<Tensor?> next)
    {
        var now = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var t in next)
            if (t is not null && (carried.Contains(t) || layerScope.Contains(t)))
            {
                now.Add(t);
                layerScope.MoveToOuter(t);
            }
        foreach (var t in carried) if (!now.Contains(t)) t.Dispose();
        layerScope.Dispose();
        return now;
    }

    /// <summary>Layers <paramref name="from"/> on for one sequence's few rows on the kernels (<see cref="FusedDecodeStep.RunBlock"/>), counted.</summary>
    Tensor RunBlockFused(FusedDecodeStep fused, int from, Tensor h, DecoderStep step, ILayerPlan? plan)
    {
        var (c, s) = Rope.Tables(step.Positions, ScalarType.Float32, h.device);
        var hidden = fused.RunBlock(from, h, c, s, step, plan);
        FusedForwards++;
        LastLayerRows += hidden.size(1);
        return hidden.MoveToOuterDisposeScope();
    }

    /// <summary>Whether a block's rows and its cache are what the kernels take: float32 on the CPU, the cache's buffers at batch 1.</summary>
    static bool KernelBlock(Tensor h, KvCache cache) =>
        WeightMatrix.KernelsEnabled && h.device_type == DeviceType.CPU && h.dtype == ScalarType.Float32 && cache.Layers.All(l => l.Source.KernelLayout && l.Target.KernelLayout);

    /// <summary>The fused step for <paramref name="rows"/> decode rows, if it can run them now (built again when the weights changed).</summary>
    FusedDecodeStep? FusedFor(int rows)
    {
        if (!FusedDecodeEnabled || rows > Kernels.Gemv.MaxRows || torch.is_grad_enabled()) return null;
        if (_fused is null || !_fused.Current(this)) _fused = FusedDecodeStep.Build(this, _c);
        return _fused.Usable ? _fused : null;
    }

    /// <summary>
    /// The sequences that are decode steps (one row; no plan, no mask) over float32 CPU caches:
    /// their layers' keys and values go into the caches from memory and the attention of all of
    /// them is one kernel call over each row's own cache (no call into libtorch per sequence).
    /// </summary>
    static List<int> KernelRows(IReadOnlyList<(Tensor Embeds, DecoderStep Step)> seqs)
    {
        var rows = new List<int>();
        var e = seqs[0].Embeds;
        if (!WeightMatrix.KernelsEnabled || e.device_type != DeviceType.CPU || e.dtype != ScalarType.Float32) return rows;
        for (int i = 0; i < seqs.Count; i++)
        {
            var step = seqs[i].Step;
            if (step.Plan is not null || step.Mask is not null || step.Cache is null || step.Positions.Length != 1) continue;
            if (step.Cache.Layers.All(layer => layer.Source.KernelLayout && layer.Target.KernelLayout)) rows.Add(i);
        }
        return rows;
    }

    /// <summary>Layer <paramref name="l"/>'s attention for decode rows (see <see cref="KernelRows"/>; row i of q, k, v is sequence i's): per-head outputs [1,H,N,hd].</summary>
    static unsafe Tensor AttendRowsOnKernel(Tensor q, Tensor k, Tensor v, IReadOnlyList<(Tensor Embeds, DecoderStep Step)> seqs, int l, int kvHeads)
    {
        var (ks, vs) = (k.Strides(), v.Strides()); // [1, Hkv, N, hd] views: row i is ks[2]·i floats on
        if (ks[3] != 1 || vs[3] != 1) throw new InvalidOperationException("decode rows' keys and values must be contiguous within a head");
        float* kp = Kernels.TensorMemory.Ptr<float>(k), vp = Kernels.TensorMemory.Ptr<float>(v);
        var ranges = new Kernels.DecodeAttention.Range[seqs.Count][];
        for (int i = 0; i < seqs.Count; i++)
        {
            var step = seqs[i].Step;
            var kv = step.Cache!.Layers[l];
            kv[step.Group].AppendRow(k, kp + i * ks[2], vp + i * vs[2], ks[1], vs[1], step.Positions.T[0]);
            ranges[i] = kv.KernelRangesFor(step.Group);
        }
        return Kernels.DecodeAttention.RunRows(q, ranges, kvHeads);
    }

    /// <summary>torch.cat, without the copy for a single piece.</summary>
    static Tensor Cat(IReadOnlyList<Tensor> pieces, long dim) => pieces.Count == 1 ? pieces[0] : torch.cat(pieces.ToArray(), dim);

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking)
    {
        _rope?.Dispose(); _rope = null; // re-created on the new device
        _fused = null;
        return base._to(device, dtype, nonBlocking);
    }
}

public sealed class DecoderLayer : nn.Module
{
    public readonly RmsNorm input_layernorm, post_attention_layernorm;
    public readonly SelfAttention self_attn;
    public readonly GatedMlp mlp;

    public DecoderLayer(TextConfig c, TensorSpec spec) : base(nameof(DecoderLayer))
    {
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, spec);
        self_attn = new SelfAttention(c, spec);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, spec);
        mlp = new GatedMlp(c, spec);
        RegisterComponents();
    }

    /// <summary>Causal attention over the cache (the decode step's path: as few native calls as possible).</summary>
    public Tensor Forward(Tensor h, Tensor cos, Tensor sin, DecoderStep step, LayerKv? kv)
    {
        h = h.Plus(self_attn.Forward(input_layernorm.forward(h), cos, sin, step, kv)); // a new tensor: the caller's h is not touched
        return Residual(h);
    }

    /// <summary>
    /// The layer under a plan: the rows' keys and values go into the cache, the plan decides the
    /// attention and which rows stay; rows that leave skip o_proj and the MLP. Returns the rows that
    /// stay (null: all); <paramref name="h"/> then holds only those.
    /// </summary>
    public LayerAttention Forward(ref Tensor h, Tensor cos, Tensor sin, PositionIds positions, DecoderStep step, LayerKv? kv, ILayerPlan plan, int layer)
    {
        var (q, k, v) = self_attn.Project(input_layernorm.forward(h), cos, sin);
        var r = AttendPlanned(q, k, v, positions, step, kv, plan, layer);
        if (r.Stay is { } stay && stay.Length != h.size(1)) h = h.index_select(1, r.Index(h.device));
        if (r.Output is { } o) h = Residual(h.Plus(self_attn.Output(o))); // a new tensor: the caller's embeds are not touched
        return r;
    }

    /// <summary>The rows' keys and values into the cache, then the plan's attention: which rows stay and their per-head output (before o_proj).</summary>
    public LayerAttention AttendPlanned(Tensor q, Tensor k, Tensor v, PositionIds positions, DecoderStep step, LayerKv? kv, ILayerPlan plan, int layer)
    {
        Tensor K = k, V = v;
        long before = 0, skip = 0;
        if (kv is not null)
        {
            var group = kv[step.Group];
            before = group.Length;
            skip = plan.Skip(layer);
            if (skip < 0 || skip > before) throw new ArgumentException($"layer {layer}: skip {skip} outside the {before} cached entries");
            group.Append(k, v, positions.T);
            // On an empty cache the block's own keys are the cache: no view to make.
            if (before > 0) (K, V) = kv.KeysFor(step.Group);
        }
        return plan.Attend(new AttentionInput(layer, self_attn, q, k, v, K, V, before, skip));
    }

    /// <summary>h plus the MLP of its norm (in place where no gradient is kept).</summary>
    public Tensor ResidualMlp(Tensor h) => Residual(h);

    Tensor Residual(Tensor h)
    {
        var m = mlp.forward(post_attention_layernorm.forward(h));
        return torch.is_grad_enabled() ? h.Plus(m) : h.PlusInPlace(m);
    }
}

public sealed class SelfAttention : nn.Module
{
    public readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly int _heads, _kvHeads, _headDim;
    readonly Scalar _queryScale; // 1/√head_dim, rooted (see Rooted)
    // q_proj, k_proj and v_proj's weights and biases, stacked: one matmul at inference. Null once
    // the module has been moved (.to() gives each parameter its own storage). Not a Tensor field,
    // so RegisterComponents does not make it a buffer.
    LinearStack? _qkv;
    /// <summary>Source keys (entries × KV heads × head dim) up to which a target query joins the two groups instead of reading them apart.</summary>
    public const long JoinedSourceMaxElements = 1 << 16;
    public int Heads => _heads;
    public int KvHeads => _kvHeads;
    public int HeadDim => _headDim;
    /// <summary>q, k and v as one product (null once the module has been moved).</summary>
    internal LinearStack? QkvStack => _qkv;

    public SelfAttention(TextConfig c, TensorSpec spec) : base(nameof(SelfAttention))
    {
        _heads = c.NumAttentionHeads; _kvHeads = c.NumKeyValueHeads; _headDim = c.HeadDim;
        _queryScale = (1.0 / Math.Sqrt(_headDim)).ToScalar();
        _qkv = Linear.Stacked(c.HiddenSize, new long[] { _heads * _headDim, _kvHeads * _headDim, _kvHeads * _headDim }, c.QkvBias, spec);
        (q_proj, k_proj, v_proj) = (_qkv.Members[0], _qkv.Members[1], _qkv.Members[2]);
        o_proj = new Linear(_heads * _headDim, c.HiddenSize, false, spec);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, DecoderStep step, LayerKv? kv)
    {
        var (q, k, v) = Project(x, cos, sin);
        return Output(AttendCached(q, k, v, step, kv));
    }

    /// <summary>The new keys and values into the cache (if any), then the queries' attention through it: per-head outputs [B,H,T,hd], before o_proj.</summary>
    public Tensor AttendCached(Tensor q, Tensor k, Tensor v, DecoderStep step, LayerKv? kv)
    {
        if (kv != null)
        {
            kv[step.Group].Append(k, v, step.Positions.T);
            // Target queries read a large source in place: joining the groups would copy the whole
            // source cache on every generated token. A small one (a caption's own prompt, a short
            // window) is cheaper joined: the copy costs less than the ~12 extra native calls.
            if (step.Group == CacheGroup.Target && step.Mask is null && !kv.Source.IsEmpty
                && kv.Source.Length * _kvHeads * _headDim > JoinedSourceMaxElements)
                return AttendTwoGroups(q, kv.Source.Keys, kv.Source.Values, kv.Target.Keys, kv.Target.Values);
            (k, v) = kv.KeysFor(step.Group);
        }
        return Attend(q, k, v, step.Mask);
    }

    /// <summary>Queries [from, from+count) of a block that ends the keys, causal within the block.</summary>
    public Tensor AttendRows(Tensor q, int from, int count, Tensor k, Tensor v)
    {
        long t = q.size(2), s = k.size(2);
        return Attend(q.narrow(2, from, count), k, v, CausalMask(t, s, q.device).narrow(0, from, count));
    }

    /// <summary>
    /// Attention of target queries q [B,H,T,hd] (the last T target entries) over every source key
    /// and, causally, the target keys: one softmax over both, without concatenating the caches.
    /// Query heads are grouped by their key/value head, so GQA needs no repeated keys either.
    /// </summary>
    public Tensor AttendTwoGroups(Tensor q, Tensor ks, Tensor vs, Tensor kt, Tensor vt)
    {
        long b = q.size(0), t = q.size(2), s = ks.size(2), tt = kt.size(2);
        int rep = _heads / _kvHeads;
        var qg = q.reshape(b, _kvHeads, rep * t, _headDim).mul(_queryScale);
        var scores = torch.cat(new[] { qg.matmul(ks.transpose(-2, -1)), qg.matmul(kt.transpose(-2, -1)) }, -1);
        if (t > 1)
        {
            var visible = torch.cat(new[] { torch.ones(new long[] { t, s }, ScalarType.Bool, q.device), CausalMask(t, tt, q.device) }, -1);
            scores = scores.masked_fill(visible.logical_not().repeat(rep, 1), Rooted.NegativeInfinity);
        }
        var p = F.softmax(scores, -1, ScalarType.Float32).to_type(q.dtype);
        var o = p.narrow(-1, 0, s).matmul(vs).Plus(p.narrow(-1, s, tt).matmul(vt));
        return o.view(b, _heads, t, _headDim);
    }

    /// <summary>x [B,T,D] → q [B,H,T,hd] and k, v [B,Hkv,T,hd], with RoPE applied to q and k.</summary>
    public (Tensor Q, Tensor K, Tensor V) Project(Tensor x, Tensor cos, Tensor sin)
    {
        long b = x.size(0), t = x.size(1);
        // One matmul and one rotation for q and k together, where no parameter needs a gradient:
        // on a small model each native call costs more than its arithmetic (decode: ~6 fewer per layer).
        if (_qkv is not null && _qkv.Applies)
        {
            var qkv = _qkv.Forward(x).view(b, t, _heads + 2 * _kvHeads, _headDim).transpose(1, 2);
            var qk = Rope.Apply(qkv.narrow(1, 0, _heads + _kvHeads), cos, sin);
            return (qk.narrow(1, 0, _heads), qk.narrow(1, _heads, _kvHeads), qkv.narrow(1, _heads + _kvHeads, _kvHeads));
        }
        var q = Rope.Apply(q_proj.forward(x).view(b, t, _heads, _headDim).transpose(1, 2), cos, sin);
        var k = Rope.Apply(k_proj.forward(x).view(b, t, _kvHeads, _headDim).transpose(1, 2), cos, sin);
        var v = v_proj.forward(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        return (q, k, v);
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking) { Unstack(); return base._to(device, dtype, nonBlocking); }
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool nonBlocking) { Unstack(); return base._to(deviceType, deviceIndex, nonBlocking); }
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking) { Unstack(); return base._to(dtype, nonBlocking); }
    void Unstack() { _qkv?.Dispose(); _qkv = null; }

    /// <summary>Per-head attention output o [B,H,T,hd] → the layer's output [B,T,D] through o_proj.</summary>
    public Tensor Output(Tensor o) => o_proj.forward(o.transpose(1, 2).reshape(o.size(0), o.size(2), _heads * _headDim));

    /// <summary>Keys/values [B,Hkv,S,hd] repeated to [B,H,S,hd] for grouped-query attention.</summary>
    public Tensor RepeatKv(Tensor kv)
    {
        if (_kvHeads == _heads) return kv;
        int rep = _heads / _kvHeads;
        long s = kv.size(2);
        return kv.unsqueeze(2).expand(kv.size(0), _kvHeads, rep, s, _headDim).reshape(kv.size(0), _heads, s, _headDim);
    }

    /// <summary>
    /// SDPA over queries [B,H,T,D] and keys [B,Hkv,S,D]. The T queries are the last T of the S
    /// keys' sequence: they see every earlier key and are causal among themselves.
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        long t = q.size(2), s = k.size(2);
        // A decode step on the CPU: the cache streamed once, GQA heads read in place.
        if (t == 1 && mask is null && Kernels.DecodeAttention.Applies(q, (k, v))) return Kernels.DecodeAttention.Run(q, (k, v));
        k = RepeatKv(k); // GQA: each key/value head serves heads/kvHeads query heads
        v = RepeatKv(v);
        if (mask is not null) return F.scaled_dot_product_attention(q, k, v, mask);
        if (t == 1) return F.scaled_dot_product_attention(q, k, v);
        if (s == t) return F.scaled_dot_product_attention(q, k, v, is_casual: true);
        return F.scaled_dot_product_attention(q, k, v, CausalMask(t, s, q.device));
    }

    /// <summary>[T, S] boolean: query i (at key index S−T+i) may attend keys 0..S−T+i.</summary>
    public static Tensor CausalMask(long t, long s, Device device)
    {
        var rows = Rooted.Arange(t, device).unsqueeze(1).PlusNumber(s - t);
        var cols = Rooted.Arange(s, device).unsqueeze(0);
        return cols <= rows;
    }
}

public sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear gate_proj, up_proj, down_proj;
    readonly Func<Tensor, Tensor> _act;
    /// <summary>hidden_act as the config names it.</summary>
    public string Activation { get; }
    // gate_proj and up_proj stacked on one storage, as q/k/v are: one product at inference. Null
    // once the module has been moved.
    LinearStack? _gateUp;

    public GatedMlp(TextConfig c, TensorSpec spec) : base(nameof(GatedMlp))
    {
        _gateUp = Linear.Stacked(c.HiddenSize, new long[] { c.IntermediateSize, c.IntermediateSize }, false, spec);
        (gate_proj, up_proj) = (_gateUp.Members[0], _gateUp.Members[1]);
        down_proj = new Linear(c.IntermediateSize, c.HiddenSize, false, spec);
        _act = Activations.Get(c.HiddenAct);
        Activation = c.HiddenAct;
        RegisterComponents();
    }

    /// <summary>gate and up as one product (null once the module has been moved).</summary>
    internal LinearStack? GateUpStack => _gateUp;

    /// <summary>x [.., D] → act(gate)·up [.., intermediate], the input of down_proj.</summary>
    public Tensor Hidden(Tensor x)
    {
        bool grad = torch.is_grad_enabled();
        if (_gateUp is { Applies: true })
        {
            var gu = _gateUp.Forward(x);
            long n = gu.size(-1) / 2;
            return grad ? _act(gu.narrow(-1, 0, n)) * gu.narrow(-1, n, n) : _act(gu.narrow(-1, 0, n)).mul_(gu.narrow(-1, n, n));
        }
        // In place where no gradient is kept: two fewer tensors per layer.
        return grad ? _act(gate_proj.forward(x)) * up_proj.forward(x) : _act(gate_proj.forward(x)).mul_(up_proj.forward(x));
    }

    public override Tensor forward(Tensor x) => down_proj.forward(Hidden(x));

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking) { Unstack(); return base._to(device, dtype, nonBlocking); }
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool nonBlocking) { Unstack(); return base._to(deviceType, deviceIndex, nonBlocking); }
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking) { Unstack(); return base._to(dtype, nonBlocking); }
    void Unstack() { _gateUp?.Dispose(); _gateUp = null; }
}
