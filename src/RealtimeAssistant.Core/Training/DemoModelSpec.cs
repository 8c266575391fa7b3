using System.Text.Json.Nodes;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Training;

/// <summary>
/// The demo model's shape and vocabulary: a llava-hf checkpoint with a CLIP-style ViT, the MLP
/// projector and an 8-layer LLaMA decoder, sized to train on 2 CPU cores. The tokenizer is
/// word-level over the scene world's closed vocabulary.
/// </summary>
public static class DemoModelSpec
{
    public static readonly string[] Special = { "<pad>", "<s>", "</s>", "<image>", "<unk>" };
    public const int PadId = 0, BosId = 1, EosId = 2, ImageId = 3;
    public const int ImageSize = 64;

    /// <summary>
    /// The word-level tokenizer. A question typed as people type it ("What color is the cross?")
    /// reads as the vocabulary writes it ("what colour is the cross ?"): lower case, American
    /// spellings of its two British words, punctuation split from words (Hugging Face's
    /// Whitespace pre-tokenizer). The vocabulary's own text tokenizes as it did.
    /// </summary>
    public static JsonObject TokenizerJson() => TextTokenizer.WordLevelJson(Special, DemoVocabulary.Words,
        normalizer: new JsonObject
        {
            ["type"] = "Sequence",
            ["normalizers"] = new JsonArray(
                new JsonObject { ["type"] = "Lowercase" },
                Spelling("color", "colour"),
                Spelling("center", "centre")),
        },
        preTokenizer: new JsonObject { ["type"] = "Whitespace" });

    static JsonObject Spelling(string us, string vocabulary) =>
        new() { ["type"] = "Replace", ["pattern"] = new JsonObject { ["Regex"] = $@"\b{us}\b" }, ["content"] = vocabulary };

    public static int VocabSize => Special.Length + DemoVocabulary.Words.Count;

    public static LlavaConfig Config(int textLayers = 8, int textHidden = 128, int visionLayers = 3, int visionHidden = 128) => new()
    {
        Vision = new VisionConfig
        {
            ModelType = "clip_vision_model", HiddenSize = visionHidden, IntermediateSize = visionHidden * 2,
            NumHiddenLayers = visionLayers, NumAttentionHeads = visionHidden / 32, ImageSize = ImageSize, PatchSize = 8,
            HiddenAct = "quick_gelu", LayerNormEps = 1e-5,
        },
        Text = new TextConfig
        {
            ModelType = "llama", VocabSize = VocabSize, HiddenSize = textHidden, IntermediateSize = textHidden * 8 / 3 / 8 * 8,
            NumHiddenLayers = textLayers, NumAttentionHeads = textHidden / 32, NumKeyValueHeads = textHidden / 32,
            RmsNormEps = 1e-5, RopeTheta = 10000, MaxPositionEmbeddings = 4096, TieWordEmbeddings = true,
            BosTokenId = BosId, EosTokenId = EosId,
        },
        ImageTokenIndex = ImageId,
        // Layer 0 (the normalised patch embeddings) beside the last layer: a direct path from
        // each patch to the decoder. With the last layer alone, the from-scratch ViT's output
        // collapsed to nearly one vector for every patch and image (measured: token-to-token
        // std 0.015 against a mean of 0.07), and the captions ignored the image.
        VisionFeatureLayers = new[] { 0, -1 },
        VisionFeatureSelectStrategy = "default",
        ProjectorHiddenAct = "gelu",
    };

    /// <summary>Extra config keys our engine reads: the default prompt, group-position decoding, and the
    /// most frames one frame attended in training (a streaming session's default frame band).</summary>
    public static JsonObject ExtraConfig(int frameBand) => new()
    {
        ["ra_frame_band"] = frameBand,
        // Matches the training layout: per frame [image tokens, "frame"], then the instruction.
        ["ra_default_prompt"] = $"<image> {DemoVocabulary.FrameMarker} {DemoVocabulary.CaptionPrompt}",
        ["ra_group_positions"] = true,
        ["ra_frame_marker"] = DemoVocabulary.FrameMarker,
        ["ra_instruction"] = DemoVocabulary.CaptionPrompt,
    };

    public static PreprocessorConfig Preprocessor() => new()
    {
        ResizeHeight = ImageSize, ResizeWidth = ImageSize, Mean = new[] { .5f, .5f, .5f }, Std = new[] { .5f, .5f, .5f },
    };

    /// <summary>Writes tokenizer.json and preprocessor_config.json beside the weights.</summary>
    public static void WriteSidecars(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJson().ToJsonString());
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), Preprocessor().ToJson().ToJsonString());
    }
}
