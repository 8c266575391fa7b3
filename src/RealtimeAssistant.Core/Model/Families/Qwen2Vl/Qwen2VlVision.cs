using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model.Families.Qwen2Vl;

/// <summary>
/// The Qwen2-VL / Qwen2.5-VL vision transformer with HF's module names (visual.patch_embed.proj,
/// visual.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp…}, visual.merger.{ln_q, mlp.0, mlp.2}).
/// Patch rows in, merged tokens out: the 3D patch embedding, blocks with 2D rotary embeddings
/// (each patch rotated by its row and column), attention within each image's temporal slice
/// (Qwen2.5-VL: within windows, except in fullatt_block_indexes), and the 2×2 patch merger.
/// </summary>
public sealed class Qwen2VisionTransformer : nn.Module
{
    public readonly PatchEmbed patch_embed;
    public readonly ModuleList<VisionBlock> blocks = new();
    public readonly PatchMerger merger;
    readonly Qwen2VlVisionConfig _c;
    Tensor? _invFreq;

    public Qwen2VisionTransformer(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(Qwen2VisionTransformer))
    {
        _c = c;
        patch_embed = new PatchEmbed(c, spec);
        for (int i = 0; i < c.Depth; i++) blocks.Add(new VisionBlock(c, spec));
        merger = new PatchMerger(c, spec);
        RegisterComponents();
    }

    /// <summary>
    /// HF's rot_pos_emb: each patch's (row, column) in 2×2-merge-block order, repeated per temporal
    /// slice. The angles use head_dim/4 frequencies for the row and as many for the column.
    /// </summary>
    static (long[] Rows, long[] Cols) PatchCoordinates(IReadOnlyList<GridThw> grids, int merge)
    {
        var rows = new List<long>();
        var cols = new List<long>();
        foreach (var g in grids)
            for (int t = 0; t < g.T; t++)
                for (int bh = 0; bh < g.H / merge; bh++)
                    for (int bw = 0; bw < g.W / merge; bw++)
                        for (int i = 0; i < merge; i++)
                            for (int j = 0; j < merge; j++) { rows.Add(bh * merge + i); cols.Add(bw * merge + j); }
        return (rows.ToArray(), cols.ToArray());
    }

    /// <summary>
    /// Qwen2.5-VL's get_window_index: merged tokens regrouped window by window (windows of
    /// window_size / patch / merge merged tokens a side; the grid is padded to whole windows, even
    /// when already a multiple, and the padding dropped, so empty windows vanish). Returns the new
    /// order of the merged tokens and each window's length in merged tokens.
    /// </summary>
    public static (long[] Order, int[] WindowLengths) WindowIndex(IReadOnlyList<GridThw> grids, int merge, int windowMerged)
    {
        var order = new List<long>();
        var lengths = new List<int>();
        long offset = 0;
        foreach (var g in grids)
        {
            int lh = g.H / merge, lw = g.W / merge;
            int padH = windowMerged - lh % windowMerged, padW = windowMerged - lw % windowMerged;
            int nh = (lh + padH) / windowMerged, nw = (lw + padW) / windowMerged;
            for (int t = 0; t < g.T; t++)
                for (int wy = 0; wy < nh; wy++)
                    for (int wx = 0; wx < nw; wx++)
                    {
                        int n = 0;
                        for (int y = wy * windowMerged; y < (wy + 1) * windowMerged && y < lh; y++)
                            for (int x = wx * windowMerged; x < (wx + 1) * windowMerged && x < lw; x++) { order.Add(offset + (t * lh + y) * lw + x); n++; }
                        if (n > 0) lengths.Add(n);
                    }
            offset += (long)g.T * lh * lw;
        }
        return (order.ToArray(), lengths.ToArray());
    }

    /// <summary>patch rows [S, C·T·P·P] of the images in <paramref name="grids"/>, in order → merged tokens [S/4, out].</summary>
    public Tensor Forward(Tensor rows, IReadOnlyList<GridThw> grids)
    {
        using var scope = torch.NewDisposeScope();
        int merge = _c.SpatialMergeSize, unit = _c.MergeUnit;
        long s = rows.size(0);
        if (s != grids.Sum(g => (long)g.Patches)) throw new ArgumentException($"{s} patch rows for grids holding {grids.Sum(g => g.Patches)}");
        var device = rows.device;
        var h = patch_embed.forward(rows);
        // Rotary angles per patch: [S, head_dim/2] = (row angles, column angles), in float32 as HF.
        _invFreq ??= InverseFrequencies(device);
        var (pr, pc) = PatchCoordinates(grids, merge);
        var angles = torch.cat(new[]
        {
            torch.tensor(pr, device: device).to_type(ScalarType.Float32).unsqueeze(1) * _invFreq,
            torch.tensor(pc, device: device).to_type(ScalarType.Float32).unsqueeze(1) * _invFreq,
        }, 1);
        // Full attention: each temporal slice of each image attends itself (HF's cu_seqlens).
        var slices = grids.SelectMany(g => Enumerable.Repeat(g.H * g.W, g.T)).ToArray();
        int[] fullSegments = slices, windowSegments = slices;
        Tensor? order = null;
        if (_c.IsQwen25)
        {
            var (o, lengths) = WindowIndex(grids, merge, _c.WindowSize / _c.PatchSize / merge);
            order = torch.tensor(o, device: device);
            // Window order keeps each slice contiguous, so the slices still bound full attention.
            windowSegments = lengths.Select(n => n * unit).ToArray();
            h = h.view(s / unit, unit, -1).index_select(0, order).view(s, -1);
            angles = angles.view(s / unit, unit, -1).index_select(0, order).view(s, -1);
        }
        var emb = torch.cat(new[] { angles, angles }, -1);
        // rotate_half's sign goes into the sin table once a frame, not once a block (Rope.Apply's form).
        var (cos, sin) = (emb.cos(), VisionSelfAttention.RotateSin(emb.sin()));
        using var full = AttentionSegments.Of(fullSegments, device);
        using var windows = ReferenceEquals(windowSegments, fullSegments) ? null : AttentionSegments.Of(windowSegments, device);
        for (int i = 0; i < blocks.Count; i++)
        {
            var segments = windows is null || _c.FullAttentionBlocks.Contains(i) ? full : windows;
            var block = blocks[i];
            var input = h;
            h = LayerScope.Run(() => block.Forward(input, cos, sin, segments));
        }
        var merged = merger.forward(h);
        if (order is not null) merged = merged.index_select(0, order.argsort()); // back to raster order
        return merged.MoveToOuterDisposeScope();
    }

    Tensor InverseFrequencies(Device device)
    {
        // HF's VisionRotaryEmbedding(head_dim / 2): 1 / 10000^(2i / (head_dim/2)), computed in float32.
        int dim = _c.HeadDim / 2;
        // It runs inside the first frame's Forward, so with Scalars that stay alive (Model/Rooted);
        // reciprocal() is what 1f / t runs, less a ×1.
        var exps = Rooted.Arange(0, dim, 2, ScalarType.Float32).DividedByNumber(dim);
        return torch.pow(torch.tensor(10000f), exps).reciprocal().to(device).DetachFromDisposeScope();
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking)
    {
        _invFreq?.Dispose(); _invFreq = null;
        return base._to(device, dtype, nonBlocking);
    }
}

/// <summary>A Conv3d with stride = kernel over one patch row is a matrix product with the flattened kernel.</summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    public readonly Conv3dWeight proj;
    public PatchEmbed(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(PatchEmbed))
    {
        proj = new Conv3dWeight(spec.Param(c.EmbedDim, c.InChannels, c.TemporalPatchSize, c.PatchSize, c.PatchSize));
        RegisterComponents();
    }
    public override Tensor forward(Tensor rows) => F.linear(rows.to_type(proj.weight.dtype), proj.weight.view(proj.weight.size(0), -1));
}

/// <summary>Holds the patch embedding's kernel under HF's name (proj.weight; the conv has no bias).</summary>
public sealed class Conv3dWeight : nn.Module
{
    public readonly Parameter weight;
    public Conv3dWeight(Parameter weight) : base(nameof(Conv3dWeight)) { this.weight = weight; RegisterComponents(); }
}

public sealed class VisionBlock : nn.Module
{
    public readonly nn.Module<Tensor, Tensor> norm1, norm2;
    public readonly VisionSelfAttention attn;
    public readonly nn.Module<Tensor, Tensor> mlp;

    public VisionBlock(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(VisionBlock))
    {
        // Qwen2-VL: LayerNorm, eps 1e-6 hard-coded; Qwen2.5-VL: RMSNorm, eps 1e-6.
        norm1 = c.IsQwen25 ? new RmsNorm(c.EmbedDim, 1e-6, spec) : new LayerNorm(c.EmbedDim, 1e-6, spec);
        norm2 = c.IsQwen25 ? new RmsNorm(c.EmbedDim, 1e-6, spec) : new LayerNorm(c.EmbedDim, 1e-6, spec);
        attn = new VisionSelfAttention(c, spec);
        mlp = c.IsQwen25 ? new GatedVisionMlp(c, spec) : new VisionMlp(c, spec);
        RegisterComponents();
    }

    public Tensor Forward(Tensor h, Tensor cos, Tensor sin, AttentionSegments segments)
    {
        h = h.Plus(attn.Forward(norm1.forward(h), cos, sin, segments));
        return h.Plus(mlp.forward(norm2.forward(h)));
    }
}

public sealed class VisionSelfAttention : nn.Module
{
    public readonly Linear qkv, proj;
    readonly int _heads, _headDim;

    public VisionSelfAttention(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(VisionSelfAttention))
    {
        qkv = new Linear(c.EmbedDim, 3 * c.EmbedDim, true, spec);
        proj = new Linear(c.EmbedDim, c.EmbedDim, true, spec);
        (_heads, _headDim) = (c.NumHeads, c.HeadDim);
        RegisterComponents();
    }

    /// <summary>x [S, D]; cos and the signed sin (<see cref="RotateSin"/>) [S, head_dim]; each row attends the rows of its own segment.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, AttentionSegments segments)
    {
        long s = x.size(0);
        var parts = qkv.forward(x).view(s, 3, _heads, _headDim).permute(1, 2, 0, 3); // [3, H, S, hd]
        // HF rotates q and k in float32 and casts back.
        Tensor Rotate(Tensor t) => Rope.Apply(t.to_type(ScalarType.Float32), cos, sin).to_type(x.dtype);
        var o = segments.Attend(Rotate(parts[0]), Rotate(parts[1]), parts[2]); // [H, S, hd]
        return proj.forward(o.transpose(0, 1).reshape(s, -1));
    }

    /// <summary>Rope.Apply takes rotate_half's sign in the sin table (−sin on the first half).</summary>
    public static Tensor RotateSin(Tensor sin)
    {
        long half = sin.size(-1) / 2;
        return torch.cat(new[] { -sin.narrow(-1, 0, half), sin.narrow(-1, half, half) }, -1);
    }
}

/// <summary>Qwen2-VL's block MLP: fc1 → act (quick_gelu by default) → fc2, with biases.</summary>
public sealed class VisionMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear fc1, fc2;
    readonly Func<Tensor, Tensor> _act;
    public VisionMlp(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(VisionMlp))
    {
        fc1 = new Linear(c.EmbedDim, c.MlpDim, true, spec);
        fc2 = new Linear(c.MlpDim, c.EmbedDim, true, spec);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => fc2.forward(_act(fc1.forward(x)));
}

/// <summary>Qwen2.5-VL's block MLP: down(act(gate(x)) · up(x)), every projection with a bias.</summary>
public sealed class GatedVisionMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear gate_proj, up_proj, down_proj;
    readonly Func<Tensor, Tensor> _act;
    public GatedVisionMlp(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(GatedVisionMlp))
    {
        gate_proj = new Linear(c.EmbedDim, c.MlpDim, true, spec);
        up_proj = new Linear(c.EmbedDim, c.MlpDim, true, spec);
        down_proj = new Linear(c.MlpDim, c.EmbedDim, true, spec);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => down_proj.forward(_act(gate_proj.forward(x)) * up_proj.forward(x));
}

/// <summary>
/// The 2×2 patch merger: ln_q per patch, the four patches of a merged token concatenated (they
/// are consecutive rows), then Linear → GELU (the exact, erf form) → Linear to the decoder's width.
/// </summary>
public sealed class PatchMerger : nn.Module<Tensor, Tensor>
{
    public readonly nn.Module<Tensor, Tensor> ln_q;
    public readonly Sequential mlp;
    readonly long _width;
    public PatchMerger(Qwen2VlVisionConfig c, TensorSpec spec) : base(nameof(PatchMerger))
    {
        _width = (long)c.EmbedDim * c.MergeUnit;
        ln_q = c.IsQwen25 ? new RmsNorm(c.EmbedDim, 1e-6, spec) : new LayerNorm(c.EmbedDim, 1e-6, spec);
        mlp = nn.Sequential(new Linear(_width, _width, true, spec), nn.GELU(), new Linear(_width, c.OutDim, true, spec));
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => mlp.forward(ln_q.forward(x).view(-1, _width));
}

/// <summary>
/// Attention within consecutive segments of the rows (HF's cu_seqlens: each image's temporal
/// slice, or Qwen2.5-VL's windows). The segments of one length go through one attention call as
/// a batch, so the work is Σ nᵢ², where a block-diagonal mask over the whole sequence computes
/// (Σ nᵢ)² scores and throws most away: for Qwen2.5-VL's windows of 8×8 patches on a 480×480
/// frame, 20 times the scores its windowed blocks need.
/// </summary>
public sealed class AttentionSegments : IDisposable
{
    readonly Tensor? _order, _restore; // rows grouped by segment length and back; null where they already are
    readonly (int Count, int Length)[] _groups;

    AttentionSegments(Tensor? order, Tensor? restore, (int, int)[] groups) => (_order, _restore, _groups) = (order, restore, groups);

    /// <param name="lengths">The segments' lengths, in row order.</param>
    public static AttentionSegments Of(IReadOnlyList<int> lengths, Device device)
    {
        var starts = new long[lengths.Count];
        for (int i = 1; i < lengths.Count; i++) starts[i] = starts[i - 1] + lengths[i - 1];
        var byLength = Enumerable.Range(0, lengths.Count).GroupBy(i => lengths[i]).ToList(); // in order of first appearance
        var order = byLength.SelectMany(g => g.SelectMany(i => Enumerable.Range(0, lengths[i]).Select(r => starts[i] + r))).ToArray();
        var groups = byLength.Select(g => (g.Count(), g.Key)).ToArray();
        if (order.Select((row, i) => row == i).All(x => x)) return new AttentionSegments(null, null, groups);
        var orderTensor = torch.tensor(order, device: device).DetachFromDisposeScope();
        return new AttentionSegments(orderTensor, orderTensor.argsort().DetachFromDisposeScope(), groups);
    }

    /// <summary>q, k, v [H, S, hd] → [H, S, hd].</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v)
    {
        if (_order is not null) (q, k, v) = (q.index_select(1, _order), k.index_select(1, _order), v.index_select(1, _order));
        long heads = q.size(0), dim = q.size(2), at = 0;
        var outputs = new List<Tensor>(_groups.Length);
        foreach (var (count, length) in _groups)
        {
            long rows = (long)count * length;
            Tensor Batch(Tensor t) => t.narrow(1, at, rows).reshape(heads, count, length, dim).transpose(0, 1); // [count, H, length, hd]
            outputs.Add(F.scaled_dot_product_attention(Batch(q), Batch(k), Batch(v)).transpose(0, 1).reshape(heads, rows, dim));
            at += rows;
        }
        var o = outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 1);
        return _restore is null ? o : o.index_select(1, _restore);
    }

    public void Dispose() { _order?.Dispose(); _restore?.Dispose(); }
}
