using System.Diagnostics;
using System.Text;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// The re-encoding baseline: READ keeps the frame's visual tokens (each frame is vision-encoded
/// once, as in GPE); every WRITE rebuilds the whole prompt (the model's prefix, the last W frames,
/// the instruction) from scratch, through the pruner when pruning is on, then the caption history
/// GPE keeps (the last M caption tokens, <see cref="StreamingOptions.CaptionHistoryTokens"/>) at
/// the target group's positions, and generates with the same positions as GPE. Same layout as
/// the GPE session, so the answers match; its cost grows with W and M.
/// A write that comes with its frame (<see cref="ReadAndWrite(EncodedImage, string?)"/>) counts the
/// window's prefill as that frame's read, as the GPE session counts its fused pass: a read is what
/// a frame costs before its caption's first token, so the frame-budget governor holds this
/// baseline's rebuilds to the budget, at the same ladder, as it holds GPE's appends.
/// </summary>
public sealed class ReEncodingSession : SessionBase
{
    readonly Queue<EncodedImage> _frames = new();
    readonly List<int> _history = new(); // caption tokens GPE would hold in its target group, oldest first
    KvCache _cache;
    int? _band;

    public override string Mode => SessionModes.ReEncode;
    public override KvCache Cache => _cache;
    public override int FramesInWindow => _frames.Count;

    public ReEncodingSession(Engine engine, StreamingOptions? options = null) : base(engine, options ?? new StreamingOptions())
    {
        _cache = new KvCache(engine.Text.NumHiddenLayers);
        _band = (Options.FrameBand ?? engine.Layout.FrameBand) is { } b && b < Options.WindowFrames ? b : null;
    }

    public override void Read(EncodedImage frame)
    {
        // The oldest frame leaves before the new one enters, as in GPE: the window never holds more than W.
        while (_frames.Count >= Options.WindowFrames) _frames.Dequeue().Dispose();
        _frames.Enqueue(frame);
        FramesRead++;
        int n = frame.Count;
        Last = new UpdateReport
        {
            Kind = "read", VisualTokens = n, KeptTokens = n, VisualPerLayer = Enumerable.Repeat(n, E.Text.NumHiddenLayers).ToArray(),
            GridW = frame.GridW, GridH = frame.GridH, Level = ReadLevel, // the rung its window is rebuilt at
        };
    }

    public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null)
    {
        Read(frame);
        return Rebuild(question, withRead: true);
    }

    public override IEnumerable<TokenEvent> Write(string? question = null) => Rebuild(question, withRead: false);

    IEnumerable<TokenEvent> Rebuild(string? question, bool withRead)
    {
        if (_frames.Count == 0) throw new UserError("nothing to describe yet: no frame has been read");
        var prompt = Format.Write(question);
        _cache.Dispose();
        _cache = new KvCache(E.Text.NumHiddenLayers);
        var read = Last;
        var sw = Stopwatch.StartNew();
        Tensor logits;
        int tokens;
        long next;
        UpdateReport frameReport = read;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            // [prefix][frame]…[frame][prompt], one block, positions from 0: what the GPE session holds.
            var ids = Format.Prefix.Concat(_frames.SelectMany(_ => Format.Frame)).Concat(prompt).ToList();
            var block = MultimodalPrompt.Build(ids, E.ImageMarkerId, _frames.ToList());
            var embeds = block.Embed(E.Language);
            tokens = block.Length;
            Tensor h;
            if (Pruner is not null)
            {
                using var pruned = PrunedPrefill.Run(E.Language, embeds, block.Positions, block.Spans, Pruner, _cache, runner: E.Runner, outputRows: 1);
                h = pruned.Last.MoveToOuterDisposeScope();
                var newest = MultimodalPrompt.Build(Format.Frame, E.ImageMarkerId, new[] { _frames.Last() });
                frameReport = FrameReport(newest, null, E.Text.NumHiddenLayers) with
                {
                    VisualTokens = block.FeatureSlots.Length, KeptTokens = pruned.Report.KeptTokens,
                    VisualPerLayer = pruned.Report.Layers.Select(l => l.Visual).ToArray(), Prune = pruned.Report, Level = ReadLevel,
                    KeptGrid = pruned.Report.KeptGrid(newest.Images[0].GridW, newest.Images[0].GridH),
                };
            }
            else
            {
                using var all = Forward(embeds, new DecoderStep { Positions = block.Positions, Cache = _cache, Mask = BandMask(block, prompt.Length), OutputRows = 1 });
                h = all[.., -1];
            }
            logits = E.Language.Logits(h.reshape(-1)).MoveToOuterDisposeScope();
            if (_history.Count > 0) // only a model with group positions keeps one (StreamingOptions.Validate)
            {
                // The history's rows see the whole source and each other, as GPE's target does; only their keys and values are kept.
                Forward(TextEmbeds(_history), new DecoderStep
                {
                    Positions = PositionIds.Range(Options.TargetStart, _history.Count), Cache = _cache, Group = CacheGroup.Target, OutputRows = 0,
                }).Dispose();
                tokens += _history.Count;
            }
            TokenGenerator.Sync(E.Device);
            next = block.NextPosition;
        }
        double prefillMs = sw.Elapsed.TotalMilliseconds;
        var steps = new List<double>();
        var text = new StringBuilder();
        var caption = new List<int>();
        long history = _cache.Layers[0].Target.Length;
        try
        {
            var start = Format.GroupPositions ? Options.TargetStart + history : next;
            foreach (var ev in Generate(logits, CacheGroup.Target, start, steps, text, answer: question is not null))
            {
                if (ev.Id >= 0) caption.Add(ev.Id);
                yield return ev;
            }
        }
        finally
        {
            KeepHistory(caption, (int)(_cache.Layers[0].Target.Length - history));
            logits.Dispose();
            Last = frameReport with
            {
                Kind = withRead ? "read+write" : "write", DecoderMs = prefillMs, DecodeMs = steps, Text = text.ToString().Trim(),
                DecoderTokens = tokens + Math.Max(0, steps.Count - 1),
                ReadMs = withRead ? read.ReadMs + prefillMs : read.ReadMs, WriteMs = (withRead ? 0 : prefillMs) + steps.Sum(),
            };
        }
    }

    /// <summary>The tokens this caption fed back into the target (the last one sampled is not), then only the last M: what GPE's target keeps for the next write.</summary>
    void KeepHistory(List<int> generated, int fed)
    {
        if (Options.CaptionHistoryTokens == 0) return;
        _history.AddRange(generated.Take(fed));
        if (_history.Count > Options.CaptionHistoryTokens) _history.RemoveRange(0, _history.Count - Options.CaptionHistoryTokens);
    }

    /// <summary>
    /// The frame band as a mask (the GPE session and training lay frames out with it): a frame's rows
    /// see the prefix and the frames of the band before them; the prompt sees everything. Null
    /// when every frame is within the band (plain causal).
    /// </summary>
    Tensor? BandMask(MultimodalPrompt block, int promptLength)
    {
        if (_band is not { } band || _frames.Count <= band) return null;
        int t = block.Length, prefix = Format.Prefix.Length;
        var frameOf = new int[t];
        Array.Fill(frameOf, -1);
        int at = prefix;
        for (int f = 0; f < _frames.Count; f++)
        {
            int len = Format.Frame.Length - 1 + _frames.ElementAt(f).TokenIds.Length;
            for (int i = 0; i < len; i++) frameOf[at + i] = f;
            at += len;
        }
        // Made on the device from the tokens' frame numbers (-1: not a frame's): causal, and a
        // frame's token sees another frame's only within the band; text sees and is seen by all.
        using var scope = torch.NewDisposeScope();
        using var bandScalar = band.ToScalar(); // alive across the call: see Model/Rooted
        var of = torch.tensor(frameOf, device: E.Device);
        var pos = Rooted.Arange(t, E.Device);
        var (row, col) = (of.unsqueeze(1), of.unsqueeze(0));
        var near = row.lt(Rooted.Zero).logical_or(col.lt(Rooted.Zero)).logical_or((row - col).lt(bandScalar));
        return pos.unsqueeze(0).le(pos.unsqueeze(1)).logical_and(near).MoveToOuterDisposeScope();
    }

    protected override void Release() { foreach (var f in _frames) f.Dispose(); _cache.Dispose(); }
}
