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

/// <summary>y = x Wᵀ + b, with HF's names (weight, bias).</summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public readonly Parameter? bias;
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
    /// (and [Σout]): each keeps its own parameter, name and gradient, while inference can run all
    /// of them as one matmul over the storage. Loading and in-place updates write through.
    /// </summary>
    public static Linear[] Stacked(long inFeatures, long[] outFeatures, bool hasBias, TensorSpec spec, out Tensor weights, out Tensor? biases)
    {
        long total = outFeatures.Sum();
        var w = spec.Storage(total, inFeatures);
        var b = hasBias ? spec.Storage(total) : null;
        var result = new Linear[outFeatures.Length];
        long at = 0;
        for (int i = 0; i < outFeatures.Length; i++)
        {
            result[i] = new Linear(new Parameter(w.narrow(0, at, outFeatures[i]), requires_grad: false),
                b is null ? null : new Parameter(b.narrow(0, at, outFeatures[i]), requires_grad: false));
            at += outFeatures[i];
        }
        (weights, biases) = (w, b);
        return result;
    }

    public override Tensor forward(Tensor x) => F.linear(x, weight, bias);
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
    public override Tensor forward(Tensor x) => F.layer_norm(x, new[] { weight.shape[0] }, weight, bias, _eps);
}

/// <summary>LLaMA's RMSNorm, computed in float32 whatever the weights' dtype, as HF does.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly double _eps;
    public RmsNorm(long dim, double eps, TensorSpec spec) : base(nameof(RmsNorm))
    {
        weight = spec.Param(dim);
        _eps = eps;
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        // float32 (the demo model, CPU): no casts, no scope, in place where no gradient is kept; on a
        // small model each native call costs more than its arithmetic.
        if (x.dtype == ScalarType.Float32)
        {
            var r = x.square().mean(new long[] { -1 }, keepdim: true).add_(_eps);
            return torch.is_grad_enabled() ? x * r.rsqrt() * weight : (x * r.rsqrt_()).mul_(weight);
        }
        using var scope = torch.NewDisposeScope();
        var h = x.to_type(ScalarType.Float32);
        h = h * torch.rsqrt(h.square().mean(new long[] { -1 }, keepdim: true).add_(_eps));
        return (weight * h.to_type(x.dtype)).MoveToOuterDisposeScope();
    }
}

public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public Embedding(long count, long dim, TensorSpec spec) : base(nameof(Embedding))
    {
        weight = spec.Param(count, dim);
        RegisterComponents();
    }
    public override Tensor forward(Tensor ids)
    {
        var shape = ids.shape.Append(weight.shape[1]).ToArray();
        return weight.index_select(0, ids.reshape(-1)).view(shape);
    }
}

public static class Activations
{
    /// <summary>The activations HF configs name (hidden_act, projector_hidden_act).</summary>
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => F.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" => x => F.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x => x * torch.sigmoid(1.702 * x),
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
                p.fill_(1);
            else if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0, 0.02, gen);
        }
    }
}
