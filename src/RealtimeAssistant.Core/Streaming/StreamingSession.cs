using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

public sealed record StreamingOptions
{
    /// <summary>Frames whose KV stays in the source group (W). Older frames are evicted.</summary>
    public int WindowFrames { get; init; } = 8;
    /// <summary>
    /// Frames a newly read frame attends, itself included; W = the whole window. The caption still
    /// attends all W frames; a frame's own encoding then costs the same for any W, instead of
    /// growing with it (at W = 32 most of an update's time is the new frame attending the other 31).
    /// Null: the span the model was trained with (config ra_frame_band, capped at W), else the whole window.
    /// </summary>
    public int? FrameBand { get; init; }
    /// <summary>Caption tokens kept in the target group across writes (M); 0 = each caption stands alone.</summary>
    public int CaptionHistoryTokens { get; init; }
    /// <summary>φ: the target group's first position (GPE default 0).</summary>
    public long TargetStart { get; init; }
    /// <summary>
    /// Rotate every cached source key back to position 0 whenever a frame leaves (O(window) per
    /// frame). Off, the source keeps its positions and the target starts at φ + the source's first
    /// position instead: under RoPE only differences matter, so attention is the same, and keys are
    /// rotated only before positions would pass max_position_embeddings.
    /// </summary>
    public bool RebaseOnEvict { get; init; }
    public GenerationOptions Generation { get; init; } = new() { MaxNewTokens = 48 };
    /// <summary>Prune each frame's visual tokens as it enters (VisiPruner, FastV, …); null = keep all.</summary>
    public PruningConfig? Pruning { get; init; }

    public void Validate(int maxPositions)
    {
        if (WindowFrames < 1 || WindowFrames > 4096) throw new UserError($"window must be 1..4096 frames, got {WindowFrames}");
        if (FrameBand is { } fb && (fb < 1 || fb > WindowFrames)) throw new UserError($"frame band must be 1..window ({WindowFrames}), got {fb}");
        if (CaptionHistoryTokens < 0) throw new UserError($"caption history must be ≥ 0 tokens, got {CaptionHistoryTokens}");
        if (TargetStart < 0 || TargetStart >= maxPositions) throw new UserError($"φ must be in [0, {maxPositions}), got {TargetStart}");
        Generation.Validate();
    }

    public void Validate(int maxPositions, int layers)
    {
        Validate(maxPositions);
        Pruning?.Validate(layers);
        // A frame is demoted when the next one arrives, after its layers ran: only a fixed exit can be applied then.
        if (Pruning is { Method: "visipruner", KeepNewestFrame: true, OlderFramesExitLayer: null, ExitLayer: null })
            throw new UserError("streaming with keep_newest_frame needs a fixed exit for the older frames (older_frames_exit_layer or exit_layer)");
    }
}

/// <summary>What one update cost: tokens run through the decoder and whether the vision encoder ran.</summary>
public readonly record struct UpdateCost(int DecoderTokens, int VisionFrames);

/// <summary>
/// Frames in, captions out, with group position encoding (METHODS.md §2). The source group holds
/// the last W frames, each [image tokens, marker], at positions 0, 1, … that keep growing; the
/// target group holds the caption at φ, φ+1, … relative to the source's first position. READ
/// encodes a frame once and appends it; WRITE appends the instruction (or a question), generates
/// into the target, then drops the instruction. Nothing is ever re-encoded, and the oldest frame
/// leaves by moving the cache's start, so an update costs the same at frame 10 and frame 10,000.
/// </summary>
public sealed class StreamingSession : IStreamingCaptioner
{
    readonly LlavaEngine _e;
    readonly StreamingOptions _o;
    readonly ImagePreprocessor _pre;
    readonly KvCache _cache;
    readonly Queue<long[]> _frameEntries = new(); // source entries per frame and layer, oldest first (pruning makes them differ)
    readonly ITokenPruner? _pruner;
    readonly int _markerId;
    readonly string _instruction;
    readonly int? _band; // null: every frame attends the whole window
    long _nextSource;

    public string Name => "gpe";
    public long FramesRead { get; private set; }
    public UpdateCost LastCost { get; private set; }
    public KvCache Cache => _cache;
    public int FramesInWindow => _frameEntries.Count;
    public long NextSourcePosition => _nextSource;
    /// <summary>What pruning did to the last frame read (null without pruning).</summary>
    public PruneReport? LastPrune { get; private set; }
    /// <summary>Frames a new frame attends, itself included (<see cref="StreamingOptions.FrameBand"/> as resolved).</summary>
    public int FrameBand => _band ?? _o.WindowFrames;

    /// <summary>The source's first position: the target group counts from φ past it. Every layer keeps each frame's marker, so the minimum is exact.</summary>
    long Origin => _cache.Layers.Min(l => l.Source.Length > 0 ? l.Source.Positions[0] : _nextSource);

    public StreamingSession(LlavaEngine engine, StreamingOptions? options = null)
    {
        _e = engine;
        _o = options ?? new StreamingOptions();
        _o.Validate(engine.Config.Text.MaxPositionEmbeddings, engine.Config.Text.NumHiddenLayers);
        if (_o.Pruning is { Method: not "none" } pc) _pruner = pc.CreatePruner(engine.Config.Text.NumHiddenLayers);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(engine.Directory, "config.json")));
        _band = ResolveBand(_o, cfg);
        _pre = new ImagePreprocessor(engine.Preprocessor, engine.Device, engine.DType);
        _cache = new KvCache(engine.Config.Text.NumHiddenLayers);
        var marker = cfg?["ra_frame_marker"]?.GetValue<string>()
            ?? throw new UserError($"{engine.Directory} was not trained for streaming (config has no ra_frame_marker)");
        _markerId = engine.Tokenizer.TokenToId(marker) ?? throw new UserError($"frame marker '{marker}' is not in the tokenizer");
        _instruction = cfg?["ra_instruction"]?.GetValue<string>() ?? "describe the scene .";
    }

    /// <summary>
    /// The band a frame attends: the caller's, else the span the model's frames attended in
    /// training (ra_frame_band). Past that span a frame's encoding is out of the training
    /// distribution, and each extra frame only adds attention cost.
    /// </summary>
    static int? ResolveBand(StreamingOptions o, JsonNode? cfg)
    {
        int? band = o.FrameBand;
        if (band is null && cfg?["ra_frame_band"] is { } node)
        {
            int trained = node.GetValueKind() == System.Text.Json.JsonValueKind.Number && node.AsValue().TryGetValue(out int v) ? v : 0;
            if (trained < 1) throw new UserError($"config.json: ra_frame_band must be a whole number ≥ 1, got {node.ToJsonString()}");
            band = trained;
        }
        return band is { } b && b < o.WindowFrames ? b : null;
    }

    /// <summary>READ: vision-encodes one frame and appends it to the source.</summary>
    public void Read(Mat frame)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var feats = _e.Model.EncodeImages(_pre.Process(frame));
        AppendFrame(feats);
        LastCost = LastCost with { VisionFrames = 1 };
    }

    /// <summary>READ and WRITE in one decoder pass (<see cref="AppendFrameAndWrite"/>); the vision encoder runs first.</summary>
    public IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null)
    {
        Tensor feats;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
            feats = _e.Model.EncodeImages(_pre.Process(frame)).MoveToOuterDisposeScope();
        try
        {
            foreach (var ev in AppendFrameAndWrite(feats, question)) yield return ev;
        }
        finally { feats.Dispose(); LastCost = LastCost with { VisionFrames = 1 }; }
    }

    /// <summary>READ from already-encoded visual tokens [1, N, D] (for tests and benchmarks).</summary>
    public void AppendFrame(Tensor features)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var (embeds, n) = FrameEmbeds(features);
        int count = n + 1;
        MakeRoom(count);
        var positions = SourcePositions(count);
        // Sparing the newest frame (KeepNewestFrame), the new one enters whole and the one before it
        // becomes an older frame: it leaves the deep layers, as in a prompt holding both.
        bool spare = _o.Pruning is { Method: "visipruner", KeepNewestFrame: true };
        if (spare) DemoteNewestFrame();
        var before = _cache.Layers.Select(l => l.Source.Length).ToArray();
        if (_pruner is null)
            _e.Model.Decoder.Forward(embeds, new DecoderStep { Positions = positions, Cache = _cache, Group = CacheGroup.Source, SourceSkip = BandSkip() });
        else
        {
            // The frame's tokens are cut layer by layer as they enter; each layer's cache keeps what survived.
            using var pruned = PrunedPrefill.Run(_e.Model.language_model, embeds, positions, new[] { new VisualSpan(0, n, 0) }, spare ? new NonePruner() : _pruner, _cache,
                _band is null ? null : BandSkips());
            LastPrune = pruned.Report;
        }
        Appended(count, before);
        LastCost = new UpdateCost(count, 0);
    }

    /// <summary>
    /// The frame's tokens [image tokens, marker], embedded, after evicting the oldest frame if the
    /// window is full. Evicting first means the new frame sees exactly the W−1 frames the next
    /// caption sees with it: the band training lays streaming samples out with (DemoSample.Band).
    /// </summary>
    (Tensor Embeds, int ImageTokens) FrameEmbeds(Tensor features)
    {
        int n = (int)features.shape[1];
        var ids = Enumerable.Repeat((long)_e.Config.ImageTokenIndex, n).Append(_markerId).ToArray();
        var slots = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        var embeds = _e.Model.Embed(torch.tensor(ids, device: _e.Device).view(1, -1), features, slots);
        while (_frameEntries.Count >= _o.WindowFrames) EvictOldestFrame();
        return (embeds, n);
    }

    /// <summary>Source entries older than the frame band, which a new frame does not attend (no pruning: every layer holds the same).</summary>
    long BandSkip() => BandSkips()[0];

    /// <summary>Per layer, the source entries older than the frame band (pruning leaves each layer its own count).</summary>
    long[] BandSkips()
    {
        var skips = new long[_cache.Layers.Length];
        if (_band is not { } band || _frameEntries.Count < band) return skips;
        foreach (var f in _frameEntries.Take(_frameEntries.Count - (band - 1)))
            for (int l = 0; l < skips.Length; l++) skips[l] += f[l];
        return skips;
    }

    long[] SourcePositions(int count) => Enumerable.Range(0, count).Select(i => _nextSource + i).ToArray();

    /// <summary>Bookkeeping once a frame's <paramref name="count"/> entries (and <paramref name="after"/> more behind them) are in the source.</summary>
    void Appended(int count, long[] lengthsBefore, int after = 0)
    {
        _nextSource += count;
        _frameEntries.Enqueue(_cache.Layers.Select((l, i) => l.Source.Length - lengthsBefore[i] - after).ToArray());
        FramesRead++;
    }

    /// <summary>
    /// The newest frame (whole, with pruning that spares it) loses its visual entries from the
    /// older frames' exit layer on; its marker stays. Its entries end each layer's source: frames
    /// enter in order and an instruction leaves after its caption.
    /// </summary>
    void DemoteNewestFrame()
    {
        if (_frameEntries.Count == 0) return;
        var counts = _frameEntries.Last(); // the array in the queue: updated in place
        int exit = _o.Pruning!.OlderFramesExitLayer ?? _o.Pruning.ExitLayer ?? _cache.Layers.Length;
        for (int l = exit; l < counts.Length; l++)
        {
            var src = _cache.Layers[l].Source;
            long visual = counts[l] - 1;
            if (visual <= 0) continue;
            src.Evict(src.Length - counts[l], visual);
            counts[l] = 1;
        }
    }

    void EvictOldestFrame()
    {
        var counts = _frameEntries.Dequeue();
        for (int i = 0; i < counts.Length; i++) _cache.Layers[i].Source.Evict(0, counts[i]);
        if (_o.RebaseOnEvict) Rebase();
    }

    /// <summary>Shifts the source so its first entry sits at position 0, and the target with it, by rotating cached keys.</summary>
    void Rebase()
    {
        var first = Origin;
        if (first == 0) return;
        var rope = _e.Model.Decoder.Rope;
        foreach (var layer in _cache.Layers)
        {
            layer.Source.ShiftPositions(-first, k => rope.ShiftKeys(k, first));
            layer.Target.ShiftPositions(-first, k => rope.ShiftKeys(k, first));
        }
        _nextSource -= first;
    }

    /// <summary>Before positions pass the model's trained range, shift everything back (exact under RoPE).</summary>
    void MakeRoom(int needed)
    {
        long targetEnd = _o.TargetStart + Origin + _cache.Layers[0].Target.Length + _o.Generation.MaxNewTokens;
        int max = _e.Config.Text.MaxPositionEmbeddings;
        if (_nextSource + needed + _o.Generation.MaxNewTokens < max && targetEnd < max) return;
        Rebase();
        if (_nextSource + needed >= _e.Config.Text.MaxPositionEmbeddings)
            throw new UserError($"the window ({_nextSource} positions) no longer fits max_position_embeddings {_e.Config.Text.MaxPositionEmbeddings}; use a smaller window");
    }

    /// <summary>
    /// WRITE: the instruction (or <paramref name="question"/>) goes into the source, the answer is
    /// generated into the target group and streamed, then the instruction leaves the source again.
    /// </summary>
    public IEnumerable<TokenEvent> Write(string? question = null) => Update(null, question);

    /// <summary>
    /// READ then WRITE, with the frame and the instruction in one decoder pass: on a small model
    /// each pass costs mostly per-operation overhead, so this is what keeps "frame in → first
    /// token" low. With a frame band the frame's queries score only the band's keys and the
    /// instruction's all of them, still in one pass. The cache ends exactly as after
    /// <see cref="AppendFrame"/> and <see cref="Write"/> (a test checks the captions match). With a
    /// pruner the frame is read alone, as pruning decides per frame.
    /// </summary>
    public IEnumerable<TokenEvent> AppendFrameAndWrite(Tensor features, string? question = null)
    {
        if (_pruner is null) return Update(features, question);
        AppendFrame(features);
        return Update(null, question);
    }

    IEnumerable<TokenEvent> Update(Tensor? frame, string? question)
    {
        var prompt = _e.Tokenizer.Encode(question ?? _instruction, addSpecialTokens: false);
        if (prompt.Count == 0) throw new UserError("empty question");
        Tensor logits;
        int frameTokens = 0;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var embeds = _e.Model.Decoder.embed_tokens.forward(torch.tensor(prompt.Select(i => (long)i).ToArray(), device: _e.Device).view(1, -1));
            if (frame is not null)
            {
                var (f, n) = FrameEmbeds(frame); // evicts first, so the target is trimmed against the new origin
                frameTokens = n + 1;
                embeds = torch.cat(new[] { f, embeds }, 1);
            }
            TrimTarget();
            MakeRoom(frameTokens + prompt.Count);
            var before = frame is null ? null : _cache.Layers.Select(l => l.Source.Length).ToArray();
            var h = _e.Model.Decoder.Forward(embeds, new DecoderStep
            {
                Positions = SourcePositions(frameTokens + prompt.Count), Cache = _cache, Group = CacheGroup.Source,
                SourceSkip = frame is null ? 0 : BandSkip(), SourceSkipRows = frameTokens,
            });
            logits = _e.Model.language_model.Logits(h[0, -1]).MoveToOuterDisposeScope();
            if (before is not null) Appended(frameTokens, before, after: prompt.Count);
        }
        int tokens = frameTokens + prompt.Count;
        try
        {
            var start = _o.TargetStart + Origin + _cache.Layers[0].Target.Length;
            foreach (var ev in TokenGenerator.Run(_e.Model, _cache, CacheGroup.Target, logits, start, _o.Generation, _e.Tokenizer))
            {
                if (ev.Id >= 0) tokens++;
                yield return ev;
            }
        }
        finally
        {
            logits.Dispose();
            // The instruction leaves the source: later frames never see it (it is not part of the stream).
            foreach (var layer in _cache.Layers) layer.Source.Evict(layer.Source.Length - prompt.Count, prompt.Count);
            LastCost = new UpdateCost(tokens, 0);
        }
    }

    /// <summary>Keeps at most M caption tokens in the target group (oldest go first), re-based to start at φ past the source's origin.</summary>
    void TrimTarget()
    {
        var rope = _e.Model.Decoder.Rope;
        long first = _o.TargetStart + Origin;
        foreach (var layer in _cache.Layers)
        {
            var extra = layer.Target.Length - _o.CaptionHistoryTokens;
            if (extra > 0) layer.Target.Evict(0, extra);
            if (layer.Target.Length == 0) continue;
            var shift = layer.Target.Positions[0] - first;
            if (shift != 0) layer.Target.ShiftPositions(-shift, k => rope.ShiftKeys(k, shift));
        }
    }

    public void Dispose() { _cache.Dispose(); _pre.Dispose(); }
}
