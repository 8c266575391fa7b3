using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// Builds llava-hf model folders with random weights: tiny ones for tests, and full-depth
/// LLaVA-shaped ones (reduced width) for benchmarks. They go through the same loader as real checkpoints.
/// </summary>
public static class SyntheticCheckpoint
{
    public static readonly string[] SpecialTokens = { "<unk>", "<s>", "</s>", "<image>" };
    public const int ImageTokenId = 3;

    public static LlavaConfig Config(string vision = "clip_vision_model", string text = "llama", int vocab = 64,
        int vHidden = 32, int vLayers = 2, int imageSize = 32, int patch = 8,
        int tHidden = 64, int tLayers = 2, int heads = 4, int kvHeads = 2, int intermediate = 128, bool tie = false,
        string strategy = "default", int featureLayer = -2) => new()
    {
        Vision = new VisionConfig
        {
            ModelType = vision, HiddenSize = vHidden, IntermediateSize = vHidden * 2, NumHiddenLayers = vLayers,
            NumAttentionHeads = Math.Max(1, vHidden / 16), ImageSize = imageSize, PatchSize = patch,
            HiddenAct = vision == "siglip_vision_model" ? "gelu_pytorch_tanh" : "quick_gelu",
            LayerNormEps = vision == "siglip_vision_model" ? 1e-6 : 1e-5,
        },
        Text = new TextConfig
        {
            ModelType = text, VocabSize = vocab, HiddenSize = tHidden, IntermediateSize = intermediate,
            NumHiddenLayers = tLayers, NumAttentionHeads = heads, NumKeyValueHeads = kvHeads, RmsNormEps = 1e-6,
            RopeTheta = text == "qwen2" ? 1_000_000 : 10_000, MaxPositionEmbeddings = 4096, TieWordEmbeddings = tie,
            BosTokenId = 1, EosTokenId = 2,
        },
        ImageTokenIndex = ImageTokenId,
        VisionFeatureLayers = new[] { featureLayer },
        VisionFeatureSelectStrategy = strategy,
    };

    /// <summary>A word-level tokenizer.json holding the special tokens then <paramref name="words"/>.</summary>
    public static JsonObject WordTokenizer(IEnumerable<string> words) => TextTokenizer.WordLevelJson(SpecialTokens, words);

    /// <summary>Words for a tiny test vocabulary of <paramref name="vocab"/> entries in all.</summary>
    public static IEnumerable<string> FillerWords(int vocab) =>
        Enumerable.Range(0, vocab - SpecialTokens.Length).Select(i => $"w{i}");

    /// <summary>Random-initialised model written as a llava-hf folder with tokenizer and preprocessor.</summary>
    public static void Write(string dir, LlavaConfig cfg, JsonObject tokenizerJson, long seed = 0,
        CheckpointNames.Generation generation = CheckpointNames.Generation.Old, long? maxShardBytes = null, JsonObject? extraConfig = null)
    {
        using var model = new LlavaModel(cfg, TensorSpec.Cpu32);
        ModelInit.Initialize(model, seed);
        LlavaFamily.Save(model, dir, generation, maxShardBytes, extraConfig);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizerJson.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), PreprocessorConfig.Default(cfg.Vision).ToJson().ToJsonString());
    }
}
