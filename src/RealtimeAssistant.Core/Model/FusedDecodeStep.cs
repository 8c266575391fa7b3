using System.Runtime.Intrinsics;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Decode steps (one row per sequence, each over its own float32 CPU cache) through every layer
/// on this project's kernels, with no call into libtorch between the embeddings and the final
/// norm: the norms, RoPE, residuals and the MLP's activation run here, the products on
/// <see cref="Gemv"/>, the attention on <see cref="DecodeAttention"/>. The layer path calls
/// libtorch about 15 times a layer; on a narrow model each call costs more than its arithmetic,
/// so a step of the demo model (width 128) spent nearly all its time in them. The products and
/// the attention are the layer path's own kernels; the norms and the activation round as
/// libtorch does each operation, in another summation order.
/// Built for one model's weights as they are; <see cref="Current"/> says when they changed.
/// </summary>
sealed unsafe class FusedDecodeStep
{
    sealed class Layer(float* inNorm, float* postNorm, KernelProduct qkv, float* qkvBias, KernelProduct o, KernelProduct gateUp, KernelProduct down)
    {
        public readonly float* InNorm = inNorm, PostNorm = postNorm, QkvBias = qkvBias;
        public readonly KernelProduct Qkv = qkv, O = o, GateUp = gateUp, Down = down;
    }

    readonly Layer[] _layers;
    readonly float* _finalNorm;
    readonly float _eps;
    readonly int _d, _heads, _kvHeads, _headDim, _inter;
    readonly object?[] _sources; // what the pointers were read from: a change means the weights moved

    FusedDecodeStep(Layer[] layers, float* finalNorm, float eps, int d, int heads, int kvHeads, int headDim, int inter, object?[] sources)
    {
        _finalNorm = finalNorm;
        (_layers, _eps, _d, _heads, _kvHeads, _headDim, _inter, _sources) = (layers, eps, d, heads, kvHeads, headDim, inter, sources);
    }

    /// <summary>What a step reads its weights from, in order: the same objects as when built means the same memory.</summary>
    static IEnumerable<object?> Sources(DecoderModel model)
    {
        foreach (var l in model.layers)
        {
            var (qkv, gu) = (l.self_attn.QkvStack, l.mlp.GateUpStack);
            yield return qkv; yield return qkv?.Compacted; yield return qkv?.Weight;
            yield return gu; yield return gu?.Compacted; yield return gu?.Weight;
            yield return l.self_attn.o_proj.Compacted; yield return l.self_attn.o_proj.weight;
            yield return l.mlp.down_proj.Compacted; yield return l.mlp.down_proj.weight;
            yield return l.input_layernorm.weight; yield return l.post_attention_layernorm.weight;
        }
        yield return model.norm.weight;
    }

    /// <summary>Whether the model's weights are still the ones this step was built on (managed reads only).</summary>
    public bool Current(DecoderModel model)
    {
        int i = 0;
        foreach (var s in Sources(model))
            if (i >= _sources.Length || !ReferenceEquals(s, _sources[i++])) return false;
        return i == _sources.Length;
    }

    /// <summary>False where the step cannot run this model's layers (<see cref="Run"/> is not to be called); rebuilt when they change.</summary>
    public bool Usable => _layers.Length > 0;

    /// <summary>The fused step for <paramref name="model"/>'s layers as they are; not <see cref="Usable"/> where it cannot run them (another device or dtype, another activation, weights that need gradients).</summary>
    public static FusedDecodeStep Build(DecoderModel model, TextConfig c)
    {
        var sources = Sources(model).ToArray();
        return TryBuild(model, c, sources) ?? new FusedDecodeStep([], null, 0, 0, 0, 0, 0, 0, sources);
    }

    static FusedDecodeStep? TryBuild(DecoderModel model, TextConfig c, object?[] sources)
    {
        if (c.HiddenAct is not ("silu" or "swish") || model.layers.Count == 0) return null;
        var layers = new Layer[model.layers.Count];
        double eps = model.norm.Eps;
        for (int i = 0; i < layers.Length; i++)
        {
            var l = model.layers[i];
            var (qkvStack, guStack) = (l.self_attn.QkvStack, l.mlp.GateUpStack);
            if (qkvStack is null || guStack is null) return null;
            if (Product(qkvStack.Compacted, qkvStack.Weight) is not { } qkv || Product(l.self_attn.o_proj.Compacted, l.self_attn.o_proj.weight) is not { } o
                || Product(guStack.Compacted, guStack.Weight) is not { } gu || Product(l.mlp.down_proj.Compacted, l.mlp.down_proj.weight) is not { } down)
                return null;
            if (l.self_attn.o_proj.bias is not null || l.mlp.down_proj.bias is not null || guStack.Bias is not null) return null;
            float* inNorm = Floats(l.input_layernorm.weight, c.HiddenSize), postNorm = Floats(l.post_attention_layernorm.weight, c.HiddenSize);
            if (inNorm == null || postNorm == null) return null;
            float* qkvBias = null;
            if (qkvStack.Bias is { } b && (qkvBias = Floats(b, qkv.Out)) == null) return null;
            if (l.input_layernorm.Eps != eps || l.post_attention_layernorm.Eps != eps) return null;
            int qkvOut = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim;
            if (qkv.In != c.HiddenSize || qkv.Out != qkvOut || o.In != c.NumAttentionHeads * c.HeadDim || o.Out != c.HiddenSize
                || gu.In != c.HiddenSize || gu.Out != 2 * c.IntermediateSize || down.In != c.IntermediateSize || down.Out != c.HiddenSize)
                return null;
            layers[i] = new Layer(inNorm, postNorm, qkv, qkvBias, o, gu, down);
        }
        float* final = Floats(model.norm.weight, c.HiddenSize);
        if (final == null) return null;
        return new FusedDecodeStep(layers, final, (float)eps, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, sources);
    }

    static KernelProduct? Product(WeightMatrix? compact, Tensor? dense)
    {
        if (compact is not null) return compact.CpuProduct();
        if (dense is null || dense.requires_grad) return null;
        return KernelProduct.Dense(dense);
    }

    static float* Floats(Tensor t, long count) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous() && t.numel() == count && !t.requires_grad ? TensorMemory.Ptr<float>(t) : null;

    [ThreadStatic] static float[]? _scratch;

    /// <summary>Layer <paramref name="layer"/>'s keys and values of every row (row r's q, k, v heads at qkv + r·stride) into their caches, and the key ranges each row attends.</summary>
    unsafe delegate void Place(int layer, float* qkv, int stride, DecodeAttention.Range[][] ranges);

    /// <summary>
    /// The rows' decode steps: <paramref name="embeds"/> [1, N, D] float32 (row i is <paramref name="steps"/>[i]'s
    /// one token), <paramref name="cos"/> and <paramref name="sin"/> the rows' RoPE tables [N, hd]
    /// (<see cref="Rope.Tables(PositionIds, ScalarType, Device)"/>). Each row's keys and values go
    /// into its own cache group, as the layer path appends them. Returns the final-normed hidden states [1, N, D].
    /// </summary>
    public Tensor Run(Tensor embeds, IReadOnlyList<DecoderStep> steps, Tensor cos, Tensor sin, StageClock? clock = null) =>
        Run(0, embeds, cos, sin, clock, (layer, qkv, stride, ranges) =>
        {
            int hd = _headDim;
            for (int r = 0; r < steps.Count; r++)
            {
                float* row = qkv + r * stride;
                var step = steps[r];
                var kv = step.Cache!.Layers[layer];
                kv[step.Group].AppendRow(_kvHeads, hd, row + _heads * hd, row + (_heads + _kvHeads) * hd, hd, hd, step.Positions.T[0]);
                ranges[r] = kv.KernelRangesFor(step.Group);
            }
        });

    /// <summary>
    /// Layers <paramref name="from"/> on for a block of a few rows of one sequence
    /// (<paramref name="h"/> [1, N, D]) in its group, causal among themselves. A source block
    /// attends the source cache after the plan's <see cref="ILayerPlan.Skip"/> (a pruned read's
    /// text rows once its visual tokens have left, <see cref="ILayerPlan.PlainFrom"/>; each layer
    /// is reported to the plan, <see cref="ILayerPlan.Passed"/>); a target block (drafted caption
    /// tokens being verified) attends the whole source and the target before it. Returns the
    /// final-normed hidden states [1, N', D] of the last N' rows (<see cref="DecoderStep.OutputRows"/>;
    /// the last layer runs o_proj and the MLP on those only).
    /// </summary>
    public Tensor RunBlock(int from, Tensor h, Tensor cos, Tensor sin, DecoderStep step, ILayerPlan? plan)
    {
        if (plan is not null && step.Group != CacheGroup.Source) throw new ArgumentException("a plan applies to source blocks only");
        int n = (int)h.size(1);
        var positions = step.Positions;
        return Run(from, h, cos, sin, null, (layer, qkv, stride, ranges) =>
        {
            int hd = _headDim;
            var kv = step.Cache!.Layers[layer];
            var group = kv[step.Group];
            long before = group.Length, skip = plan?.Skip(layer) ?? 0;
            plan?.Passed(layer, before, n);
            for (int r = 0; r < n; r++)
            {
                float* row = qkv + r * stride;
                group.AppendRow(_kvHeads, hd, row + _heads * hd, row + (_heads + _kvHeads) * hd, hd, hd, positions.T[r]);
            }
            var own = group.KernelRange!.Value;
            var source = step.Group == CacheGroup.Target ? kv.Source.KernelRange : null;
            nint skipped = (nint)(skip * hd * sizeof(float));
            for (int r = 0; r < n; r++)
            {
                var mine = own with { K = own.K + skipped, V = own.V + skipped, S = before + r + 1 - skip };
                ranges[r] = source is { } s ? [s, mine] : [mine];
            }
        }, step.OutputRows);
    }

    /// <param name="clock">Null, or a clock each stage of every layer laps (a profile; the step's arithmetic is unchanged).</param>
    /// <param name="keep">The last rows whose final hidden states are returned (null: all).</param>
    Tensor Run(int from, Tensor embeds, Tensor cos, Tensor sin, StageClock? clock, Place place, int? keep = null)
    {
        long t = clock is null ? 0 : StageClock.Now;
        int n = (int)embeds.size(1), d = _d, hd = _headDim, qkvW = (_heads + 2 * _kvHeads) * hd, attW = _heads * hd;
        int kept = Math.Min(keep ?? n, n);
        int need = n * (d + d + qkvW + attW + 3 * _inter + d);
        if (_scratch is null || _scratch.Length < need) _scratch = new float[Math.Max(need, 1024)];
        var output = torch.empty(new long[] { 1, kept, d }, ScalarType.Float32, torch.CPU);
        var ranges = new DecodeAttention.Range[n][];
        var (ec, cc, sc) = (embeds.is_contiguous() ? embeds : embeds.contiguous(), cos.is_contiguous() ? cos : cos.contiguous(), sin.is_contiguous() ? sin : sin.contiguous());
        try
        {
            float* cp = TensorMemory.Ptr<float>(cc), sp = TensorMemory.Ptr<float>(sc);
            fixed (float* buf = _scratch)
            {
                float* x = buf, xn = x + n * d, qkv = xn + n * d, att = qkv + n * qkvW, gu = att + n * attW, act = gu + n * 2 * _inter, tmp = act + n * _inter;
                new ReadOnlySpan<float>(TensorMemory.Ptr<float>(ec), n * d).CopyTo(new Span<float>(x, n * d));
                clock?.Lap("scratch, output and embeddings in", ref t);
                for (int li = from; li < _layers.Length; li++)
                {
                    var l = _layers[li];
                    RmsNorm(x, l.InNorm, xn, n);
                    clock?.Lap("RMSNorm", ref t);
                    l.Qkv.Run(xn, n, qkv, l.QkvBias);
                    clock?.Lap("q/k/v product", ref t);
                    for (int r = 0; r < n; r++)
                    {
                        float* row = qkv + r * qkvW;
                        for (int h = 0; h < _heads + _kvHeads; h++) RotateHalf(row + h * hd, cp + r * hd, sp + r * hd, hd);
                    }
                    clock?.Lap("RoPE", ref t);
                    place(li, qkv, qkvW, ranges);
                    clock?.Lap("KV cache append", ref t);
                    DecodeAttention.RunRows(qkv, qkvW, hd, att, attW, hd, ranges, _heads, hd, _kvHeads);
                    clock?.Lap("attention", ref t);
                    // The last layer's o_proj and MLP run on the rows the caller reads only (their keys and values are in the cache already).
                    int m = li == _layers.Length - 1 ? kept : n, skip = n - m;
                    if (m == 0) break;
                    float* xm = x + skip * d;
                    l.O.Run(att + skip * attW, m, tmp, null);
                    clock?.Lap("o_proj product", ref t);
                    Add(xm, tmp, m * d);
                    clock?.Lap("residual add", ref t);
                    RmsNorm(xm, l.PostNorm, xn, m);
                    clock?.Lap("RMSNorm", ref t);
                    l.GateUp.Run(xn, m, gu, null);
                    clock?.Lap("gate/up product", ref t);
                    for (int r = 0; r < m; r++) SiluTimes(gu + r * 2 * _inter, gu + r * 2 * _inter + _inter, act + r * _inter, _inter);
                    clock?.Lap("SiLU·up", ref t);
                    l.Down.Run(act, m, tmp, null);
                    clock?.Lap("down product", ref t);
                    Add(xm, tmp, m * d);
                    clock?.Lap("residual add", ref t);
                }
                if (kept > 0) RmsNorm(x + (n - kept) * d, _finalNorm, TensorMemory.Ptr<float>(output), kept);
                clock?.Lap("RMSNorm", ref t);
            }
            clock?.Pass();
            return output;
        }
        finally
        {
            if (!ReferenceEquals(ec, embeds)) ec.Dispose();
            if (!ReferenceEquals(cc, cos)) cc.Dispose();
            if (!ReferenceEquals(sc, sin)) sc.Dispose();
        }
    }

    /// <summary>y = x·rsqrt(mean(x²) + eps)·w per row, rounded after each product as libtorch's ops are.</summary>
    void RmsNorm(float* x, float* w, float* y, int rows)
    {
        int d = _d;
        for (int r = 0; r < rows; r++)
        {
            float* xr = x + r * d, yr = y + r * d;
            float sum = 0;
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var acc = Vector256<float>.Zero;
                for (; k + 8 <= d; k += 8) { var v = Vector256.Load(xr + k); acc += v * v; }
                sum = Vector256.Sum(acc);
            }
            for (; k < d; k++) sum += xr[k] * xr[k];
            float inv = 1f / MathF.Sqrt(sum / d + _eps);
            for (k = 0; k < d; k++) yr[k] = xr[k] * inv * w[k];
        }
    }

    /// <summary>HF's rotate_half RoPE in place: x·cos + rotate_half(x)·sin, with <paramref name="sin"/> signed as <see cref="Rope.Tables(Tensor, ScalarType)"/> makes it.</summary>
    static void RotateHalf(float* x, float* cos, float* sin, int hd)
    {
        int half = hd / 2;
        for (int j = 0; j < half; j++)
        {
            float a = x[j], b = x[j + half];
            x[j] = a * cos[j] + b * sin[j];
            x[j + half] = b * cos[j + half] + a * sin[j + half];
        }
    }

    static void SiluTimes(float* gate, float* up, float* y, int count)
    {
        for (int j = 0; j < count; j++)
        {
            float g = gate[j];
            y[j] = g / (1f + MathF.Exp(-g)) * up[j];
        }
    }

    static void Add(float* x, float* y, int count)
    {
        int k = 0;
        for (; k + 8 <= count; k += 8) (Vector256.Load(x + k) + Vector256.Load(y + k)).Store(x + k);
        for (; k < count; k++) x[k] += y[k];
    }
}
