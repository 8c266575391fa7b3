using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// LlavaForConditionalGeneration: vision tower → projector → decoder. Module names are the
/// llava-hf (first generation) names; <see cref="CheckpointNames"/> maps the newer generation.
/// </summary>
public sealed class LlavaModel : nn.Module
{
    public readonly VisionTower vision_tower;
    public readonly Projector multi_modal_projector;
    public readonly LanguageModel language_model;
    public LlavaConfig Config { get; }

    public LlavaModel(LlavaConfig cfg, TensorSpec spec) : base(nameof(LlavaModel))
    {
        Config = cfg;
        vision_tower = new VisionTower(cfg, spec);
        multi_modal_projector = new Projector(cfg, spec);
        language_model = new LanguageModel(cfg.Text, spec);
        RegisterComponents();
    }

    public DecoderModel Decoder => language_model.model;

    /// <summary>pixels [B,3,H,W] → visual tokens in the decoder's space [B, N, D].</summary>
    public Tensor EncodeImages(Tensor pixels) => multi_modal_projector.forward(vision_tower.forward(pixels));

    /// <summary>
    /// Token embeddings for ids [B, T] with the image-token slots filled, in order, by
    /// <paramref name="imageFeatures"/> [B, slots, D]. Image slots sit at the same places in every row.
    /// </summary>
    public Tensor Embed(Tensor ids, Tensor? imageFeatures, long[] imageSlots)
    {
        using var scope = torch.NewDisposeScope();
        if (imageSlots.Length == 0) return language_model.model.embed_tokens.forward(ids).MoveToOuterDisposeScope();
        if (imageFeatures is null || imageFeatures.size(1) != imageSlots.Length)
            throw new UserError($"the prompt has {imageSlots.Length} image-token slots but {imageFeatures?.size(1) ?? 0} image features were given");
        // Only the slots are replaced; the image token id may lie outside the embedding table.
        var idx = torch.tensor(imageSlots, device: ids.device);
        var embeds = language_model.model.embed_tokens.forward(ids.index_fill(1, idx, Rooted.Zero));
        embeds = embeds.index_copy(1, idx, imageFeatures.to_type(embeds.dtype));
        return embeds.MoveToOuterDisposeScope();
    }

    /// <summary>Expands each single image token to the image's feature-token count (as the HF processor does).</summary>
    public List<int> ExpandImageTokens(IReadOnlyList<int> ids)
    {
        var n = Config.ImageTokens;
        var result = new List<int>(ids.Count + n);
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] != Config.ImageTokenIndex) { result.Add(ids[i]); continue; }
            int run = 0;
            while (i + run < ids.Count && ids[i + run] == Config.ImageTokenIndex) run++;
            // Already expanded (N in a row) stays as is; a lone marker becomes N slots.
            var count = run % n == 0 ? run : n * run;
            for (int k = 0; k < count; k++) result.Add(Config.ImageTokenIndex);
            i += run - 1;
        }
        return result;
    }
}

/// <summary>
/// The two llava-hf tensor-naming generations. Old: language_model.model.layers.N…,
/// vision_tower.…, multi_modal_projector.…, (image_newline,) language_model.lm_head. New (transformers ≥ 4.52):
/// model.language_model.layers.N…, model.vision_tower.…, model.multi_modal_projector.…, (model.image_newline,) lm_head.
/// Only the top-level prefixes differ; everything below is HF's module tree in both.
/// </summary>
public static class CheckpointNames
{
    public enum Generation { Old, New }

    static readonly (string New, string Old)[] Prefixes =
    {
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
        ("model.image_newline", "image_newline"), // LLaVA-OneVision's row separator
    };

    public static string ToModel(string checkpointName)
    {
        foreach (var (n, o) in Prefixes)
            if (checkpointName.StartsWith(n, StringComparison.Ordinal)) return o + checkpointName[n.Length..];
        return checkpointName;
    }

    public static string ToCheckpoint(string modelName, Generation g)
    {
        if (g == Generation.Old) return modelName;
        foreach (var (n, o) in Prefixes)
            if (modelName.StartsWith(o, StringComparison.Ordinal)) return n + modelName[o.Length..];
        return modelName;
    }

    /// <summary>Tensors a checkpoint may carry that this model has no use for.</summary>
    public static bool IsIgnorable(string modelName, LlavaConfig cfg) =>
        modelName.EndsWith(".position_ids", StringComparison.Ordinal)
        || modelName.StartsWith("vision_tower.vision_model.head.", StringComparison.Ordinal) // SigLIP pooling head
        || modelName.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
        || (cfg.Text.TieWordEmbeddings && modelName == "language_model.lm_head.weight");
}
