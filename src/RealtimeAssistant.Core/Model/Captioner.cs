using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>One generated token and the text it completes (possibly empty mid-character).</summary>
public readonly record struct TokenEvent(int Id, string Text, double Ms);

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
    /// took (the first: sampling only; later: one decode step and sampling).
    /// </summary>
    public static IEnumerable<TokenEvent> Run(LlavaModel model, KvCache cache, CacheGroup group, Tensor logits,
        long nextPosition, GenerationOptions options, TextTokenizer tokenizer, Func<int, bool>? stopAfter = null)
    {
        var stops = options.StopTokens ?? (tokenizer.EosId is { } e ? new[] { e } : Array.Empty<int>());
        using var sampler = new Sampler(options);
        var text = new TextStreamDecoder(tokenizer);
        var current = logits;
        var sw = Stopwatch.StartNew();
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            int id;
            using (torch.inference_mode()) id = sampler.Next(current);
            if (!ReferenceEquals(current, logits)) current.Dispose();
            if (stops.Contains(id)) break;
            var delta = text.Push(id);
            bool last = step == options.MaxNewTokens - 1 || (stopAfter?.Invoke(id) ?? false);
            // The token goes out before it is fed back: the first token costs no decode step.
            yield return new TokenEvent(id, delta, sw.Elapsed.TotalMilliseconds);
            if (last) break;
            sw.Restart(); // the caller's time between tokens is not ours
            using (var scope = torch.NewDisposeScope())
            // InferenceMode, not no_grad: libtorch then skips autograd's dispatch, view tracking and
            // version counters on every op, 10–14% of a demo-sized layer. Tensors made here (the
            // KV cache) are inference tensors, so every path that writes them runs in this mode too.
            using (torch.inference_mode())
            {
                var ids = torch.tensor(new long[] { id }, device: model.Decoder.embed_tokens.weight.device).view(1, 1);
                var h = model.Decoder.Forward(model.Decoder.embed_tokens.forward(ids),
                    new DecoderStep { Positions = new[] { nextPosition++ }, Cache = cache, Group = group });
                current = model.language_model.Logits(h[0, -1]).MoveToOuterDisposeScope();
            }
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
/// prefill (the pruner runs its own layer loop there); decoding is shared.
/// </summary>
public class Captioner : IDisposable
{
    protected readonly LlavaEngine _e;
    public ImagePreprocessor Preprocessor { get; }

    public Captioner(LlavaEngine engine)
    {
        _e = engine;
        Preprocessor = new ImagePreprocessor(engine.Preprocessor, engine.Device, engine.DType);
    }

    /// <summary>
    /// The prompt's token ids with the image marker expanded to the image's token count. A prompt
    /// for images that has no marker gets one in front; a text-only prompt (<paramref name="images"/> 0) is left as it is.
    /// </summary>
    public List<int> PromptIds(string? prompt, int images = 1)
    {
        prompt ??= _e.DefaultPrompt;
        var marker = _e.Tokenizer.IdToToken(_e.Config.ImageTokenIndex);
        if (images > 0 && !prompt.Contains(marker)) prompt = marker + "\n" + prompt;
        return _e.Model.ExpandImageTokens(_e.Tokenizer.Encode(prompt));
    }

    public IEnumerable<TokenEvent> Caption(Mat image, string? prompt, GenerationOptions options, CaptionTimings timings) =>
        Caption(new[] { image }, prompt, options, timings);

    /// <summary>Several images (e.g. consecutive frames), one image marker each, in order; none for a text-only prompt.</summary>
    public IEnumerable<TokenEvent> Caption(IReadOnlyList<Mat> images, string? prompt, GenerationOptions options, CaptionTimings timings)
    {
        options.Validate();
        var ids = PromptIds(prompt, images.Count);
        var slots = Enumerable.Range(0, ids.Count).Where(i => ids[i] == _e.Config.ImageTokenIndex).Select(i => (long)i).ToArray();
        if (slots.Length != _e.Config.ImageTokens * images.Count)
            throw new UserError($"the prompt has {slots.Length / Math.Max(1, _e.Config.ImageTokens)} image markers for {images.Count} images");
        timings.PromptTokens = ids.Count;
        var cache = new KvCache(_e.Config.Text.NumHiddenLayers);
        Tensor logits;
        var sw = Stopwatch.StartNew();
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            Tensor? feats = null;
            if (images.Count > 0)
            {
                var pixels = torch.cat(images.Select(Preprocessor.Process).ToArray(), 0);
                TokenGenerator.Sync(_e.Device);
                timings.PreprocessMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
                feats = _e.Model.EncodeImages(pixels);
                feats = feats.reshape(1, -1, feats.shape[^1]); // all images' tokens, in order
                TokenGenerator.Sync(_e.Device);
                timings.VisionMs = sw.Elapsed.TotalMilliseconds; sw.Restart();
            }
            var idt = torch.tensor(ids.Select(i => (long)i).ToArray(), device: _e.Device).view(1, -1);
            var embeds = _e.Model.Embed(idt, feats, slots);
            var positions = Enumerable.Range(0, ids.Count).Select(i => (long)i).ToArray();
            logits = _e.Model.language_model.Logits(Prefill(embeds, positions, ids, cache)).MoveToOuterDisposeScope();
            TokenGenerator.Sync(_e.Device);
            timings.PrefillMs = sw.Elapsed.TotalMilliseconds;
        }
        try
        {
            // Group positions: the caption is its own group starting at φ = 0; otherwise it follows the prompt.
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

    /// <summary>Runs the decoder over the prompt, filling <paramref name="cache"/>; returns the last position's hidden state [D].</summary>
    protected virtual Tensor Prefill(Tensor embeds, long[] positions, IReadOnlyList<int> ids, KvCache cache) =>
        _e.Model.Decoder.Forward(embeds, new DecoderStep { Positions = positions, Cache = cache })[0, -1];

    public virtual void Dispose() => Preprocessor.Dispose();
}
