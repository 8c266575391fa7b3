using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>What a family's loader gets: the folder, its parsed config.json, where to put parameters, the weights and the tokenizer.</summary>
/// <param name="Compact">the compact format each matmul weight is converted to as it is read (null: dense in the spec's dtype).</param>
/// <param name="MaxPixels">The processor's max_pixels overridden (<see cref="EngineOptions.MaxPixels"/>).</param>
public sealed record FamilyLoadContext(string Directory, JsonNode Config, TensorSpec Spec, SafeTensorsReader Weights, TextTokenizer Tokenizer, WeightFormat? Compact = null, long? MaxPixels = null);

/// <summary>
/// The model families the engine loads, by config.json's model_type. Each builds its module tree
/// (HF's names), reads the weights into it and returns the <see cref="IVisionLanguageModel"/>.
/// </summary>
public static class ModelFamilies
{
    static readonly Dictionary<string, Func<FamilyLoadContext, IVisionLanguageModel>> Loaders = new(StringComparer.Ordinal)
    {
        ["llava"] = LlavaFamily.Load,
        ["qwen2_vl"] = Families.Qwen2Vl.Qwen2VlFamily.Load,
        ["qwen2_5_vl"] = Families.Qwen2Vl.Qwen2VlFamily.Load,
        ["idefics3"] = Families.Idefics3.Idefics3Family.Load,
        ["smolvlm"] = Families.Idefics3.Idefics3Family.Load,
        ["llava_onevision"] = LlavaOneVision.LlavaOneVisionFamily.Load,
    };

    public static IReadOnlyCollection<string> Supported => Loaders.Keys;

    /// <summary>Whether a family's visual tokens follow the image's size within a pixel bound (max_pixels).</summary>
    public static bool SizesTokensToTheImage(string modelType) => modelType is "qwen2_vl" or "qwen2_5_vl";

    /// <summary>
    /// A family's module tree with uninitialised parameters (torch.empty: nothing is resident until
    /// written) and the Hub checkpoint name of each parameter: what a random checkpoint of a
    /// config must hold. The folder must hold config.json and the processor configs the family reads.
    /// </summary>
    public static (nn.Module Module, Func<string, string> ToCheckpoint) Skeleton(string dir, TensorSpec spec)
    {
        var config = ReadConfig(dir);
        var source = Path.Combine(dir, "config.json");
        var type = ModelType(config, source);
        CheckSupported(type, source);
        static string Old(string m) => CheckpointNames.ToCheckpoint(m, CheckpointNames.Generation.Old);
        switch (type)
        {
            case "qwen2_vl" or "qwen2_5_vl":
                // The Hub files name the decoder model.* and lm_head.*, the vision tower visual.*.
                return (new Families.Qwen2Vl.Qwen2VlModel(Families.Qwen2Vl.Qwen2VlConfig.Parse(config, source), spec),
                    m => m.StartsWith("language_model.", StringComparison.Ordinal) ? m["language_model.".Length..] : m);
            case "idefics3" or "smolvlm":
                var cfg = Families.Idefics3.Idefics3Config.Parse(config, source);
                var tile = Families.Idefics3.Idefics3ProcessorConfig.Load(dir, cfg.ModelType).TileSize;
                return (new Families.Idefics3.Idefics3Model(cfg, tile, spec), Families.Idefics3.Idefics3Model.ToCheckpointName);
            case "llava_onevision":
                return (new LlavaOneVision.OneVisionModel(LlavaOneVision.OneVisionConfig.Parse(config, source), spec), Old);
            default:
                return (new LlavaModel(LlavaConfig.Parse(config, source), spec), Old);
        }
    }

    /// <summary>config.json's model_type (a llava-hf config may omit it: llava).</summary>
    public static string ModelType(JsonNode config, string source) =>
        config["model_type"] switch
        {
            null => "llava",
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            var other => throw new UserError($"{source}: model_type must be a string, got {other.ToJsonString()}"),
        };

    public static void CheckSupported(string modelType, string source)
    {
        if (!Loaders.ContainsKey(modelType))
            throw new UserError($"{source}: unsupported model_type '{modelType}' (supported: {string.Join(", ", Loaders.Keys.Order())})");
    }

    public static IVisionLanguageModel Load(FamilyLoadContext context)
    {
        var type = ModelType(context.Config, Path.Combine(context.Directory, "config.json"));
        CheckSupported(type, Path.Combine(context.Directory, "config.json"));
        return Loaders[type](context);
    }

    /// <summary>config.json parsed, or a one-line error naming it.</summary>
    public static JsonNode ReadConfig(string dir)
    {
        var path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new UserError($"no config.json in {dir}");
        return JsonFile.Read(path, "config.json") as JsonObject ?? throw new UserError($"{path} is not a JSON object");
    }
}
