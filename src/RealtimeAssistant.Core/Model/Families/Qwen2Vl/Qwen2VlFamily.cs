using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Families.Qwen2Vl;

/// <summary>
/// Qwen2-VL and Qwen2.5-VL (model_type qwen2_vl, qwen2_5_vl). An image is written
/// <c>&lt;|vision_start|&gt;&lt;|image_pad|&gt;&lt;|vision_end|&gt;</c>; its <c>&lt;|image_pad|&gt;</c>
/// expands to one pad per merged token, and those tokens take M-RoPE positions as HF's
/// get_rope_index gives them: from the block's start p, (p + t, p + row, p + column) on the merged
/// grid, and the text after it resumes at p + max + 1 (<see cref="EncodedImage.Advance"/>). A
/// stream's frames are images, each its own vision block (docs/ARCHITECTURE.md: GPE with M-RoPE).
/// </summary>
public sealed class Qwen2VlFamily : IVisionLanguageModel, IPixelBoundedVision
{
    readonly Qwen2VlImageProcessor _pre;
    public Qwen2VlModel Model { get; }
    public Qwen2VlConfig Config => Model.Config;
    public string ModelType => Config.ModelType;
    public LanguageModel Language => Model.language_model;
    public TextConfig Text => Config.Text;
    public Device Device { get; }
    public ScalarType DType { get; }
    /// <summary>&lt;|image_pad|&gt;: the token one image's run replaces.</summary>
    public string ImageMarker { get; }
    /// <summary>&lt;|vision_start|&gt;&lt;|image_pad|&gt;&lt;|vision_end|&gt;, as the chat template writes an image.</summary>
    public string ImageSnippet { get; }
    /// <summary>&lt;|video_pad|&gt;: the token a video's run replaces.</summary>
    public string VideoMarker { get; }
    public string VideoSnippet { get; }
    public Qwen2VlImageProcessor Processor => _pre;

    Qwen2VlFamily(Qwen2VlModel model, Qwen2VlProcessorConfig pre, (string Start, string Image, string Video, string End) tokens, Device device, ScalarType dtype)
    {
        Model = model;
        Device = device; DType = dtype;
        _pre = new Qwen2VlImageProcessor(pre, device, dtype);
        ImageMarker = tokens.Image;
        VideoMarker = tokens.Video;
        ImageSnippet = tokens.Start + tokens.Image + tokens.End;
        VideoSnippet = tokens.Start + tokens.Video + tokens.End;
    }

    public static IVisionLanguageModel Load(FamilyLoadContext c)
    {
        var source = Path.Combine(c.Directory, "config.json");
        var cfg = Qwen2VlConfig.Parse(c.Config, source);
        var pre = Qwen2VlProcessorConfig.Load(c.Directory, cfg.Vision);
        if (c.MaxPixels is { } max) pre = pre.WithMaxPixels(max);
        string Token(int id, string key) => c.Tokenizer.IdToTokenOrNull(id)
            ?? throw new UserError($"{source}: {key} {id} is not in the tokenizer");
        var tokens = (Token(cfg.VisionStartTokenId, "vision_start_token_id"), Token(cfg.ImageTokenId, "image_token_id"),
            Token(cfg.VideoTokenId, "video_token_id"), Token(cfg.VisionEndTokenId, "vision_end_token_id"));
        CheckSizes(cfg, c.Weights, source);
        var model = new Qwen2VlModel(cfg, c.Spec);
        try
        {
            CheckpointLoader.Load(model, c.Weights, Qwen2VlModel.Names.ToModel, m => Qwen2VlModel.Names.IsIgnorable(m, cfg), c.Compact);
            model.eval();
            return new Qwen2VlFamily(model, pre, tokens, c.Spec.Device, c.Spec.DType);
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>
    /// The config's depths and widths against the checkpoint's tensors, before any parameter is
    /// allocated: a config that does not describe these weights is a one-line error, not an
    /// allocation of whatever sizes it names.
    /// </summary>
    static void CheckSizes(Qwen2VlConfig cfg, Checkpoint.SafeTensorsReader weights, string source)
    {
        var names = weights.Tensors.Keys.Select(Qwen2VlModel.Names.ToModel).ToList();
        static int Count(IEnumerable<string> names, string prefix) => names
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Select(n => n[prefix.Length..].Split('.')[0]).Select(x => int.TryParse(x, out var i) ? i + 1 : 0).DefaultIfEmpty(0).Max();
        int layers = Count(names, "language_model.model.layers."), blocks = Count(names, "visual.blocks.");
        if (layers != cfg.Text.NumHiddenLayers || blocks != cfg.Vision.Depth)
            throw new UserError($"{source}: the config describes {cfg.Text.NumHiddenLayers} decoder layers and {cfg.Vision.Depth} vision blocks, the checkpoint holds {layers} and {blocks}");
        void Shape(string model, long[] expected)
        {
            var name = weights.Tensors.Keys.FirstOrDefault(k => Qwen2VlModel.Names.ToModel(k) == model);
            if (name is not null && !weights.Tensors[name].Shape.SequenceEqual(expected))
                throw new UserError($"{source}: {name} is [{string.Join(", ", weights.Tensors[name].Shape)}] in the checkpoint, the config gives [{string.Join(", ", expected)}]");
        }
        var v = cfg.Vision;
        Shape("language_model.model.embed_tokens.weight", new long[] { cfg.Text.VocabSize, cfg.Text.HiddenSize });
        Shape("visual.patch_embed.proj.weight", new long[] { v.EmbedDim, v.InChannels, v.TemporalPatchSize, v.PatchSize, v.PatchSize });
        Shape("visual.blocks.0.attn.qkv.weight", new long[] { 3L * v.EmbedDim, v.EmbedDim });
        Shape("language_model.model.layers.0.mlp.gate_proj.weight", new long[] { cfg.Text.IntermediateSize, cfg.Text.HiddenSize });
        Shape(v.IsQwen25 ? "visual.blocks.0.mlp.gate_proj.weight" : "visual.blocks.0.mlp.fc1.weight", new long[] { v.MlpDim, v.EmbedDim });
        Shape("visual.merger.mlp.2.weight", new long[] { v.OutDim, (long)v.EmbedDim * v.MergeUnit });
    }

    /// <summary>Patch rows and grid of one image or clip; <see cref="SecondsPerGrid"/> is set for a clip (Qwen2.5-VL's temporal positions).</summary>
    public sealed class Prepared(Tensor rows, GridThw grid, double? secondsPerGrid) : IPreparedImage
    {
        public Tensor Rows { get; } = rows;
        public GridThw Grid { get; } = grid;
        public double? SecondsPerGrid { get; } = secondsPerGrid;
        public bool IsVideo => SecondsPerGrid is not null;
        public void Dispose() => Rows.Dispose();
    }

    /// <summary>
    /// A still image and a stream's frame take the same path: HF's image path, the frame repeated to
    /// temporal_patch_size (a video's frames are paired instead: <see cref="PrepareVideo"/>).
    /// </summary>
    public IPreparedImage Prepare(Mat bgr, ImageUse use) => Prepare(bgr, use, _pre.Config.MaxPixels);

    public IPreparedImage Prepare(Mat bgr, ImageUse use, long maxPixels)
    {
        using var _ = torch.inference_mode();
        var (rows, grid) = _pre.Process(new[] { bgr }, maxPixels);
        return new Prepared(rows, grid, null);
    }

    public long MaxPixels => _pre.Config.MaxPixels;

    /// <summary>
    /// The least qwen-vl-utils (Qwen's own video loader) reads a video frame at, 128 merged tokens
    /// (VIDEO_MIN_PIXELS = 128·28·28), or the processor's min_pixels where that is more; never
    /// above <see cref="MaxPixels"/>.
    /// </summary>
    public long LeastFramePixels => Math.Min(MaxPixels, Math.Max(_pre.Config.MinPixels, 128L * _pre.Config.Factor * _pre.Config.Factor));

    public long SmallestBound => _pre.Config.SmallestBound;

    public int TokensAt(int height, int width, long maxPixels)
    {
        var (h, w) = _pre.TargetSize(height, width, maxPixels);
        return h / _pre.Config.Factor * (w / _pre.Config.Factor);
    }

    /// <summary>
    /// A merged token is merge² patches, each through every vision block; a block's and a decoder
    /// layer's weights (attention and MLP) are what a row multiplies through. Attention's quadratic
    /// part is left out of both.
    /// </summary>
    public double VisionWorkPerToken
    {
        get
        {
            var v = Config.Vision;
            var t = Config.Text;
            double block = 4.0 * v.EmbedDim * v.EmbedDim + (v.IsQwen25 ? 3.0 : 2.0) * v.EmbedDim * v.MlpDim;
            double layer = 2.0 * t.HiddenSize * t.NumAttentionHeads * t.HeadDim + 2.0 * t.HiddenSize * t.NumKeyValueHeads * t.HeadDim + 3.0 * t.HiddenSize * t.IntermediateSize;
            return v.MergeUnit * v.Depth * block / layer;
        }
    }

    /// <summary>
    /// A clip: frames paired into temporal patches (the last repeated when odd), encoded as one
    /// video whose run replaces <see cref="VideoMarker"/>. <paramref name="fps"/> is the sampled
    /// frames' rate: Qwen2.5-VL spaces temporal positions by temporal_patch_size / fps seconds ×
    /// tokens_per_second (HF's default fps is 2).
    /// </summary>
    public Prepared PrepareVideo(IReadOnlyList<Mat> frames, double fps = 2.0)
    {
        if (!(fps > 0) || double.IsInfinity(fps)) throw new UserError($"video fps must be positive, got {fps}");
        using var _ = torch.inference_mode();
        var (rows, grid) = _pre.Process(frames);
        return new Prepared(rows, grid, Config.Vision.TemporalPatchSize / fps);
    }

    public IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images)
    {
        if (images.Count == 0) return Array.Empty<EncodedImage>();
        var prepared = images.Select(i => i as Prepared ?? throw new ArgumentException("not an image prepared by this model")).ToList();
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var rows = prepared.Count == 1 ? prepared[0].Rows : torch.cat(prepared.Select(p => p.Rows).ToArray(), 0);
        var merged = Model.visual.Forward(rows, prepared.Select(p => p.Grid).ToList()); // [Σ tokens, D]
        var result = new List<EncodedImage>(prepared.Count);
        long at = 0;
        foreach (var p in prepared)
        {
            int n = p.Grid.Patches / Config.Vision.MergeUnit;
            result.Add(Run(merged.narrow(0, at, n).DetachFromDisposeScope(), p.Grid, p.SecondsPerGrid));
            at += n;
        }
        return result;
    }

    /// <summary>
    /// One image's (or clip's) token run and its M-RoPE offsets, per HF's get_rope_index: token
    /// (t, row, col) of the merged grid sits at (τ(t), row, col) from the block's start, where τ(t) = t
    /// (Qwen2-VL), or t · seconds_per_grid · tokens_per_second truncated (Qwen2.5-VL clips; images: 0).
    /// The text after the run starts at 1 + the largest offset.
    /// </summary>
    EncodedImage Run(Tensor features, GridThw grid, double? secondsPerGrid)
    {
        int m = Config.Vision.SpatialMergeSize, gh = grid.H / m, gw = grid.W / m, cells = gh * gw, n = grid.T * cells;
        var (t, h, w) = (new long[n], new long[n], new long[n]);
        for (int i = 0; i < n; i++)
        {
            int ti = i / cells, cell = i % cells;
            t[i] = TemporalOffset(ti, secondsPerGrid);
            h[i] = cell / gw;
            w[i] = cell % gw;
        }
        long advance = 1 + Math.Max(t.Max(), Math.Max(gh - 1, gw - 1));
        int marker = secondsPerGrid is null ? Config.ImageTokenId : Config.VideoTokenId;
        return new EncodedImage
        {
            Features = features, TokenIds = Enumerable.Repeat(marker, n).ToArray(), FeatureSlots = Enumerable.Range(0, n).ToArray(),
            Positions = new PositionIds(t, h, w), Advance = advance, GridH = gh, GridW = gw,
            GridCell = Enumerable.Range(0, n).Select(i => i % cells).ToArray(),
        };
    }

    long TemporalOffset(int t, double? secondsPerGrid)
    {
        if (!Config.IsQwen25) return t;
        if (secondsPerGrid is not { } spg) return 0; // images: second_per_grid_t = 0
        // HF multiplies in float32 (the processor's second_per_grid_ts tensor) and truncates.
        float time = (float)t * (float)spg;
        time *= (float)Config.Vision.TokensPerSecond;
        return (long)time;
    }

    public nn.Module Module => Model;

    public (long Vision, long Decoder) ParameterCounts =>
        (Compaction.Parameters(Model.visual), Compaction.Parameters(Model.language_model));

    public void Dispose() { _pre.Dispose(); Model.Dispose(); }
}
