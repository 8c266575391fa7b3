using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>One generated token and the text it completes (possibly empty mid-character); its log-probabilities when asked for (<see cref="GenerationOptions.LogProbs"/>).</summary>
public readonly record struct TokenEvent(int Id, string Text, double Ms, TokenLogProb? LogProb = null);

/// <summary>Where one caption's time went.</summary>
public sealed class CaptionTimings
{
    public double PreprocessMs { get; set; }
    public double VisionMs { get; set; }
    public double PrefillMs { get; set; }
    public List<double> DecodeMs { get; } = new();
    public int PromptTokens { get; set; }
}

/// <summary>The decode loop shared by single-image captioning and the streaming session.</summary>
public static class TokenGenerator
{
    /// <summary>
    /// Samples from <paramref name="logits"/>, then feeds each token back through the cache at
    /// positions nextPosition, nextPosition+1, … in <paramref name="group"/>. Stops at a stop token
    /// (not emitted) or after MaxNewTokens. Each event carries its text delta and the model time it
    /// took (the first: sampling only; later: one decode step and sampling). The loop after the
    /// first token is the runner's (<see cref="IModelRunner.Decode"/>: in the server it runs in
    /// the batches, ahead of this caller); stopping early leaves the cache as if it ran here.
    /// </summary>
    /// <param name="modelStops">Where the model's generation ends when the options name no stop tokens (the engine's <see cref="Engine.StopTokens"/>).</param>
    /// <param name="runner">Runs the decode steps (a <see cref="ForwardBatcher"/> shares them across sequences); null: on this thread.</param>
    /// <param name="lookup">Earlier text to draft from (<see cref="GenerationOptions.DraftTokens"/>); null: no drafts.</param>
    /// <param name="drafts">Null, or where the drafts' passes and acceptance are counted.</param>
    public static IEnumerable<TokenEvent> Run(LanguageModel lm, KvCache cache, CacheGroup group, Tensor logits,
        long nextPosition, GenerationOptions options, TextTokenizer tokenizer, IReadOnlyCollection<int>? modelStops = null,
        IModelRunner? runner = null, PromptLookup? lookup = null, DraftStats? drafts = null)
    {
        if (options.MaxNewTokens <= 0) yield break;
        runner ??= DirectRunner.Instance;
        var stops = options.StopTokens ?? modelStops ?? (tokenizer.EosId is { } e ? new[] { e } : Array.Empty<int>());
        using var sampler = new Sampler(options);
        var text = new TextStreamDecoder(tokenizer);
        var sw = Stopwatch.StartNew();
        int id;
        using (torch.inference_mode()) id = sampler.Next(logits);
        double ms = sw.Elapsed.TotalMilliseconds;
        // The token goes out before it is fed back: the first token costs no decode step.
        using var rest = (options.DraftTokens > 0 && lookup is not null
            ? DraftedDecode.Run(runner, lm, id, nextPosition, cache, group, sampler, stops, options.MaxNewTokens - 1, lookup, options.DraftTokens, drafts)
            : runner.Decode(lm, id, nextPosition, cache, group, sampler, stops, options.MaxNewTokens - 1)).GetEnumerator();
        while (!stops.Contains(id))
        {
            yield return new TokenEvent(id, text.Push(id), ms, sampler.TakeLogProb());
            if (!rest.MoveNext()) break;
            (id, ms) = rest.Current;
        }
        var tail = text.Flush();
        if (tail.Length > 0) yield return new TokenEvent(-1, tail, 0);
    }

    /// <summary>Waits for queued device work, so stage timings on CUDA measure the stage.</summary>
    public static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }
}

/// <summary>
/// Captions images: preprocess → vision → prefill → streamed decode. Subclasses change only the
/// prefill (the pruner's plan); decoding is shared.
/// </summary>
public class Captioner
{
    protected readonly Engine _e;

    public Captioner(Engine engine) => _e = engine;

    /// <summary>
    /// The prompt's token ids. A prompt that holds the image marker is used as it is (a raw prompt);
    /// other text is the user's question about the images, in the model's format (its chat template
    /// when it has one); no prompt at all is the model's default.
    /// </summary>
    public List<int> PromptIds(string? prompt, int images = 1) => _e.Tokenizer.Encode(PromptText(prompt, images));

    public string PromptText(string? prompt, int images = 1)
    {
        if (prompt is null) return images == 1 || _e.Layout.DefaultPrompt is not null ? _e.DefaultPrompt : _e.Prompt(Engine.DefaultQuestion, images);
        if (images == 0 || prompt.Contains(_e.Model.ImageMarker)) return prompt;
        if (_e.Layout.Template is not null) return _e.Prompt(prompt, images);
        return string.Concat(Enumerable.Repeat(_e.Model.ImageSnippet, images)) + "\n" + prompt;
    }

    /// <summary>
    /// The prompt with the images encoded and spliced in, as a prefill would run it: its
    /// embeddings [1, T, D], positions and image spans (benches and analyze time prefills apart).
    /// <paramref name="maxPixels"/>: the images at fewer pixels (a dynamic-resolution family only).
    /// </summary>
    public (Tensor Embeds, PositionIds Positions, List<Pruning.VisualSpan> Spans, long NextPosition) EmbedPrompt(IReadOnlyList<Mat> images, string? prompt, long? maxPixels = null)
    {
        var ids = PromptIds(prompt, images.Count);
        var prepared = images.Select(i => _e.Model.PrepareAt(i, Use(images.Count), maxPixels)).ToList();
        IReadOnlyList<EncodedImage> encoded;
        try { encoded = prepared.Count == 0 ? Array.Empty<EncodedImage>() : _e.Model.Encode(prepared); }
        finally { foreach (var p in prepared) p.Dispose(); }
        try
        {
            var block = MultimodalPrompt.Build(ids, _e.ImageMarkerId, encoded);
            return (block.Embed(_e.Language), block.Positions, block.Spans.ToList(), block.NextPosition);
        }
        finally { foreach (var e in encoded) e.Dispose(); }
    }

    /// <summary>A lone image takes the family's full still path; several in one prompt are each one of several.</summary>
    static ImageUse Use(int images) => images > 1 ? ImageUse.OneOfSeveral : ImageUse.Still;

    public IEnumerable<TokenEvent> Caption(Mat image, string? prompt, GenerationOptions options, CaptionTimings timings) =>
        Caption(new[] { image }, prompt, options, timings);

    /// <summary>Several images (e.g. consecutive frames), one image marker each, in order.</summary>
    public IEnumerable<TokenEvent> Caption(IReadOnlyList<Mat> images, string? prompt, GenerationOptions options, CaptionTimings timings)
    {
        options.Validate();
        var ids = PromptIds(prompt, images.Count);
        var cache = new KvCache(_e.Text.NumHiddenLayers);
        Tensor logits;
        MultimodalPrompt block;
        var sw = Stopwatch.StartNew();
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var prepared = images.Select(i => _e.Model.Prepare(i, Use(images.Count))).ToList();
            IReadOnlyList<EncodedImage> encoded;
            try
            {
                TokenGenerator.Sync(_e.Device);
                timings.PreprocessMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
                encoded = prepared.Count == 0 ? Array.Empty<EncodedImage>() : _e.Runner.Encode(_e.Model, prepared); // text-only chat: no vision step
            }
            finally { foreach (var p in prepared) p.Dispose(); }
            try
            {
                TokenGenerator.Sync(_e.Device);
                timings.VisionMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
                block = MultimodalPrompt.Build(ids, _e.ImageMarkerId, encoded);
                timings.PromptTokens = block.Length;
                logits = _e.Language.Logits(Prefill(block.Embed(_e.Language), block, cache)).MoveToOuterDisposeScope();
            }
            finally { foreach (var e in encoded) e.Dispose(); }
            TokenGenerator.Sync(_e.Device);
            timings.PrefillMs = sw.Elapsed.TotalMilliseconds;
        }
        try
        {
            // Group positions: the caption is its own group starting at φ = 0; otherwise it follows the prompt.
            var (group, start) = _e.GroupPositions ? (CacheGroup.Target, 0L) : (CacheGroup.Source, block.NextPosition);
            foreach (var ev in TokenGenerator.Run(_e.Language, cache, group, logits, start, options, _e.Tokenizer, _e.StopTokens, runner: _e.Runner))
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

    /// <summary>Runs the decoder over the prompt, filling <paramref name="cache"/>; returns the last position's hidden state [D].</summary>
    protected virtual Tensor Prefill(Tensor embeds, MultimodalPrompt block, KvCache cache)
    {
        using var h = _e.Runner.Forward(_e.Language, embeds, new DecoderStep { Positions = block.Positions, Cache = cache, OutputRows = 1 });
        return h[0, -1];
    }
}
