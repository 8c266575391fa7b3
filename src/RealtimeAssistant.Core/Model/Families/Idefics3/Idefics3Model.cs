using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model.Families.Idefics3;

/// <summary>
/// Idefics3Model / SmolVLMModel with the head: vision_model (SigLIP with bucketed positions) →
/// post_layernorm → connector (pixel shuffle, then a bias-free projection) → the LLaMA decoder.
/// Module names follow HF's tree; <see cref="ToModelName"/> maps the checkpoint's model.* prefixes.
/// </summary>
public sealed class Idefics3Model : nn.Module
{
    public readonly Idefics3VisionTransformer vision_model;
    public readonly Idefics3Connector connector;
    public readonly LanguageModel language_model;
    public Idefics3Config Config { get; }

    public Idefics3Model(Idefics3Config cfg, int tileSize, TensorSpec spec) : base(nameof(Idefics3Model))
    {
        Config = cfg;
        vision_model = new Idefics3VisionTransformer(cfg.Vision, tileSize, spec);
        connector = new Idefics3Connector(cfg, spec);
        language_model = new LanguageModel(cfg.Text, spec);
        RegisterComponents();
    }

    /// <summary>Tiles [N, 3, side, side] → visual tokens in the decoder's space [N, (side/patch/scale)², D].</summary>
    public Tensor EncodeTiles(Tensor pixels) => connector.forward(vision_model.forward(pixels));

    static readonly (string Checkpoint, string Model)[] Prefixes =
    {
        ("model.text_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
        ("model.vision_model.", "vision_model."),
        ("model.connector.", "connector."),
    };

    public static string ToModelName(string checkpointName)
    {
        foreach (var (c, m) in Prefixes)
            if (checkpointName.StartsWith(c, StringComparison.Ordinal)) return m + checkpointName[c.Length..];
        return checkpointName;
    }

    public static string ToCheckpointName(string modelName)
    {
        foreach (var (c, m) in Prefixes)
            if (modelName.StartsWith(m, StringComparison.Ordinal)) return c + modelName[m.Length..];
        return modelName;
    }

    /// <summary>Tensors a checkpoint may carry that this model has no use for.</summary>
    public bool IsIgnorable(string modelName) =>
        modelName.EndsWith(".position_ids", StringComparison.Ordinal)
        || modelName.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
        || (Config.Text.TieWordEmbeddings && modelName == "language_model.lm_head.weight");
}

/// <summary>
/// Idefics3VisionTransformer: patch embedding, position embeddings by bucket, SigLIP encoder
/// layers, post_layernorm. A tile has (side/patch)² patches; HF maps each patch's fractional
/// coordinate to one of the image_size/patch position buckets (so a tile of another size still
/// finds its positions). The processor never pads a tile, so every patch is real and no
/// attention mask is needed.
/// </summary>
public sealed class Idefics3VisionTransformer : nn.Module<Tensor, Tensor>
{
    public readonly Idefics3VisionEmbeddings embeddings;
    public readonly VisionEncoder encoder;
    public readonly LayerNorm post_layernorm;

    public Idefics3VisionTransformer(VisionConfig c, int tileSize, TensorSpec spec) : base(nameof(Idefics3VisionTransformer))
    {
        embeddings = new Idefics3VisionEmbeddings(c, tileSize, spec);
        encoder = new VisionEncoder(c, spec);
        post_layernorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, spec);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        var h = embeddings.forward(pixels);
        foreach (var layer in encoder.layers) h = ((VisionEncoderLayer)layer).forward(h);
        return post_layernorm.forward(h);
    }
}

public sealed class Idefics3VisionEmbeddings : nn.Module<Tensor, Tensor>
{
    public readonly Conv patch_embedding;
    public readonly Embedding position_embedding;
    readonly long[] _positionIds;
    readonly int _grid;
    PositionTable? _positions; // held in a record so RegisterComponents does not make it a buffer

    sealed record PositionTable(Tensor Ids);

    public Idefics3VisionEmbeddings(VisionConfig c, int tileSize, TensorSpec spec) : base(nameof(Idefics3VisionEmbeddings))
    {
        if (tileSize % c.PatchSize != 0)
            throw new UserError($"max_image_size {tileSize} is not a multiple of the vision patch_size {c.PatchSize}");
        patch_embedding = new Conv(c, spec);
        position_embedding = new Embedding(c.NumPatches, c.HiddenSize, spec);
        _grid = tileSize / c.PatchSize;
        _positionIds = BucketPositions(_grid, _grid, c.PatchesPerSide);
        RegisterComponents();
    }

    /// <summary>Patches per tile side.</summary>
    public int Grid => _grid;

    /// <summary>
    /// HF's bucketed position ids for an h×w patch grid over <paramref name="perSide"/> buckets:
    /// fractional coordinates arange(0, 1 − 1e-6, 1/n) with the step rounded to float32 (1 / an
    /// int64 count), bucketised right-closed against arange(1/perSide, 1, 1/perSide); each arange
    /// value start + i·step in double, then float32, as torch computes it. Usually the identity;
    /// a grid size whose reciprocal is not exact in float32 can shift a bucket, as it does in HF.
    /// </summary>
    public static long[] BucketPositions(int h, int w, int perSide)
    {
        double bStep = 1.0 / perSide;
        int bCount = (int)Math.Ceiling((1.0 - bStep) / bStep);
        var bounds = new float[bCount];
        for (int i = 0; i < bCount; i++) bounds[i] = (float)(bStep + i * bStep);
        long[] Buckets(int n)
        {
            double step = 1f / n;
            int count = (int)Math.Ceiling((1 - 1e-6) / step);
            var r = new long[count];
            for (int i = 0; i < count; i++)
            {
                float x = (float)(i * step);
                r[i] = bounds.Count(b => b <= x);
            }
            return r;
        }
        var bh = Buckets(h);
        var bw = Buckets(w);
        var ids = new long[bh.Length * bw.Length];
        for (int i = 0; i < bh.Length; i++)
            for (int j = 0; j < bw.Length; j++) ids[i * bw.Length + j] = bh[i] * perSide + bw[j];
        return ids;
    }

    public override Tensor forward(Tensor pixels)
    {
        if (pixels.size(2) != _grid * patch_embedding.Patch || pixels.size(3) != _grid * patch_embedding.Patch)
            throw new ArgumentException($"tiles must be {_grid * patch_embedding.Patch} px square, got {pixels.size(2)}×{pixels.size(3)}");
        var device = position_embedding.weight.device;
        if (_positions is null || _positions.Ids.device != device)
            _positions = new PositionTable(torch.tensor(_positionIds, device: device).DetachFromDisposeScope());
        var x = patch_embedding.forward(pixels).flatten(2).transpose(1, 2); // [N, g·g, D]
        return x.Plus(position_embedding.weight.index_select(0, _positions.Ids).unsqueeze(0));
    }

    /// <summary>The patch embedding: a stride-patch convolution with a bias (SigLIP's).</summary>
    public sealed class Conv : nn.Module<Tensor, Tensor>
    {
        public readonly Parameter weight, bias;
        public long Patch { get; }
        public Conv(VisionConfig c, TensorSpec spec) : base(nameof(Conv))
        {
            weight = spec.Param(c.HiddenSize, c.NumChannels, c.PatchSize, c.PatchSize);
            bias = spec.Param(c.HiddenSize);
            Patch = c.PatchSize;
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => F.conv2d(x, weight, bias, strides: new[] { Patch, Patch });
    }
}

/// <summary>
/// Idefics3Connector: pixel shuffle (each scale×scale block of neighbouring patches becomes one
/// token with scale² times the channels, in HF's order) and modality_projection.proj (no bias).
/// </summary>
public sealed class Idefics3Connector : nn.Module<Tensor, Tensor>
{
    public readonly Projection modality_projection;
    readonly int _scale;

    public Idefics3Connector(Idefics3Config c, TensorSpec spec) : base(nameof(Idefics3Connector))
    {
        _scale = c.ScaleFactor;
        modality_projection = new Projection(c.Vision.HiddenSize * c.ScaleFactor * c.ScaleFactor, c.Text.HiddenSize, spec);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => modality_projection.forward(PixelShuffle(x, _scale));

    /// <summary>[B, side², D] → [B, (side/s)², D·s²], the view/permute sequence HF's connector uses.</summary>
    public static Tensor PixelShuffle(Tensor x, int s)
    {
        long b = x.size(0), seq = x.size(1), d = x.size(2);
        long side = (long)Math.Round(Math.Sqrt(seq));
        if (side * side != seq || side % s != 0)
            throw new ArgumentException($"pixel shuffle needs a square grid divisible by {s}, got {seq} tokens");
        x = x.view(b, side, side / s, d * s);                 // s neighbouring columns side by side
        x = x.permute(0, 2, 1, 3).reshape(b, side / s, side / s, d * s * s); // then s neighbouring rows
        return x.permute(0, 2, 1, 3).reshape(b, seq / (s * s), d * s * s);
    }

    public sealed class Projection : nn.Module<Tensor, Tensor>
    {
        public readonly Linear proj;
        public Projection(long inFeatures, long outFeatures, TensorSpec spec) : base(nameof(Projection))
        {
            proj = new Linear(inFeatures, outFeatures, false, spec);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => proj.forward(x);
    }
}
