using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>Weights that can be stored in a compact format for inference (a Linear, a stack of them, the token table).</summary>
public interface ICompactable
{
    /// <summary>The parameters converted: all of them must hold their values before <see cref="Compact"/>, unless it is given them.</summary>
    IEnumerable<Parameter> Weights { get; }
    /// <summary>
    /// From now on stores the weights in <paramref name="format"/> (inference only) and frees the
    /// parameters' memory. <paramref name="rows"/>: the weights' values on the parameters' device,
    /// in any dtype, each weight's rows after the last's in <see cref="Weights"/>' order (a
    /// checkpoint read as stored); converted from there (kept as they are where they are already
    /// in the format's dtype) instead of from the parameters, which then never need to hold them.
    /// </summary>
    void Compact(WeightFormat format, Tensor? rows = null);
    /// <summary>Bytes of the compact copy (0 while there is none).</summary>
    long CompactBytes { get; }
    /// <summary>Weights in the compact copy (0 while there is none): the parameters it emptied.</summary>
    long CompactElements { get; }
    /// <summary>Bytes its weights hold now, compact or dense: what a product over them reads.</summary>
    long Bytes { get; }
}

/// <summary>Finds a model's compactable weights, converts them, and counts what they hold.</summary>
public static class Compaction
{
    /// <summary>
    /// The units in module order, a stack once: every Linear, and the decoder's token table
    /// (embed_tokens; a tied output head reads it too). <paramref name="include"/> filters by
    /// module name (e.g. the decoder only).
    /// </summary>
    public static IReadOnlyList<ICompactable> Units(nn.Module model, Func<string, bool>? include = null)
    {
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        var units = new List<ICompactable>();
        foreach (var (name, module) in model.named_modules())
        {
            if (include is not null && !include(name)) continue;
            ICompactable? unit = module switch
            {
                Linear l => l.Stack is { } s ? s : l,
                Embedding e when name == "embed_tokens" || name.EndsWith(".embed_tokens", StringComparison.Ordinal) => e,
                _ => null,
            };
            if (unit is not null && seen.Add(unit)) units.Add(unit);
        }
        return units;
    }

    /// <summary>Converts every unit (see <see cref="Units"/>) to <paramref name="format"/>.</summary>
    public static void Apply(nn.Module model, WeightFormat format, Func<string, bool>? include = null)
    {
        foreach (var unit in Units(model, include)) unit.Compact(format);
    }

    /// <summary>Bytes the model's weights hold: its parameters and the compact copies that replaced some of them.</summary>
    public static long WeightBytes(nn.Module model) =>
        model.parameters().Sum(p => p.numel() * p.ElementSize) + Units(model).Sum(u => u.CompactBytes);

    /// <summary>Weights the modules hold: their parameters and the compact copies that replaced some of them.</summary>
    public static long Parameters(params nn.Module[] modules) =>
        modules.Sum(m => m.parameters().Sum(p => p.numel()) + Units(m).Sum(u => u.CompactElements));

    /// <summary>Frees a parameter's storage (it becomes an empty tensor of its dtype on its device).</summary>
    internal static void Release(Parameter p)
    {
        using var noGrad = torch.no_grad();
        using var empty = torch.empty(0, p.dtype, p.device);
        p.set_(empty);
    }

    internal static bool NeedsGradient(Tensor x, Tensor w, Tensor? b) =>
        torch.is_grad_enabled() && (x.requires_grad || w.requires_grad || b?.requires_grad == true);

    internal static void ThrowIfGradient(Tensor x)
    {
        if (torch.is_grad_enabled() && x.requires_grad)
            throw new InvalidOperationException("compact weights are for inference: no gradient flows through them");
    }

    internal static void ThrowIfMoved(WeightMatrix? compact)
    {
        if (compact is not null)
            throw new InvalidOperationException("a module with compact weights cannot be moved or cast: load it on its device in the format it should have");
    }
}
