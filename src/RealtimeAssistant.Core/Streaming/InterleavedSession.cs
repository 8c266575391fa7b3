using System.Diagnostics;
using System.Text;
using RealtimeAssistant.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// The interleaved baseline (benches only): one sequence with ordinary batch positions. Frames,
/// instructions and captions follow each other, so later frames attend to earlier captions (the
/// input-attention mismatch GPE removes). Old frames and the writes between them leave the window
/// together. A frame and the write it triggers go through the decoder in one pass, as in GPE.
/// </summary>
public sealed class InterleavedSession : SessionBase
{
    readonly KvCache _cache;
    readonly Queue<(bool IsFrame, int Entries)> _chunks = new();
    long _next;
    bool _prefixDone;

    public override string Mode => SessionModes.Interleaved;
    public override KvCache Cache => _cache;
    public override int FramesInWindow => _chunks.Count(c => c.IsFrame);

    public InterleavedSession(Engine engine, StreamingOptions? options = null) : base(engine, options ?? new StreamingOptions())
    {
        if (Options.Pruning is not null) throw new UserError("the interleaved baseline runs unpruned");
        _cache = new KvCache(engine.Text.NumHiddenLayers);
    }

    public override void Read(EncodedImage frame)
    {
        var sw = Stopwatch.StartNew();
        using (frame)
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var (embeds, positions, n) = FrameInput(frame);
            Forward(embeds, new DecoderStep { Positions = positions, Cache = _cache, OutputRows = 0 }).Dispose();
            TokenGenerator.Sync(E.Device);
            _chunks.Enqueue((true, n));
            Last = new UpdateReport { Kind = "read", DecoderTokens = n, ReadMs = sw.Elapsed.TotalMilliseconds, DecoderMs = sw.Elapsed.TotalMilliseconds };
        }
        FramesRead++;
    }

    /// <summary>The prefix (once), the window's eviction, and the frame's block at the next positions.</summary>
    (Tensor Embeds, PositionIds Positions, int Count) FrameInput(EncodedImage frame)
    {
        if (!_prefixDone && Format.Prefix.Length > 0)
        {
            Forward(TextEmbeds(Format.Prefix), new DecoderStep { Positions = PositionIds.Range(0, Format.Prefix.Length), Cache = _cache, OutputRows = 0 }).Dispose();
            _next = Format.Prefix.Length;
        }
        _prefixDone = true;
        // Evict first, as the GPE session does: the new frame sees the W−1 frames kept with it.
        while (FramesInWindow >= Options.WindowFrames)
        {
            var (_, entries) = _chunks.Dequeue();
            foreach (var l in _cache.Layers) l.Source.Evict(Format.Prefix.Length, entries);
            while (_chunks.Count > 0 && !_chunks.Peek().IsFrame)
            {
                var w = _chunks.Dequeue();
                foreach (var l in _cache.Layers) l.Source.Evict(Format.Prefix.Length, w.Entries);
            }
        }
        var block = FrameBlock(frame, _next);
        _next = block.NextPosition;
        return (block.Embed(E.Language), block.Positions, block.Length);
    }

    public override IEnumerable<TokenEvent> Write(string? question = null) => Update(null, question);
    public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) => Update(frame, question);

    IEnumerable<TokenEvent> Update(EncodedImage? frame, string? question)
    {
        var prompt = Format.Write(question);
        var sw = Stopwatch.StartNew();
        Tensor logits;
        int frameTokens = 0;
        using (frame)
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            Tensor embeds = TextEmbeds(prompt);
            PositionIds positions;
            if (frame is not null)
            {
                var (f, p, n) = FrameInput(frame);
                frameTokens = n;
                embeds = torch.cat(new[] { f, embeds }, 1);
                positions = PositionIds.Concat(p, PositionIds.Range(_next, prompt.Length));
            }
            else positions = PositionIds.Range(_next, prompt.Length);
            using var h = Forward(embeds, new DecoderStep { Positions = positions, Cache = _cache, OutputRows = 1 });
            logits = E.Language.Logits(h[0, -1]).MoveToOuterDisposeScope();
            TokenGenerator.Sync(E.Device);
            if (frame is not null) { _chunks.Enqueue((true, frameTokens)); FramesRead++; }
        }
        _next += prompt.Length;
        double prefillMs = sw.Elapsed.TotalMilliseconds;
        var steps = new List<double>();
        var text = new StringBuilder();
        long entriesBefore = _chunks.Sum(c => c.Entries) + Format.Prefix.Length;
        try
        {
            foreach (var ev in Generate(logits, CacheGroup.Source, _next, steps, text, answer: question is not null)) yield return ev;
        }
        finally
        {
            logits.Dispose();
            // Everything fed back (all generated tokens but the last) now sits in the sequence, after the prompt.
            long added = _cache.Layers[0].Source.Length - entriesBefore;
            _next += Math.Max(0, added - prompt.Length);
            _chunks.Enqueue((false, (int)added));
            Last = new UpdateReport
            {
                Kind = frame is null ? "write" : "read+write", DecoderMs = prefillMs, DecodeMs = steps, Text = text.ToString().Trim(),
                DecoderTokens = frameTokens + prompt.Length + Math.Max(0, steps.Count - 1),
                ReadMs = frame is null ? 0 : prefillMs, WriteMs = (frame is null ? prefillMs : 0) + steps.Sum(),
            };
        }
    }

    protected override void Release() => _cache.Dispose();
}
