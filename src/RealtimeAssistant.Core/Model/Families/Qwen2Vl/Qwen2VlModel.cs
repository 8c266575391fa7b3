using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Families.Qwen2Vl;

/// <summary>
/// Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration: the vision transformer
/// (with its merger) and a Qwen2 decoder with M-RoPE. Module names follow the hub files' (first)
/// generation under two roots: visual.… and language_model.{model.…, lm_head}; <see cref="Names"/>
/// maps both checkpoint generations onto them.
/// </summary>
public sealed class Qwen2VlModel : nn.Module
{
    public readonly Qwen2VisionTransformer visual;
    public readonly LanguageModel language_model;
    public Qwen2VlConfig Config { get; }

    public Qwen2VlModel(Qwen2VlConfig cfg, TensorSpec spec) : base(nameof(Qwen2VlModel))
    {
        Config = cfg;
        visual = new Qwen2VisionTransformer(cfg.Vision, spec);
        language_model = new LanguageModel(cfg.Text, spec);
        RegisterComponents();
    }

    /// <summary>
    /// Checkpoint ↔ module names. Hub files (transformers &lt; 4.52): model.layers.N…, model.embed_tokens,
    /// model.norm, lm_head, visual.…. Newer saves: model.language_model.…, model.visual.…, lm_head.
    /// </summary>
    public static class Names
    {
        public static string ToModel(string name)
        {
            if (name.StartsWith("model.language_model.", StringComparison.Ordinal)) return "language_model.model." + name["model.language_model.".Length..];
            if (name.StartsWith("model.visual.", StringComparison.Ordinal)) return "visual." + name["model.visual.".Length..];
            if (name.StartsWith("model.", StringComparison.Ordinal)) return "language_model." + name;
            if (name.StartsWith("lm_head.", StringComparison.Ordinal)) return "language_model." + name;
            return name;
        }

        /// <summary>Tensors a checkpoint may carry that this model has no use for.</summary>
        public static bool IsIgnorable(string modelName, Qwen2VlConfig cfg) =>
            modelName.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
            || modelName.EndsWith(".rotary_pos_emb.inv_freq", StringComparison.Ordinal)
            || (cfg.Text.TieWordEmbeddings && modelName == "language_model.lm_head.weight");
    }
}
