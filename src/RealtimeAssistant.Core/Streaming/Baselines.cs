using System.Text.Json.Nodes;
using RealtimeAssistant.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>Shared plumbing of the two baselines: the frame layout and the instruction.</summary>
public abstract class BaselineSession : IStreamingCaptioner
{
    protected readonly LlavaEngine E;
    protected readonly StreamingOptions O;
    protected readonly int MarkerId;
    protected readonly List<int> Instruction;
    public KvCache Cache { get; protected set; }
    public UpdateCost LastCost { get; protected set; }
    public abstract string Name { get; }

    protected BaselineSession(LlavaEngine engine, StreamingOptions options)
    {
        E = engine; O = options;
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(engine.Directory, "config.json")));
        MarkerId = engine.Tokenizer.TokenToId(cfg?["ra_frame_marker"]?.GetValue<string>() ?? "frame") ?? throw new UserError("model has no frame marker");
        Instruction = engine.Tokenizer.Encode(cfg?["ra_instruction"]?.GetValue<string>() ?? "describe the scene .", false);
        Cache = new KvCache(engine.Config.Text.NumHiddenLayers);
    }

    protected Tensor FrameEmbeds(Tensor features)
    {
        int n = (int)features.shape[1];
        var ids = Enumerable.Repeat((long)E.Config.ImageTokenIndex, n).Append(MarkerId).ToArray();
        return E.Model.Embed(torch.tensor(ids, device: E.Device).view(1, -1), features, Enumerable.Range(0, n).Select(i => (long)i).ToArray());
    }

    protected Tensor TextEmbeds(IReadOnlyList<int> ids) =>
        E.Model.Decoder.embed_tokens.forward(torch.tensor(ids.Select(i => (long)i).ToArray(), device: E.Device).view(1, -1));

    protected static long[] Range(long start, long count) => Enumerable.Range(0, (int)count).Select(i => start + i).ToArray();

    public abstract void AppendFrame(Tensor features);
    public abstract IEnumerable<TokenEvent> Write(string? question = null);
    public virtual void Dispose() => Cache.Dispose();
}

/// <summary>
/// Re-encoding: every WRITE rebuilds the whole prompt (the last W frames, then the instruction)
/// from scratch and generates with group positions. Same answers as GPE; cost grows with W.
/// </summary>
public sealed class ReEncodingSession(LlavaEngine engine, StreamingOptions options) : BaselineSession(engine, options)
{
    readonly Queue<Tensor> _frames = new();
    public override string Name => "re-encoding";

    public override void AppendFrame(Tensor features)
    {
        _frames.Enqueue(features.detach().clone().DetachFromDisposeScope());
        while (_frames.Count > O.WindowFrames) _frames.Dequeue().Dispose();
        LastCost = new UpdateCost(0, 0);
    }

    public override IEnumerable<TokenEvent> Write(string? question = null)
    {
        Cache.Dispose();
        Cache = new KvCache(E.Config.Text.NumHiddenLayers);
        var prompt = question is null ? Instruction : E.Tokenizer.Encode(question, false);
        Tensor logits;
        int tokens;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var parts = _frames.Select(FrameEmbeds).Append(TextEmbeds(prompt)).ToArray();
            var embeds = torch.cat(parts, 1);
            tokens = (int)embeds.shape[1];
            var h = E.Model.Decoder.Forward(embeds, new DecoderStep { Positions = Range(0, tokens), Cache = Cache });
            logits = E.Model.language_model.Logits(h[0, -1]).MoveToOuterDisposeScope();
        }
        try
        {
            foreach (var ev in TokenGenerator.Run(E.Model, Cache, CacheGroup.Target, logits, O.TargetStart, O.Generation, E.Tokenizer))
            {
                if (ev.Id >= 0) tokens++;
                yield return ev;
            }
        }
        finally { logits.Dispose(); LastCost = new UpdateCost(tokens, 0); }
    }

    public override void Dispose() { foreach (var f in _frames) f.Dispose(); base.Dispose(); }
}

/// <summary>
/// Interleaved: one sequence with ordinary batch positions. Frames, instructions and captions
/// follow each other, so later frames attend to earlier captions (the input-attention mismatch).
/// Old frames and the writes between them leave the window together.
/// </summary>
public sealed class InterleavedSession(LlavaEngine engine, StreamingOptions options) : BaselineSession(engine, options)
{
    readonly Queue<(bool IsFrame, int Entries)> _chunks = new();
    long _next;
    public override string Name => "interleaved";

    public override void AppendFrame(Tensor features)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var embeds = FrameEmbeds(features);
        int n = (int)embeds.shape[1];
        // Evict first, as the GPE session does: the new frame sees the W−1 frames kept with it.
        while (_chunks.Count(c => c.IsFrame) >= O.WindowFrames)
        {
            var (isFrame, entries) = _chunks.Dequeue();
            foreach (var l in Cache.Layers) l.Source.Evict(0, entries);
            while (_chunks.Count > 0 && !_chunks.Peek().IsFrame)
            {
                var w = _chunks.Dequeue();
                foreach (var l in Cache.Layers) l.Source.Evict(0, w.Entries);
            }
        }
        E.Model.Decoder.Forward(embeds, new DecoderStep { Positions = Range(_next, n), Cache = Cache });
        _next += n;
        _chunks.Enqueue((true, n));
        LastCost = new UpdateCost(n, 0);
    }

    public override IEnumerable<TokenEvent> Write(string? question = null)
    {
        var prompt = question is null ? Instruction : E.Tokenizer.Encode(question, false);
        Tensor logits;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var h = E.Model.Decoder.Forward(TextEmbeds(prompt), new DecoderStep { Positions = Range(_next, prompt.Count), Cache = Cache });
            logits = E.Model.language_model.Logits(h[0, -1]).MoveToOuterDisposeScope();
        }
        _next += prompt.Count;
        int tokens = prompt.Count, generated = 0;
        try
        {
            foreach (var ev in TokenGenerator.Run(E.Model, Cache, CacheGroup.Source, logits, _next, O.Generation, E.Tokenizer))
            {
                if (ev.Id >= 0) { tokens++; generated++; }
                yield return ev;
            }
        }
        finally
        {
            logits.Dispose();
            // Everything fed back (all generated tokens but the last) now sits in the sequence.
            long added = Cache.Layers[0].Source.Length - _chunks.Sum(c => c.Entries);
            _next += Math.Max(0, added - prompt.Count);
            _chunks.Enqueue((false, (int)added));
            LastCost = new UpdateCost(tokens, 0);
        }
    }
}
