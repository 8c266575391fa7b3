using System.Diagnostics;
using System.Text;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// Frames in, captions out, with group position encoding (METHODS.md §2). The source group holds
/// the model's prefix (if its format has one) and the last W frames at positions that keep
/// growing; the target group holds the caption at φ, φ+1, … relative to the source's first
/// position (a model trained with GPE), or right after the write's prompt (any other). READ
/// encodes a frame once and appends it; WRITE appends the instruction (or a question), generates
/// into the target, then drops the instruction. Nothing is ever re-encoded, and the oldest frame
/// leaves by moving the cache's start, so an update costs the same at frame 10 and frame 10,000.
/// </summary>
public sealed class GpeSession : SessionBase
{
    readonly KvCache _cache;
    readonly Queue<FrameEntries> _frames = new(); // oldest first
    readonly int? _band; // null: every frame attends the whole window
    int _prefix; // prefix entries at the start of every layer's source (never pruned or evicted)
    long _nextSource;

    /// <summary>A frame's entries per layer (pruning makes them differ); while it is whole (read unpruned), its visual runs' offsets in the frame.</summary>
    sealed class FrameEntries(long[] counts, (int Start, int Length)[] visual, bool whole)
    {
        public long[] Counts { get; } = counts;
        public (int Start, int Length)[] Visual { get; } = visual;
        public bool Whole { get; set; } = whole;
    }

    public override string Mode => SessionModes.Gpe;
    public override KvCache Cache => _cache;
    public override int FramesInWindow => _frames.Count;
    public long NextSourcePosition => _nextSource;
    /// <summary>Frames a new frame attends, itself included (<see cref="StreamingOptions.FrameBand"/> as resolved).</summary>
    public int FrameBand => _band ?? Options.WindowFrames;

    /// <summary>The source's first frame position: the target group counts from φ past it. Every layer keeps each frame's text, so the minimum is exact.</summary>
    long Origin => _cache.Layers.Min(l => l.Source.Length > _prefix ? l.Source.Positions[_prefix] : _nextSource);

    public GpeSession(Engine engine, StreamingOptions? options = null) : base(engine, options ?? new StreamingOptions())
    {
        _band = ResolveBand(Options, engine.Layout);
        if (_band is not null && Format.Prefix.Length > 0)
            throw new UserError("a frame band needs a model trained on the frame layout (ra_frame_marker)");
        _cache = new KvCache(engine.Text.NumHiddenLayers);
    }

    /// <summary>
    /// The band a frame attends: the caller's, else the span the model's frames attended in
    /// training (ra_frame_band). Past that span a frame's encoding is out of the training
    /// distribution, and each extra frame only adds attention cost.
    /// </summary>
    static int? ResolveBand(StreamingOptions o, ModelLayout layout)
    {
        int? band = o.FrameBand ?? layout.FrameBand;
        return band is { } b && b < o.WindowFrames ? b : null;
    }

    /// <summary>The model's prefix goes in once, before the first frame.</summary>
    void EnsurePrefix()
    {
        if (_prefix > 0 || Format.Prefix.Length == 0 || _nextSource > 0) return;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        Forward(TextEmbeds(Format.Prefix), new DecoderStep { Positions = PositionIds.Range(0, Format.Prefix.Length), Cache = _cache, OutputRows = 0 }).Dispose();
        _prefix = Format.Prefix.Length;
        _nextSource = _prefix;
    }

    public override void Read(EncodedImage frame)
    {
        var sw = Stopwatch.StartNew();
        using (frame)
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            EnsurePrefix();
            EvictForNewFrame();
            var block = FrameBlock(frame, _nextSource);
            var embeds = block.Embed(E.Language);
            MakeRoom((int)(block.NextPosition - _nextSource));
            block = FrameBlock(frame, _nextSource); // positions after any re-base
            // Sparing the newest frame (KeepNewestFrame), the new one enters whole and the one before it
            // becomes an older frame: it leaves the deep layers, as in a prompt holding both.
            bool spare = SparesNewestFrame;
            DemoteNewestFrame();
            var before = _cache.Layers.Select(l => l.Source.Length).ToArray();
            PruneReport? prune = null;
            if (Pruner is null)
                Forward(embeds, new DecoderStep { Positions = block.Positions, Cache = _cache, Plan = BandPlanFor(block.Length), OutputRows = 0 }).Dispose();
            else
            {
                // The frame's tokens are cut layer by layer as they enter; each layer's cache keeps what survived.
                using var pruned = PrunedPrefill.Run(E.Language, embeds, block.Positions, block.Spans, spare ? new NonePruner() : Pruner, _cache,
                    _band is null ? null : BandSkips(), E.Runner, outputRows: 0);
                prune = spare ? null : pruned.Report;
            }
            TokenGenerator.Sync(E.Device);
            Appended(block, before, whole: prune is null);
            var report = FrameReport(block, prune, E.Text.NumHiddenLayers);
            Last = report with { Kind = "read", DecoderMs = sw.Elapsed.TotalMilliseconds, ReadMs = sw.Elapsed.TotalMilliseconds, DecoderTokens = block.Length, Level = ReadLevel };
        }
    }

    bool SparesNewestFrame => Pruning is { Method: "visipruner", KeepNewestFrame: true };

    /// <summary>Whether the next frame read attends fewer frames than the window holds (its frame band), once the window has slid for it.</summary>
    bool BandCutsNextFrame => _band is { } band && Math.Min(_frames.Count, Options.WindowFrames - 1) >= band;

    /// <summary>Evicts the oldest frame when the window is full. Evicting first means the new frame sees exactly the W−1 frames the next caption sees with it: the band training lays streaming samples out with.</summary>
    void EvictForNewFrame()
    {
        while (_frames.Count >= Options.WindowFrames) EvictOldestFrame();
    }

    ILayerPlan? BandPlanFor(int frameRows) => BandSkips() is var skips && skips.Any(s => s > 0) ? new BandPlan(skips, frameRows) : null;

    /// <summary>Per layer, the source entries older than the frame band (pruning leaves each layer its own count).</summary>
    long[] BandSkips()
    {
        var skips = new long[_cache.Layers.Length];
        if (_band is not { } band || _frames.Count < band) return skips;
        foreach (var f in _frames.Take(_frames.Count - (band - 1)))
            for (int l = 0; l < skips.Length; l++) skips[l] += f.Counts[l];
        return skips;
    }

    /// <summary>Bookkeeping once a frame's block (and <paramref name="after"/> more entries behind it) is in the source.</summary>
    void Appended(MultimodalPrompt block, long[] lengthsBefore, bool whole, int after = 0)
    {
        _nextSource = block.NextPosition;
        var counts = _cache.Layers.Select((l, i) => l.Source.Length - lengthsBefore[i] - after).ToArray();
        var visual = block.Spans.Select(s => (s.Start, s.Length)).ToArray();
        _frames.Enqueue(new FrameEntries(counts, visual, whole));
        FramesRead++;
    }

    /// <summary>
    /// When a frame arrives, the one before it becomes an older frame: if it entered whole (unpruned,
    /// or spared as the newest), its visual entries leave the layers from the older frames' exit on,
    /// and its text stays. Its entries end each layer's source: frames enter in order and an
    /// instruction leaves after its caption. Needs a fixed exit (the exit test cannot run on a frame already read).
    /// </summary>
    void DemoteNewestFrame()
    {
        if (_frames.Count == 0 || Pruning is not { Method: "visipruner" } p || (p.OlderFramesExitLayer ?? p.ExitLayer) is not { } exit) return;
        var f = _frames.Last(); // its Counts are updated in place
        if (!f.Whole) return;
        long visual = f.Visual.Sum(v => (long)v.Length);
        for (int l = exit; l < f.Counts.Length; l++)
        {
            var src = _cache.Layers[l].Source;
            long frameStart = src.Length - f.Counts[l];
            foreach (var (start, length) in f.Visual.Reverse()) src.Evict(frameStart + start, length);
            f.Counts[l] -= visual;
        }
        f.Whole = false;
    }

    void EvictOldestFrame()
    {
        var f = _frames.Dequeue();
        for (int i = 0; i < f.Counts.Length; i++) _cache.Layers[i].Source.Evict(_prefix, f.Counts[i]);
        if (Options.RebaseOnEvict) Rebase();
    }

    /// <summary>
    /// Shifts the whole source (the prefix too) and the target by the same amount, so the first
    /// frame sits right after where the prefix began (position 0 without one), by rotating cached
    /// keys: every relative distance is kept, so it is exact (the prefix may go below 0).
    /// </summary>
    void Rebase()
    {
        var delta = Origin - _prefix;
        if (delta == 0) return;
        var rope = E.Decoder.Rope;
        foreach (var layer in _cache.Layers)
        {
            layer.Source.ShiftPositions(-delta, k => rope.ShiftKeys(k, delta));
            layer.Target.ShiftPositions(-delta, k => rope.ShiftKeys(k, delta));
        }
        _nextSource -= delta;
    }

    /// <summary>Before positions pass the model's trained range, shift everything back (exact under RoPE).</summary>
    void MakeRoom(int needed)
    {
        int max = E.Text.MaxPositionEmbeddings;
        long targetEnd = (Format.GroupPositions ? Options.TargetStart + Origin + _cache.Layers[0].Target.Length : _nextSource + needed) + Options.Generation.MaxNewTokens;
        if (_nextSource + needed + Options.Generation.MaxNewTokens < max && targetEnd < max) return;
        Rebase();
        if (_nextSource + needed >= max)
            throw new UserError($"the window ({_nextSource} positions) no longer fits max_position_embeddings {max}; use a smaller window");
    }

    public override IEnumerable<TokenEvent> Write(string? question = null) => Update(null, question);

    /// <summary>
    /// READ then WRITE, with the frame and the instruction in one decoder pass: on a small model
    /// each pass costs mostly per-operation overhead, so this is what keeps "frame in → first
    /// token" low. With a frame band the frame's queries score only the band's keys and the
    /// instruction's all of them, still in one pass. The cache ends exactly as after
    /// <see cref="Read(EncodedImage)"/> and <see cref="Write"/> (a test checks the captions match).
    /// A read that prunes the frame goes in the one pass too: the pruner decides from the frame's
    /// last row, as when the frame is read alone, and the instruction's rows behind it attend what
    /// each layer kept. The frame is read alone first only where the one pass would treat the
    /// instruction otherwise: a frame band that narrows the frame's view and not the instruction's,
    /// or a shallow stage, which would bar the instruction from the new frame but not the older ones.
    /// </summary>
    public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null)
    {
        // A read that cuts nothing of the new frame (no pruner, or the newest frame spared: the
        // schedule's own rung) needs no pruner at all; the frame before it leaves the deep layers first.
        if (Pruner is null || SparesNewestFrame || (Pruner.ShallowLayers == 0 && !BandCutsNextFrame)) return Update(frame, question);
        Read(frame);
        var read = Last;
        return Then(Update(null, question), () => Last = Last with
        {
            Kind = "read+write", ReadMs = read.ReadMs, DecoderTokens = Last.DecoderTokens + read.DecoderTokens, VisualTokens = read.VisualTokens,
            VisualPerLayer = read.VisualPerLayer, KeptTokens = read.KeptTokens, KeptGrid = read.KeptGrid, GridW = read.GridW, GridH = read.GridH,
            Prune = read.Prune, Level = read.Level,
        });
    }

    static IEnumerable<TokenEvent> Then(IEnumerable<TokenEvent> events, Action after)
    {
        try { foreach (var ev in events) yield return ev; }
        finally { after(); }
    }

    IEnumerable<TokenEvent> Update(EncodedImage? frame, string? question)
    {
        var prompt = Format.Write(question);
        if (frame is null && _frames.Count == 0) throw new UserError("nothing to describe yet: no frame has been read");
        Tensor logits;
        MultimodalPrompt? block = null;
        UpdateReport frameReport = new();
        var sw = Stopwatch.StartNew();
        long writeStart;
        using (frame)
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            EnsurePrefix();
            var embeds = TextEmbeds(prompt);
            if (frame is not null)
            {
                EvictForNewFrame(); // evicts first, so the target is trimmed against the new origin
                DemoteNewestFrame();
            }
            TrimTarget();
            if (frame is not null)
            {
                block = FrameBlock(frame, _nextSource);
                MakeRoom((int)(block.NextPosition - _nextSource) + prompt.Length);
                block = FrameBlock(frame, _nextSource);
                embeds = torch.cat(new[] { block.Embed(E.Language), embeds }, 1);
            }
            else MakeRoom(prompt.Length);
            writeStart = block?.NextPosition ?? _nextSource;
            var positions = PositionIds.Concat(block?.Positions ?? new PositionIds(Array.Empty<long>()), PositionIds.Range(writeStart, prompt.Length));
            var before = frame is null ? null : _cache.Layers.Select(l => l.Source.Length).ToArray();
            PruneReport? prune = null;
            if (block is not null && Pruner is not null && !SparesNewestFrame)
            {
                // The frame's tokens are cut layer by layer as they enter, decided from its own last
                // row; the instruction's rows ride behind it (ReadAndWrite keeps band cuts and shallow stages out of here).
                using var pruned = PrunedPrefill.Run(E.Language, embeds, positions, block.Spans, Pruner, _cache, runner: E.Runner, probeRow: block.Length - 1, outputRows: 1);
                logits = E.Language.Logits(pruned.Last.reshape(-1)).MoveToOuterDisposeScope();
                prune = pruned.Report;
            }
            else
            {
                using var h = Forward(embeds, new DecoderStep
                {
                    Positions = positions, Cache = _cache, Plan = block is null ? null : BandPlanFor(block.Length), OutputRows = 1,
                });
                logits = E.Language.Logits(h[0, -1]).MoveToOuterDisposeScope();
            }
            TokenGenerator.Sync(E.Device);
            if (block is not null)
            {
                Appended(block, before!, whole: prune is null, after: prompt.Length);
                frameReport = FrameReport(block, prune, E.Text.NumHiddenLayers);
            }
        }
        double prefillMs = sw.Elapsed.TotalMilliseconds;
        int frameTokens = block?.Length ?? 0;
        var steps = new List<double>();
        var text = new StringBuilder();
        try
        {
            // GPE: the caption counts from φ past the source's first frame; otherwise it follows its prompt.
            var start = Format.GroupPositions ? Options.TargetStart + Origin + _cache.Layers[0].Target.Length : writeStart + prompt.Length;
            foreach (var ev in Generate(logits, CacheGroup.Target, start, steps, text, answer: question is not null)) yield return ev;
        }
        finally
        {
            logits.Dispose();
            // The instruction leaves the source: later frames never see it (it is not part of the stream).
            foreach (var layer in _cache.Layers) layer.Source.Evict(layer.Source.Length - prompt.Length, prompt.Length);
            double decode = steps.Sum();
            Last = frameReport with
            {
                Kind = block is null ? "write" : "read+write", DecoderMs = prefillMs, DecodeMs = steps, Text = text.ToString().Trim(),
                DecoderTokens = frameTokens + prompt.Length + Math.Max(0, steps.Count - 1),
                // A fused pass is counted as the read's: the instruction's rows ride along with the frame's.
                ReadMs = block is null ? 0 : prefillMs, WriteMs = block is null ? prefillMs + decode : decode,
                Level = block is null ? null : ReadLevel, // the rung the frame was read at (the schedule's spares it whole)
            };
        }
    }

    /// <summary>
    /// Before a write: a model trained with GPE keeps at most M caption tokens in the target group
    /// (oldest go first), re-based to start at φ past the source's origin; any other model's
    /// caption stands alone.
    /// </summary>
    void TrimTarget()
    {
        var rope = E.Decoder.Rope;
        long first = Options.TargetStart + Origin;
        foreach (var layer in _cache.Layers)
        {
            var extra = Format.GroupPositions ? layer.Target.Length - Options.CaptionHistoryTokens : layer.Target.Length;
            if (extra > 0) layer.Target.Evict(0, extra);
            if (layer.Target.Length == 0) continue;
            var shift = layer.Target.Positions[0] - first;
            if (shift != 0) layer.Target.ShiftPositions(-shift, k => rope.ShiftKeys(k, shift));
        }
    }

    protected override void Release() => _cache.Dispose();
}
