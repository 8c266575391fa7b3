using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model;

/// <summary>
/// Where and how parameters are allocated. Parameters start uninitialised (torch.empty) on the
/// target device and dtype: a checkpoint is then read straight into them, with no random init
/// and no second copy. Training calls <see cref="ModelInit"/> instead.
/// </summary>
public sealed record TensorSpec(Device Device, ScalarType DType)
{
    public Parameter Param(params long[] shape) => new(torch.empty(shape, DType, Device), requires_grad: false);
    /// <summary>Uninitialised storage that several parameters view (<see cref="Linear.Stacked"/>).</summary>
    public Tensor Storage(params long[] shape) => torch.empty(shape, DType, Device).DetachFromDisposeScope();
    public static TensorSpec Cpu32 => new(torch.CPU, ScalarType.Float32);
}

/// <summary>
/// y = x Wᵀ + b, with HF's names (weight, bias). For inference the weight can be converted to a
/// compact format (<see cref="Compact"/>): the parameter is then emptied and the product runs
/// over the <see cref="WeightMatrix"/> that replaced it. Training always takes libtorch's path.
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>, ICompactable
{
    public readonly Parameter weight;
    public readonly Parameter? bias;
    WeightMatrix? _compact;

    /// <summary>The stack whose storage this layer's weight is a view of (<see cref="Stacked"/>); it converts that storage as one.</summary>
    public LinearStack? Stack { get; private set; }

    public Linear(long inFeatures, long outFeatures, bool hasBias, TensorSpec spec) : base(nameof(Linear))
    {
        weight = spec.Param(outFeatures, inFeatures);
        if (hasBias) bias = spec.Param(outFeatures);
        RegisterComponents();
    }

    Linear(Parameter weight, Parameter? bias) : base(nameof(Linear))
    {
        this.weight = weight;
        this.bias = bias;
        RegisterComponents();
    }

    /// <summary>
    /// Linears whose weights (and biases) are consecutive row blocks of one storage [Σout, in]
    /// (and [Σout]): each keeps its own parameter, name and gradient, while inference runs all
    /// of them as one matmul over the storage (<see cref="LinearStack.Forward"/>). Loading and
    /// in-place updates write through.
    /// </summary>
    public static LinearStack Stacked(long inFeatures, long[] outFeatures, bool hasBias, TensorSpec spec)
    {
        long total = outFeatures.Sum();
        var w = spec.Storage(total, inFeatures);
        var b = hasBias ? spec.Storage(total) : null;
        var result = new Linear[outFeatures.Length];
        long at = 0;
        // Detached aliases, not autograd views: a view keeps its base alive, so emptying a member
        // (Compact) would never free the storage.
        static Parameter Rows(Tensor storage, long at, long count)
        {
            using var view = storage.narrow(0, at, count);
            return new Parameter(view.detach(), requires_grad: false);
        }
        for (int i = 0; i < outFeatures.Length; i++)
        {
            result[i] = new Linear(Rows(w, at, outFeatures[i]), b is null ? null : Rows(b, at, outFeatures[i]));
            at += outFeatures[i];
        }
        var stack = new LinearStack(w, b, result);
        foreach (var l in result) l.Stack = stack;
        return stack;
    }

    public override Tensor forward(Tensor x)
    {
        if (_compact is not null)
        {
            Compaction.ThrowIfGradient(x);
            return _compact.Linear(x, bias);
        }
        return Compaction.NeedsGradient(x, weight, bias) ? F.linear(x, weight, bias) : WeightMatrix.DenseLinear(x, weight, bias);
    }

    /// <summary>The compact copy that replaced <see cref="weight"/>; null while the weight is used as it is.</summary>
    public WeightMatrix? Compacted => _compact;

    IEnumerable<Parameter> ICompactable.Weights => new[] { weight };
    long ICompactable.CompactBytes => _compact?.Bytes ?? 0;
    long ICompactable.CompactElements => _compact?.Elements ?? 0;
    long ICompactable.Bytes => _compact?.Bytes ?? weight.numel() * weight.ElementSize;

    /// <inheritdoc cref="ICompactable.Compact"/>
    public void Compact(WeightFormat format, Tensor? rows = null)
    {
        if (Stack is not null) { Stack.Compact(format, rows); return; }
        if (_compact is not null || rows is null && WeightFormats.Of(weight.dtype) == format) return;
        _compact = WeightMatrix.Convert(rows ?? weight, format);
        Compaction.Release(weight);
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(device, dtype, nonBlocking); }
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(deviceType, deviceIndex, nonBlocking); }
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(dtype, nonBlocking); }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _compact?.Dispose(); _compact = null; }
        base.Dispose(disposing);
    }
}

/// <summary>
/// Linears stacked on one storage (<see cref="Linear.Stacked"/>), run as one product at
/// inference: q/k/v, and an MLP's gate and up. Not a module: the members hold the parameters.
/// </summary>
public sealed class LinearStack : ICompactable, IDisposable
{
    Tensor? _weight;
    readonly Tensor? _bias;
    WeightMatrix? _compact;
    public Linear[] Members { get; }

    internal LinearStack(Tensor weight, Tensor? bias, Linear[] members) => (_weight, _bias, Members) = (weight, bias, members);

    /// <summary>Whether the one product may replace the members' own (no member needs a gradient, or gradients are off).</summary>
    public bool Applies => _compact is not null || !torch.is_grad_enabled() || !Members.Any(m => m.weight.requires_grad || m.bias?.requires_grad == true);

    /// <summary>x [.., in] → the members' outputs side by side [.., Σout].</summary>
    public Tensor Forward(Tensor x)
    {
        if (_compact is null) return WeightMatrix.DenseLinear(x, _weight!, _bias);
        Compaction.ThrowIfGradient(x);
        return _compact.Linear(x, _bias);
    }

    public WeightMatrix? Compacted => _compact;
    /// <summary>The stacked storage while it is used as it is (null once compacted).</summary>
    internal Tensor? Weight => _weight;
    internal Tensor? Bias => _bias;
    IEnumerable<Parameter> ICompactable.Weights => Members.Select(m => m.weight);
    long ICompactable.CompactBytes => _compact?.Bytes ?? 0;
    long ICompactable.CompactElements => _compact?.Elements ?? 0;
    long ICompactable.Bytes => _compact?.Bytes ?? _weight!.numel() * _weight.ElementSize;

    public void Compact(WeightFormat format, Tensor? rows = null)
    {
        if (_compact is not null || _weight is null || rows is null && WeightFormats.Of(_weight.dtype) == format) return;
        _compact = WeightMatrix.Convert(rows ?? _weight, format);
        foreach (var m in Members) Compaction.Release(m.weight);
        _weight.Dispose();
        _weight = null;
    }

    public void Dispose()
    {
        Compaction.ThrowIfMoved(_compact);
        _weight?.Dispose(); _bias?.Dispose();
        _weight = null;
    }
}

public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight, bias;
    readonly double _eps;
    public LayerNorm(long dim, double eps, TensorSpec spec) : base(nameof(LayerNorm))
    {
        weight = spec.Param(dim);
        bias = spec.Param(dim);
        _eps = eps;
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => F.layer_norm(x, new[] { weight.size(0) }, weight, bias, _eps);
}

/// <summary>LLaMA's RMSNorm, computed in float32 whatever the weights' dtype, as HF does.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly Scalar _eps; // rooted: see Rooted
    public double Eps { get; }
    public RmsNorm(long dim, double eps, TensorSpec spec) : base(nameof(RmsNorm))
    {
        weight = spec.Param(dim);
        Eps = eps;
        _eps = eps.ToScalar();
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        // float32 (the demo model, CPU): no casts, no scope, in place where no gradient is kept; on a
        // small model each native call costs more than its arithmetic.
        if (x.dtype == ScalarType.Float32)
        {
            var r = (x * x).mean(new long[] { -1 }, keepdim: true).add_(_eps, Rooted.One); // not square(): TorchSharp makes it pow with an unrooted Scalar
            return torch.is_grad_enabled() ? x * r.rsqrt() * weight : (x * r.rsqrt_()).mul_(weight);
        }
        using var scope = torch.NewDisposeScope();
        var h = x.to_type(ScalarType.Float32);
        h = h * torch.rsqrt((h * h).mean(new long[] { -1 }, keepdim: true).add_(_eps, Rooted.One));
        return (weight * h.to_type(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>A lookup table; for inference it can be compact (<see cref="Compact"/>), and it can serve as a tied output head (<see cref="Project"/>).</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>, ICompactable
{
    public readonly Parameter weight;
    WeightMatrix? _compact;
    ScalarType _dtype;

    public Embedding(long count, long dim, TensorSpec spec) : base(nameof(Embedding))
    {
        weight = spec.Param(count, dim);
        _dtype = spec.DType;
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        if (_compact is not null) return _compact.Rows(ids, _dtype);
        var shape = ids.Dims().Append(weight.size(1)).ToArray();
        return weight.index_select(0, ids.reshape(-1)).view(shape);
    }

    /// <summary>hidden [.., D] → hidden·Eᵀ [.., count]: the output head of a model whose embeddings are tied.</summary>
    public Tensor Project(Tensor hidden)
    {
        if (_compact is not null) { Compaction.ThrowIfGradient(hidden); return _compact.Linear(hidden, null); }
        return Compaction.NeedsGradient(hidden, weight, null) ? F.linear(hidden, weight) : WeightMatrix.DenseLinear(hidden, weight, null);
    }

    public WeightMatrix? Compacted => _compact;
    IEnumerable<Parameter> ICompactable.Weights => new[] { weight };
    long ICompactable.CompactBytes => _compact?.Bytes ?? 0;
    long ICompactable.CompactElements => _compact?.Elements ?? 0;
    long ICompactable.Bytes => _compact?.Bytes ?? weight.numel() * weight.ElementSize;

    public void Compact(WeightFormat format, Tensor? rows = null)
    {
        if (_compact is not null || rows is null && WeightFormats.Of(weight.dtype) == format) return;
        _dtype = weight.dtype;
        _compact = WeightMatrix.Convert(rows ?? weight, format);
        Compaction.Release(weight);
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(device, dtype, nonBlocking); }
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(deviceType, deviceIndex, nonBlocking); }
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking) { Compaction.ThrowIfMoved(_compact); return base._to(dtype, nonBlocking); }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _compact?.Dispose(); _compact = null; }
        base.Dispose(disposing);
    }
}

public static class Activations
{
    static readonly Scalar QuickGeluSlope = 1.702.ToScalar(); // rooted: see Rooted
    /// <summary>The activations HF configs name (hidden_act, projector_hidden_act).</summary>
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => F.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" => x => F.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x => x * torch.sigmoid(x.mul(QuickGeluSlope)),
        "silu" or "swish" => x => F.silu(x),
        "relu" => x => F.relu(x),
        _ => throw new UserError($"unsupported activation '{name}' (supported: gelu, gelu_pytorch_tanh, quick_gelu, silu, relu)"),
    };
}

/// <summary>Random initialisation for training from scratch (GPT-2 style: N(0, 0.02), norms at 1).</summary>
public static class ModelInit
{
    public static void Initialize(nn.Module module, long seed)
    {
        using var noGrad = torch.no_grad();
        var gen = new torch.Generator((ulong)seed, module.parameters().First().device);
        foreach (var (name, p) in module.named_parameters())
        {
            if (name.EndsWith("norm.weight") || name.EndsWith("layernorm.weight") || name.EndsWith("layer_norm1.weight")
                || name.EndsWith("layer_norm2.weight") || name.EndsWith("pre_layrnorm.weight") || name.EndsWith("post_layernorm.weight"))
                p.fill_(Rooted.One);
            else if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0, 0.02, gen);
        }
    }
}
