using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Families.Idefics3;

/// <summary>
/// Idefics3 and SmolVLM/SmolVLM2 (model_type idefics3, smolvlm). A still image is split into
/// tiles plus the global image, and its marker expands to HF's layout:
/// <c>&lt;fake_token_around_image&gt;&lt;row_r_col_c&gt;&lt;image&gt;×N</c> per tile, a newline after each
/// row, then <c>\n&lt;fake_token_around_image&gt;&lt;global-img&gt;&lt;image&gt;×N&lt;fake_token_around_image&gt;</c>
/// (N = image_seq_len); an image that fits one tile, and every video frame, is the global run alone.
/// Positions are ordinary (sequential), so streaming and pruning need nothing family-specific.
/// </summary>
public sealed class Idefics3Family : IVisionLanguageModel
{
    const string FakeToken = "<fake_token_around_image>", GlobalToken = "<global-img>";

    readonly Idefics3ImageProcessor _processor;
    readonly TextTokenizer _tokenizer;
    readonly Dictionary<(int Rows, int Cols), (int[] Ids, int[] Slots)> _layouts = new();
    public Idefics3Model Model { get; }
    public Idefics3Config Config => Model.Config;
    public Idefics3ProcessorConfig Processor => _processor.Config;
    public string ModelType => Config.ModelType;
    public LanguageModel Language => Model.language_model;
    public TextConfig Text => Config.Text;
    public Device Device { get; }
    public ScalarType DType { get; }
    public string ImageMarker { get; }
    /// <summary>SmolVLM2's video prompt ends each frame with a newline ("Frame from 00:01:&lt;image&gt;\n…"); a stream's frames do too.</summary>
    public string? FrameSeparator => "\n";
    /// <summary>Visual tokens per tile side after the pixel shuffle.</summary>
    public int TokenGrid { get; }

    Idefics3Family(Idefics3Model model, Idefics3ImageProcessor processor, TextTokenizer tokenizer, string marker, Device device, ScalarType dtype)
    {
        Model = model;
        _processor = processor;
        _tokenizer = tokenizer;
        ImageMarker = marker;
        Device = device;
        DType = dtype;
        TokenGrid = model.vision_model.embeddings.Grid / model.Config.ScaleFactor;
    }

    public static IVisionLanguageModel Load(FamilyLoadContext c)
    {
        var source = Path.Combine(c.Directory, "config.json");
        var cfg = Idefics3Config.Parse(c.Config, source);
        var pre = Idefics3ProcessorConfig.Load(c.Directory, cfg.ModelType);
        int m = pre.TileSize, patch = cfg.Vision.PatchSize, s = cfg.ScaleFactor;
        if (m % patch != 0 || (m / patch) % s != 0)
            throw new UserError($"{c.Directory}: a {m} px tile (max_image_size) makes {m / (double)patch} patches a side, which scale_factor {s} does not divide");
        int perTile = (m / patch / s) * (m / patch / s);
        if (perTile != pre.ImageSeqLen)
            throw new UserError($"{c.Directory}: image_seq_len {pre.ImageSeqLen} (processor_config.json) does not match the {perTile} tokens a {m} px tile gives (patch {patch}, scale_factor {s})");
        var marker = c.Tokenizer.IdToTokenOrNull(cfg.ImageTokenId)
            ?? throw new UserError($"{source}: image_token_id {cfg.ImageTokenId} is not in the tokenizer");
        foreach (var special in new[] { FakeToken, GlobalToken })
            if (c.Tokenizer.TokenToId(special) is null) throw new UserError($"{c.Directory}: the tokenizer has no {special} token");
        var model = new Idefics3Model(cfg, m, c.Spec);
        try
        {
            CheckpointLoader.Load(model, c.Weights, Idefics3Model.ToModelName, model.IsIgnorable, c.Compact);
            model.eval();
            return new Idefics3Family(model, new Idefics3ImageProcessor(pre, c.Spec.Device), c.Tokenizer, marker, c.Spec.Device, c.Spec.DType);
        }
        catch { model.Dispose(); throw; }
    }

    sealed class Prepared(Tensor pixels, int rows, int cols) : IPreparedImage
    {
        public Tensor Pixels { get; } = pixels;
        public int Rows { get; } = rows;
        public int Cols { get; } = cols;
        public void Dispose() => Pixels.Dispose();
    }

    /// <summary>
    /// A still image takes HF's image path (tiles plus the global image). A video frame takes
    /// SmolVLM2's video path: one global image, no tiles. That is how the model saw video in
    /// training, and it keeps a frame at image_seq_len tokens (64 for SmolVLM2) instead of up to
    /// 17× that, which is what lets a stream read frames in real time.
    /// </summary>
    public IPreparedImage Prepare(Mat bgr, ImageUse use)
    {
        using var tiles = use == ImageUse.VideoFrame ? _processor.Frame(bgr) : _processor.Still(bgr);
        using var _ = torch.inference_mode();
        return new Prepared(_processor.ToTensor(tiles, DType), tiles.Rows, tiles.Cols);
    }

    /// <summary>The run's length from the image's size alone (no resize, no vision).</summary>
    public int RunLength(Mat bgr, ImageUse use)
    {
        if (bgr.Empty()) throw new UserError("empty image");
        var (rows, cols) = use == ImageUse.VideoFrame ? (0, 0) : _processor.StillGrid(bgr.Rows, bgr.Cols);
        return Layout(rows, cols).Ids.Length;
    }

    public IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.inference_mode();
        var prepared = images.Cast<Prepared>().ToList();
        var pixels = prepared.Count == 1 ? prepared[0].Pixels : torch.cat(prepared.Select(p => p.Pixels).ToArray(), 0);
        var feats = Model.EncodeTiles(pixels); // [tiles, N, D], every image's tiles in one batch
        var result = new List<EncodedImage>(prepared.Count);
        long at = 0;
        foreach (var p in prepared)
        {
            long n = p.Pixels.size(0);
            var rows = feats.narrow(0, at, n).reshape(-1, feats.size(2));
            at += n;
            var (ids, slots) = Layout(p.Rows, p.Cols);
            if (slots.Length != rows.size(0))
                throw new InvalidOperationException($"layout has {slots.Length} image slots for {rows.size(0)} visual tokens");
            int g = TokenGrid;
            bool tiled = p.Rows > 0;
            result.Add(new EncodedImage
            {
                Features = rows.DetachFromDisposeScope(), TokenIds = ids, FeatureSlots = slots,
                GridH = tiled ? p.Rows * g : g, GridW = tiled ? p.Cols * g : g, GridCell = tiled ? MosaicCells(p.Rows, p.Cols, g) : null,
            });
        }
        return result;
    }

    /// <summary>
    /// Tiled images: the heatmap grid is the mosaic of tiles (each tile's g×g tokens where the tile
    /// sits in the image); the global image's rows have no cell there.
    /// </summary>
    static int[] MosaicCells(int rows, int cols, int g)
    {
        var cells = new int[(rows * cols + 1) * g * g];
        int k = 0, width = cols * g;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                for (int i = 0; i < g; i++)
                    for (int j = 0; j < g; j++) cells[k++] = (r * g + i) * width + c * g + j;
        while (k < cells.Length) cells[k++] = -1;
        return cells;
    }

    /// <summary>The token run one marker expands to for a rows×cols split (0×0: the global image alone), and its image-token slots.</summary>
    public (int[] Ids, int[] Slots) Layout(int rows, int cols)
    {
        lock (_layouts)
        {
            if (_layouts.TryGetValue((rows, cols), out var cached)) return cached;
            // Tokenised as text: the newlines between runs become whatever the tokenizer makes of them, as in HF's processor.
            var ids = _tokenizer.Encode(LayoutText(rows, cols, Processor.ImageSeqLen, ImageMarker), addSpecialTokens: false).ToArray();
            var slots = Enumerable.Range(0, ids.Length).Where(i => ids[i] == Config.ImageTokenId).ToArray();
            return _layouts[(rows, cols)] = (ids, slots);
        }
    }

    /// <summary>HF's get_image_prompt_string: the text one image marker becomes.</summary>
    public static string LayoutText(int rows, int cols, int seqLen, string imageToken)
    {
        var image = string.Concat(Enumerable.Repeat(imageToken, seqLen));
        var sb = new StringBuilder();
        if (rows > 0 || cols > 0)
        {
            for (int r = 1; r <= rows; r++)
            {
                for (int c = 1; c <= cols; c++) sb.Append(FakeToken).Append($"<row_{r}_col_{c}>").Append(image);
                sb.Append('\n');
            }
            sb.Append('\n');
        }
        return sb.Append(FakeToken).Append(GlobalToken).Append(image).Append(FakeToken).ToString();
    }

    public nn.Module Module => Model;

    public (long Vision, long Decoder) ParameterCounts =>
        (Compaction.Parameters(Model.vision_model, Model.connector), Compaction.Parameters(Model.language_model));

    public void Dispose() { _processor.Dispose(); Model.Dispose(); }
}
