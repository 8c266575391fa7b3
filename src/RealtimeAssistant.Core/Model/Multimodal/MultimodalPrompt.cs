using RealtimeAssistant.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// A token block with images spliced in: each image marker id becomes its image's token run, the
/// positions follow the family's rules (M-RoPE image blocks take their own advance), and the
/// visual spans say where the pruner finds each image's tokens.
/// </summary>
public sealed class MultimodalPrompt
{
    public required long[] Ids { get; init; }
    public required PositionIds Positions { get; init; }
    /// <summary>Indices into <see cref="Ids"/> filled by image features, all images in order.</summary>
    public required long[] FeatureSlots { get; init; }
    /// <summary>Runs of feature slots; Frame = the image's index in the block.</summary>
    public required IReadOnlyList<VisualSpan> Spans { get; init; }
    public required IReadOnlyList<EncodedImage> Images { get; init; }
    /// <summary>The position after the block.</summary>
    public required long NextPosition { get; init; }
    public int Length => Ids.Length;

    /// <summary>
    /// Splices <paramref name="images"/> into <paramref name="ids"/> at each occurrence of
    /// <paramref name="markerId"/> (one image per marker, in order), counting positions from <paramref name="start"/>.
    /// </summary>
    public static MultimodalPrompt Build(IReadOnlyList<int> ids, int markerId, IReadOnlyList<EncodedImage> images, long start = 0)
    {
        int markers = ids.Count(i => i == markerId);
        if (markers != images.Count)
            throw new UserError($"the prompt has {markers} image markers for {images.Count} images");
        var outIds = new List<long>(ids.Count + images.Sum(i => i.TokenIds.Length));
        var parts = new List<PositionIds>();
        var slots = new List<long>();
        var spans = new List<VisualSpan>();
        long pos = start;
        int image = 0, textFrom = -1;
        void FlushText(int upTo)
        {
            if (textFrom < 0) return;
            int n = upTo - textFrom;
            parts.Add(PositionIds.Range(pos, n));
            pos += n;
            textFrom = -1;
        }
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] != markerId)
            {
                if (textFrom < 0) textFrom = outIds.Count;
                outIds.Add(ids[i]);
                continue;
            }
            FlushText(outIds.Count);
            var img = images[image];
            int at = outIds.Count;
            outIds.AddRange(img.TokenIds.Select(t => (long)t));
            parts.Add(img.PositionsFrom(pos));
            pos += img.Span;
            // Consecutive feature slots form one span (tiles separated by markers make several).
            for (int s = 0; s < img.FeatureSlots.Length;)
            {
                int run = 1;
                while (s + run < img.FeatureSlots.Length && img.FeatureSlots[s + run] == img.FeatureSlots[s] + run) run++;
                spans.Add(new VisualSpan(at + img.FeatureSlots[s], run, image));
                s += run;
            }
            slots.AddRange(img.FeatureSlots.Select(s => (long)(at + s)));
            image++;
        }
        FlushText(outIds.Count);
        return new MultimodalPrompt
        {
            Ids = outIds.ToArray(), Positions = parts.Count == 0 ? new PositionIds(Array.Empty<long>()) : PositionIds.Concat(parts.ToArray()),
            FeatureSlots = slots.ToArray(), Spans = spans, Images = images, NextPosition = pos,
        };
    }

    /// <summary>The block's input embeddings [1, T, D]: token embeddings with the feature slots replaced by the images' features.</summary>
    public Tensor Embed(LanguageModel lm)
    {
        using var scope = torch.NewDisposeScope();
        var table = lm.model.embed_tokens;
        var device = table.weight.device;
        var ids = torch.tensor(Ids, device: device).view(1, -1);
        if (FeatureSlots.Length == 0) return table.forward(ids).MoveToOuterDisposeScope();
        // Only the slots are replaced; a placeholder id may lie outside the embedding table.
        var idx = torch.tensor(FeatureSlots, device: device);
        var embeds = table.forward(ids.index_fill(1, idx, Rooted.Zero));
        var feats = Images.Count == 1 ? Images[0].Features : torch.cat(Images.Select(i => i.Features).ToArray(), 0);
        embeds = embeds.index_copy(1, idx, feats.to_type(embeds.dtype).unsqueeze(0));
        return embeds.MoveToOuterDisposeScope();
    }
}
