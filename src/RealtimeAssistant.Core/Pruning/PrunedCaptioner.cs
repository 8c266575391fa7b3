using System.Diagnostics;
using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Pruning;

/// <summary>
/// Captions images with a pruned prefill, then the ordinary decode loop: each decode step attends
/// to whatever each layer's cache kept, at the original absolute positions.
/// </summary>
public sealed class PrunedCaptioner(LlavaEngine engine, ITokenPruner pruner) : Captioner(engine)
{
    public ITokenPruner Pruner { get; set; } = pruner;
    /// <summary>The last caption's pruning report.</summary>
    public PruneReport? LastReport { get; private set; }

    protected override Tensor Prefill(Tensor embeds, long[] positions, IReadOnlyList<int> ids, KvCache cache)
    {
        var spans = VisualSpan.FromIds(ids, _e.Config.ImageTokenIndex, _e.Config.ImageTokens);
        using var result = PrunedPrefill.Run(_e.Model.language_model, embeds, positions, spans, Pruner, cache);
        LastReport = result.Report;
        return result.Last[0].clone();
    }
}

/// <summary>
/// <see cref="IFrameCaptioner"/> with pruning switchable at run time: when enabled, captions go through
/// <see cref="PrunedCaptioner"/> and the result carries the kept-token count and the kept patch grid.
/// </summary>
public sealed class PrunedFrameCaptioner : IFrameCaptioner
{
    readonly LlavaEngine _engine;
    readonly LlavaFrameCaptioner _plain;
    readonly PrunedCaptioner _pruned;
    readonly GenerationOptions _options;

    public int FramesPerCaption => _plain.FramesPerCaption;
    public int FrameStride => _plain.FrameStride;
    public bool PruningEnabled { get; set; } = true;
    public PruningConfig Config { get; }

    public PrunedFrameCaptioner(LlavaEngine engine, PruningConfig config, int? framesPerCaption = null, int frameStride = 5, GenerationOptions? options = null)
    {
        _engine = engine;
        Config = config.Validate(engine.Config.Text.NumHiddenLayers);
        _options = options ?? new GenerationOptions { MaxNewTokens = 48 };
        _plain = new LlavaFrameCaptioner(engine, framesPerCaption, frameStride, _options);
        _pruned = new PrunedCaptioner(engine, config.CreatePruner(engine.Config.Text.NumHiddenLayers));
    }

    public CaptionResult Caption(CaptionRequest request, Action<string>? onDelta, CancellationToken ct)
    {
        if (!PruningEnabled) return _plain.Caption(request, onDelta, ct);
        if (request.Frames.Count == 0) throw new ArgumentException("no frames");
        var timings = new CaptionTimings();
        var text = new StringBuilder();
        foreach (var ev in _pruned.Caption(request.Frames, _plain.Prompt(request.Frames.Count, request.Question), _options, timings))
        {
            ct.ThrowIfCancellationRequested();
            text.Append(ev.Text);
            if (ev.Text.Length > 0) onDelta?.Invoke(ev.Text);
        }
        var r = _pruned.LastReport!;
        int side = _engine.Config.Vision.PatchesPerSide;
        return new CaptionResult(text.ToString().Trim(), timings, r.VisualTokens, r.KeptTokens, r.KeptGrid(side, side), side, side);
    }

    public void Dispose() { _pruned.Dispose(); _plain.Dispose(); }
}
