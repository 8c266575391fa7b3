using RealtimeAssistant.Model;
using static TorchSharp.torch;

namespace RealtimeAssistant.Pruning;

/// <summary>
/// Captions images with a pruned prefill, then the ordinary decode loop: each decode step attends
/// to whatever each layer's cache kept, at the original absolute positions.
/// </summary>
public sealed class PrunedCaptioner(Engine engine, ITokenPruner pruner) : Captioner(engine)
{
    public ITokenPruner Pruner { get; set; } = pruner;
    /// <summary>The last caption's pruning report.</summary>
    public PruneReport? LastReport { get; private set; }

    protected override Tensor Prefill(Tensor embeds, MultimodalPrompt block, KvCache cache)
    {
        using var result = PrunedPrefill.Run(_e.Language, embeds, block.Positions, block.Spans, Pruner, cache, runner: _e.Runner, outputRows: 1);
        LastReport = result.Report;
        return result.Last[0].clone();
    }
}
