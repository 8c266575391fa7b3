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
public sealed class PrunedCaptioner : IDisposable
{
    readonly LlavaEngine _e;
    readonly Captioner _plain;
    public ITokenPruner Pruner { get; set; }
    /// <summary>The last caption's pruning report.</summary>
    public PruneReport? LastReport { get; private set; }

    public PrunedCaptioner(LlavaEngine engine, ITokenPruner pruner)
    {
        _e = engine;
        _plain = new Captioner(engine);
        Pruner = pruner;
    }

    public IEnumerable<TokenEvent> Caption(IReadOnlyList<Mat> images, string? prompt, GenerationOptions options, CaptionTimings timings)
    {
        options.Validate();
        var ids = _plain.PromptIds(prompt);
        var spans = VisualSpan.FromIds(ids, _e.Config.ImageTokenIndex, _e.Config.ImageTokens);
        if (spans.Count != images.Count) throw new UserError($"the prompt has {spans.Count} image markers for {images.Count} images");
        var slots = spans.SelectMany(s => Enumerable.Range(s.Start, s.Length)).Select(i => (long)i).ToArray();
        timings.PromptTokens = ids.Count;
        var cache = new KvCache(_e.Config.Text.NumHiddenLayers);
        Tensor logits;
        var sw = Stopwatch.StartNew();
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var pixels = torch.cat(images.Select(_plain.Preprocessor.Process).ToArray(), 0);
            TokenGenerator.Sync(_e.Device);
            timings.PreprocessMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
            var feats = _e.Model.EncodeImages(pixels);
            feats = feats.reshape(1, -1, feats.shape[^1]);
            TokenGenerator.Sync(_e.Device);
            timings.VisionMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
            var idt = torch.tensor(ids.Select(i => (long)i).ToArray(), device: _e.Device).view(1, -1);
            var embeds = _e.Model.Embed(idt, feats, slots);
            var positions = Enumerable.Range(0, ids.Count).Select(i => (long)i).ToArray();
            using var result = PrunedPrefill.Run(_e.Model.language_model, embeds, positions, spans, Pruner, cache);
            LastReport = result.Report;
            logits = _e.Model.language_model.Logits(result.Last[0]).MoveToOuterDisposeScope();
            TokenGenerator.Sync(_e.Device);
            timings.PrefillMs = sw.Elapsed.TotalMilliseconds;
        }
        try
        {
            var (group, start) = _e.GroupPositions ? (CacheGroup.Target, 0L) : (CacheGroup.Source, (long)ids.Count);
            foreach (var ev in TokenGenerator.Run(_e.Model, cache, group, logits, start, options, _e.Tokenizer))
            {
                if (ev.Id >= 0) timings.DecodeMs.Add(ev.Ms);
                yield return ev;
            }
        }
        finally
        {
            logits.Dispose();
            cache.Dispose();
        }
    }

    public void Dispose() => _plain.Dispose();
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
