using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// What every session shares: the model's stream format, vision encoding with its timings, the
/// pruner for the current pruning setting, and the report of a frame's read.
/// </summary>
public abstract class SessionBase : ICaptionSession
{
    protected readonly Engine E;
    protected readonly StreamFormat Format;
    readonly Dictionary<PruningConfig, ITokenPruner?> _pruners = new();
    PruningConfig? _pruning;
    protected ITokenPruner? Pruner { get; private set; }

    public abstract string Mode { get; }
    public Engine Engine => E;
    public StreamingOptions Options { get; }
    public abstract int FramesInWindow { get; }
    public long FramesRead { get; protected set; }
    public abstract KvCache Cache { get; }
    public UpdateReport Last { get; protected set; } = new();

    public double WarmUp() => SessionModes.WarmUp(Mode, E, Options, Pruning, MaxPixels);

    protected SessionBase(Engine engine, StreamingOptions options)
    {
        E = engine;
        Options = options;
        options.Validate(engine);
        Format = StreamFormat.For(engine);
        Pruning = options.Pruning;
    }

    public PruningConfig? Pruning
    {
        get => _pruning;
        set
        {
            if (value is { Method: "none" }) value = null;
            if (value is not null && !_pruners.ContainsKey(value))
            {
                StreamingOptions.ValidatePruning(value, E.Text.NumHiddenLayers);
                _pruners[value] = value.CreatePruner(E.Text.NumHiddenLayers);
            }
            _pruning = value;
            Pruner = value is null ? null : _pruners[value];
        }
    }

    /// <summary>
    /// The pixel bound the next READ prepares its frame at (the governor's resolution rung); null:
    /// the model's own. Only a family whose tokens follow the image's area takes one.
    /// </summary>
    public long? MaxPixels
    {
        get => _maxPixels;
        set
        {
            if (value is not null && E.Model is not IPixelBoundedVision)
                throw new InvalidOperationException($"{E.Model.ModelType} resizes every frame to one size; a read cannot be given a pixel bound");
            _maxPixels = value;
        }
    }
    long? _maxPixels;

    /// <summary>Preprocessing and the vision encoder for one frame, timed (on CUDA the timings wait for the device).</summary>
    protected (EncodedImage Image, double PreprocessMs, double VisionMs) EncodeFrame(Mat frame)
    {
        var sw = Stopwatch.StartNew();
        using var prepared = E.Model.PrepareAt(frame, ImageUse.VideoFrame, _maxPixels);
        TokenGenerator.Sync(E.Device);
        double pre = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        var image = E.Runner.Encode(E.Model, new[] { prepared })[0];
        TokenGenerator.Sync(E.Device);
        return (image, pre, sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>One frame's block at <paramref name="start"/>: [image run, the frame's text], with the image's spans.</summary>
    protected MultimodalPrompt FrameBlock(EncodedImage image, long start) =>
        MultimodalPrompt.Build(Format.Frame, E.ImageMarkerId, new[] { image }, start);

    /// <summary>A decoder pass through the engine's runner (batched with other streams' passes where the model is shared): the hidden states [1, T', D], the caller's to dispose.</summary>
    protected Tensor Forward(Tensor embeds, DecoderStep step) => E.Runner.Forward(E.Language, embeds, step);

    /// <summary>Token embeddings of plain ids [1, T, D].</summary>
    protected Tensor TextEmbeds(IReadOnlyList<int> ids) =>
        E.Decoder.embed_tokens.forward(torch.tensor(ids.Select(i => (long)i).ToArray(), device: E.Device).view(1, -1));

    /// <summary>The read's share of a report: visual tokens per layer, the kept grid, the level.</summary>
    protected UpdateReport FrameReport(MultimodalPrompt block, PruneReport? prune, int layers)
    {
        int visual = block.FeatureSlots.Length;
        var image = block.Images[0];
        if (prune is null)
            return new UpdateReport { VisualTokens = visual, KeptTokens = visual, VisualPerLayer = Enumerable.Repeat(visual, layers).ToArray(), GridW = image.GridW, GridH = image.GridH };
        var perLayer = prune.Layers.Select(l => l.Visual).ToArray();
        var grid = new float[image.GridW * image.GridH];
        var cells = image.Cells();
        var kept = prune.KeptVisual.ToHashSet();
        for (int i = 0; i < block.FeatureSlots.Length; i++)
            if (kept.Contains(block.FeatureSlots[i]) && cells[i] >= 0 && cells[i] < grid.Length) grid[cells[i]] = 1;
        return new UpdateReport
        {
            VisualTokens = visual, KeptTokens = prune.KeptTokens, VisualPerLayer = perLayer, Prune = prune,
            KeptGrid = grid, GridW = image.GridW, GridH = image.GridH, Level = ReadLevel,
        };
    }

    /// <summary>The name of the setting the next READ runs at (<see cref="LevelName(PruningConfig?, long?)"/>).</summary>
    protected string? ReadLevel => LevelName(Pruning, _maxPixels);

    /// <summary>A short name for a read's setting, its pruning and any pixel bound: what the HUD and captions.jsonl show.</summary>
    public static string? LevelName(PruningConfig? p, long? maxPixels) =>
        maxPixels is { } m ? $"{LevelName(p) ?? "unpruned"}, max {m} px" : LevelName(p);

    /// <summary>A short name for a pruning setting.</summary>
    public static string? LevelName(PruningConfig? p) => p switch
    {
        null => null,
        { Method: "visipruner" } v => string.Join(" ", new[]
        {
            v.Budget is { } k ? $"k={k}" : null,
            v.KeepNewestFrame ? $"newest spared, older exit {v.OlderFramesExitLayer ?? v.ExitLayer}" : v.ExitLayer is { } x ? $"exit {x}" : null,
        }.Where(s => s is not null)) is { Length: > 0 } s ? s : "visipruner",
        var o => o.Method,
    };

    public void Read(Mat frame)
    {
        var (image, pre, vision) = EncodeFrame(frame);
        Read(image);
        Last = Last with { PreprocessMs = pre, VisionMs = vision, VisionFrames = 1, ReadMs = Last.ReadMs + pre + vision };
    }

    public IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null)
    {
        var (image, pre, vision) = EncodeFrame(frame);
        try
        {
            foreach (var ev in ReadAndWrite(image, question)) yield return ev;
        }
        finally { Last = Last with { PreprocessMs = pre, VisionMs = vision, VisionFrames = 1, ReadMs = Last.ReadMs + pre + vision }; }
    }

    public abstract void Read(EncodedImage frame);
    public abstract IEnumerable<TokenEvent> Write(string? question = null);
    public abstract IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null);

    /// <summary>The drafts verified while writing (<see cref="GenerationOptions.DraftTokens"/>), over the session's life.</summary>
    public DraftStats? Drafts { get; } = new();

    List<int> _lastCaption = new(), _lastAnswer = new();

    /// <summary>
    /// Runs the decode loop, recording each step's time and the text for the report. A caption's
    /// drafts come from the last caption this session wrote, an answer's from the last answer
    /// (<see cref="PromptLookup"/>): a question between two captions leaves the captions' drafts as they were.
    /// </summary>
    protected IEnumerable<TokenEvent> Generate(Tensor logits, CacheGroup group, long start, List<double> steps, System.Text.StringBuilder text, bool answer)
    {
        var written = new List<int>();
        try
        {
            foreach (var ev in TokenGenerator.Run(E.Language, Cache, group, logits, start, Options.Generation, E.Tokenizer, E.StopTokens, runner: E.Runner,
                lookup: new PromptLookup(answer ? _lastAnswer : _lastCaption), drafts: Drafts))
            {
                if (ev.Id >= 0) { steps.Add(ev.Ms); written.Add(ev.Id); }
                text.Append(ev.Text);
                yield return ev;
            }
        }
        finally
        {
            if (written.Count > 0 && answer) _lastAnswer = written;
            else if (written.Count > 0) _lastCaption = written;
        }
    }

    /// <summary>
    /// Frees the session's caches, then hands the C heap's free pages back: a stream's prefills
    /// leave freed chunks in its threads' malloc arenas, which glibc keeps resident otherwise, so a
    /// process that opens and closes streams would keep every closed one's high-water mark.
    /// </summary>
    public void Dispose()
    {
        Release();
        NativeHeap.Trim();
    }

    /// <summary>The session's own tensors (its caches, any frames it keeps).</summary>
    protected virtual void Release() { }
}
