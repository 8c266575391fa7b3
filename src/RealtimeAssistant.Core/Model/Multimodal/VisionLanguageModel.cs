using OpenCvSharp;
using RealtimeAssistant.Model.Checkpoint;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// What an image is in its prompt: a still picture alone (the family's full image path: tiles,
/// anyres), a still among several in one prompt (families that tile a lone image take these whole,
/// as LLaVA-OneVision's processor does), or a frame of a stream.
/// </summary>
public enum ImageUse { Still, VideoFrame, OneOfSeveral }

/// <summary>An image after the family's preprocessing (resize, tiling, normalisation), ready for its vision tower.</summary>
public interface IPreparedImage : IDisposable { }

/// <summary>
/// One image as the decoder sees it: the run of tokens one image marker in a prompt expands to,
/// the visual features that fill that run's feature slots, and the positions of the run.
/// </summary>
public sealed class EncodedImage : IDisposable
{
    /// <summary>[N, D] visual tokens in the decoder's embedding space, on the model's device.</summary>
    public required Tensor Features { get; init; }
    /// <summary>The image's token run (wrappers, tile markers and a placeholder at each feature slot).</summary>
    public required int[] TokenIds { get; init; }
    /// <summary>Ascending indices into <see cref="TokenIds"/> that take the rows of <see cref="Features"/>, in order.</summary>
    public required int[] FeatureSlots { get; init; }
    /// <summary>
    /// Each token's position relative to the run's start. Null components: sequential (0, 1, …) for
    /// T, and equal to T for H and W. M-RoPE families give image tokens (t, row, col) offsets.
    /// </summary>
    public PositionIds? Positions { get; init; }
    /// <summary>Positions the run takes: the token after it sits at start + Advance (default: the run's length).</summary>
    public long? Advance { get; init; }
    /// <summary>The main visual grid (rows × columns of visual tokens), for the kept-token heatmap.</summary>
    public int GridH { get; init; }
    public int GridW { get; init; }
    /// <summary>For each feature row, its cell in the main grid (row-major), or −1 (a tile, a newline, a class token). Null: row i is cell i − (N − GridH·GridW).</summary>
    public int[]? GridCell { get; init; }

    public int Count => FeatureSlots.Length;
    public long Span => Advance ?? TokenIds.Length;

    /// <summary>The run's positions from <paramref name="start"/>.</summary>
    public PositionIds PositionsFrom(long start) => Positions is { } p ? p.Shift(start) : PositionIds.Range(start, TokenIds.Length);

    /// <summary>The main-grid cell of each feature row (−1: none).</summary>
    public int[] Cells()
    {
        if (GridCell is { } g) return g;
        int n = Count, offset = n - GridH * GridW;
        return Enumerable.Range(0, n).Select(i => i - offset >= 0 ? i - offset : -1).ToArray();
    }

    /// <summary>A copy with its own features (a session takes ownership of what it reads).</summary>
    public EncodedImage Clone() => new()
    {
        Features = Features.clone().DetachFromDisposeScope(), TokenIds = TokenIds, FeatureSlots = FeatureSlots, Positions = Positions,
        Advance = Advance, GridH = GridH, GridW = GridW, GridCell = GridCell,
    };

    public void Dispose() => Features.Dispose();
}

/// <summary>
/// A loaded vision-language checkpoint: its vision side (preprocessing, vision tower, connector),
/// its decoder, and how an image enters a prompt. Every family (LLaVA, Qwen2-VL, SmolVLM, …)
/// implements this; the engine, the captioner, the streaming session and the pruner use nothing else.
/// </summary>
public interface IVisionLanguageModel : IDisposable
{
    /// <summary>The checkpoint's model_type (llava, qwen2_vl, smolvlm, …).</summary>
    string ModelType { get; }
    /// <summary>The whole module tree (vision side and decoder), as the checkpoint names it.</summary>
    nn.Module Module { get; }
    /// <summary>The decoder with its head.</summary>
    LanguageModel Language { get; }
    TextConfig Text { get; }
    Device Device { get; }
    ScalarType DType { get; }
    /// <summary>The special token a prompt holds where an image goes; its id expands to <see cref="EncodedImage.TokenIds"/>.</summary>
    string ImageMarker { get; }
    /// <summary>How one image is written in a prompt with no chat template (the marker, with the family's wrappers if any).</summary>
    string ImageSnippet => ImageMarker;
    /// <summary>Text after each frame of a stream (the family's own video layout); null: the token that follows the image in the default prompt.</summary>
    string? FrameSeparator => null;
    /// <summary>CPU-side preprocessing and the upload: no vision compute.</summary>
    IPreparedImage Prepare(Mat bgr, ImageUse use);
    /// <summary>Vision tower and connector over prepared images (batched where their shapes allow), one result per image.</summary>
    IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images);
    /// <summary>The length of the token run this image's marker expands to (the server checks a request against the context before running it).</summary>
    int RunLength(Mat bgr, ImageUse use)
    {
        using var prepared = Prepare(bgr, use);
        var encoded = Encode(new[] { prepared });
        try { return encoded[0].TokenIds.Length; }
        finally { foreach (var e in encoded) e.Dispose(); }
    }
    /// <summary>Parameter count of the vision side and of the decoder (for logs and benches).</summary>
    (long Vision, long Decoder) ParameterCounts { get; }
}

/// <summary>
/// A family whose visual tokens follow the image's area (Qwen2-VL's smart_resize): a stream can read
/// a frame at fewer pixels, and so with fewer tokens through the vision tower and the decoder, to
/// hold a frame budget. Families that resize every image to one size do not implement it.
/// </summary>
public interface IPixelBoundedVision
{
    /// <summary>The pixel bound an image is read at unless a read asks for less (the processor's max_pixels, or --max-pixels).</summary>
    long MaxPixels { get; }
    /// <summary>The fewest pixels a stream's frame is read at when a frame budget lowers the bound, unless the schedule says otherwise.</summary>
    long LeastFramePixels { get; }
    /// <summary>The smallest bound the processor takes (a bound below it leaves a frame no whole block).</summary>
    long SmallestBound { get; }
    /// <summary>The visual tokens an image of this size becomes under the bound.</summary>
    int TokensAt(int height, int width, long maxPixels);
    /// <summary><see cref="IVisionLanguageModel.Prepare"/> with the image's area held to <paramref name="maxPixels"/> (at most <see cref="MaxPixels"/>).</summary>
    IPreparedImage Prepare(Mat bgr, ImageUse use, long maxPixels);
    /// <summary>
    /// The vision side's work per visual token in the governor's unit, decoder token-layers: the
    /// vision blocks' weights one token passes through over one decoder layer's.
    /// </summary>
    double VisionWorkPerToken { get; }
}

public static class VisionLanguageModelExtensions
{
    /// <summary>
    /// <see cref="IVisionLanguageModel.Prepare"/> at a pixel bound (null: the model's own). Only a
    /// family whose tokens follow the image's area (<see cref="IPixelBoundedVision"/>) takes one.
    /// </summary>
    public static IPreparedImage PrepareAt(this IVisionLanguageModel m, Mat bgr, ImageUse use, long? maxPixels) =>
        maxPixels is not { } bound ? m.Prepare(bgr, use)
        : m is IPixelBoundedVision v ? v.Prepare(bgr, use, bound)
        : throw new InvalidOperationException($"{m.ModelType} resizes every image to one size; it takes no pixel bound");

    /// <summary>Prepare and encode one image.</summary>
    public static EncodedImage EncodeOne(this IVisionLanguageModel m, Mat bgr, ImageUse use)
    {
        using var prepared = m.Prepare(bgr, use);
        return m.Encode(new[] { prepared })[0];
    }
}
