using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

public sealed record EngineOptions
{
    /// <summary>auto, cpu or cuda (cuda:N).</summary>
    public string Device { get; init; } = "auto";
    /// <summary>auto, f32, bf16 or f16. auto: the checkpoint's dtype on CUDA, f32 on CPU (bf16 is no faster there).</summary>
    public string DType { get; init; } = "auto";
    public int? Threads { get; init; }
}

/// <summary>
/// A loaded model folder in the llava-hf layout: config.json, *.safetensors (single or sharded),
/// tokenizer.json and preprocessor_config.json. The demo model and real checkpoints take this same path.
/// </summary>
public sealed class LlavaEngine : IDisposable
{
    public required LlavaConfig Config { get; init; }
    public required PreprocessorConfig Preprocessor { get; init; }
    public required TextTokenizer Tokenizer { get; init; }
    public required LlavaModel Model { get; init; }
    public required Device Device { get; init; }
    public required ScalarType DType { get; init; }
    public required string Directory { get; init; }
    /// <summary>The prompt used when the caller gives none (config key ra_default_prompt, else LLaVA-1.5's).</summary>
    public string DefaultPrompt { get; init; } = "USER: <image>\nDescribe the image briefly. ASSISTANT:";
    /// <summary>
    /// Config key ra_group_positions: the model was trained with group position encoding, so
    /// generated text goes to the target group at positions φ, φ+1, … (φ = 0) instead of following the prompt.
    /// </summary>
    public bool GroupPositions { get; init; }

    /// <summary>torch's intra-op thread count; libtorch takes 0 or less unchecked, so it is refused here.</summary>
    public static void SetThreads(int n)
    {
        if (n < 1) throw new UserError($"--threads must be 1 or more, got {n}");
        torch.set_num_threads(n);
    }

    public static Device ResolveDevice(string spec)
    {
        spec = spec.Trim().ToLowerInvariant();
        if (spec == "auto") return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        if (spec == "cpu") return torch.CPU;
        if (spec.StartsWith("cuda"))
        {
            if (!torch.cuda.is_available())
                throw new UserError($"--device {spec}: CUDA is not available in this build/machine (TorchSharp's CPU libtorch is installed; use --device cpu or auto)");
            return new Device(spec);
        }
        throw new UserError($"--device '{spec}' is not one of auto, cpu, cuda");
    }

    public static ScalarType ResolveDType(string spec, Device device, string checkpointDtype) => spec.Trim().ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "f16" or "float16" or "fp16" => ScalarType.Float16,
        "auto" => device.type == DeviceType.CUDA
            ? checkpointDtype switch { "bfloat16" => ScalarType.BFloat16, "float16" => ScalarType.Float16, _ => ScalarType.Float32 }
            : ScalarType.Float32,
        var s => throw new UserError($"--dtype '{s}' is not one of auto, f32, bf16, f16"),
    };

    public static LlavaEngine Load(string dir, EngineOptions? options = null, ILogger? log = null)
    {
        options ??= new EngineOptions();
        if (!System.IO.Directory.Exists(dir)) throw new UserError($"model folder not found: {dir}");
        if (options.Threads is { } n) SetThreads(n);
        var cfg = LlavaConfig.Load(dir);
        var device = ResolveDevice(options.Device);
        var dtype = ResolveDType(options.DType, device, cfg.TorchDtype);
        var pre = PreprocessorConfig.Load(dir, cfg.Vision);
        var tok = TextTokenizer.Load(dir);
        var weights = SafeTensorsReader.Open(dir);
        var model = new LlavaModel(cfg, new TensorSpec(device, dtype));
        LoadWeights(model, weights, cfg);
        model.eval();
        var raw = JsonFile.Read(Path.Combine(dir, "config.json"), "config.json");
        var prompt = raw["ra_default_prompt"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var p) => p,
            _ => throw new UserError($"{Path.Combine(dir, "config.json")}: ra_default_prompt must be a string"),
        };
        var group = raw["ra_group_positions"] switch
        {
            null => false,
            JsonValue v when v.TryGetValue<bool>(out var g) => g,
            _ => throw new UserError($"{Path.Combine(dir, "config.json")}: ra_group_positions must be true or false"),
        };
        log?.LogInformation("loaded {Dir}: {Vision}+{Text}, {Layers} decoder layers, {Params:N0} parameters on {Device} as {DType}",
            dir, cfg.Vision.ModelType, cfg.Text.ModelType, cfg.Text.NumHiddenLayers, model.parameters().Sum(p => p.numel()), device, dtype);
        var engine = new LlavaEngine { Config = cfg, Preprocessor = pre, Tokenizer = tok, Model = model, Device = device, DType = dtype, Directory = dir, GroupPositions = group };
        return prompt is null ? engine : new LlavaEngine
        {
            Config = cfg, Preprocessor = pre, Tokenizer = tok, Model = model, Device = device, DType = dtype, Directory = dir, DefaultPrompt = prompt, GroupPositions = group,
        };
    }

    /// <summary>Reads every parameter from the checkpoint; lists missing and unexpected tensors on mismatch.</summary>
    public static void LoadWeights(LlavaModel model, SafeTensorsReader weights, LlavaConfig cfg)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var byModelName = new Dictionary<string, string>();
        var unexpected = new List<string>();
        foreach (var name in weights.Tensors.Keys)
        {
            var m = CheckpointNames.ToModel(name);
            if (parameters.ContainsKey(m)) byModelName[m] = name;
            else if (!CheckpointNames.IsIgnorable(m, cfg)) unexpected.Add(name);
        }
        var missing = parameters.Keys.Where(k => !byModelName.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
        {
            static string List(List<string> l) => string.Join(", ", l.Take(8)) + (l.Count > 8 ? $" … ({l.Count} in all)" : "");
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing tensors: {List(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected tensors: {List(unexpected)}");
            throw new UserError($"checkpoint does not match the config: {string.Join("; ", parts)}");
        }
        foreach (var (m, p) in parameters)
            weights.ReadInto(byModelName[m], p, m);
    }

    /// <summary>Writes the model as a llava-hf folder (weights + config); the tokenizer and preprocessor are the caller's.</summary>
    public static void Save(LlavaModel model, string dir, CheckpointNames.Generation generation = CheckpointNames.Generation.Old,
        long? maxShardBytes = null, JsonObject? extraConfig = null)
    {
        System.IO.Directory.CreateDirectory(dir);
        var tensors = model.named_parameters().Select(p => (CheckpointNames.ToCheckpoint(p.name, generation), (Tensor)p.parameter)).ToList();
        if (maxShardBytes is { } max) SafeTensorsWriter.WriteSharded(dir, tensors, max);
        else SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        var json = model.Config.ToJson();
        if (extraConfig != null) foreach (var (k, v) in extraConfig) json[k] = v?.DeepClone();
        File.WriteAllText(Path.Combine(dir, "config.json"), json.ToJsonString(new() { WriteIndented = true }));
    }

    public void Dispose() => Model.Dispose();
}
