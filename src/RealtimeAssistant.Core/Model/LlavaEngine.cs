using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

public sealed record EngineOptions
{
    /// <summary>auto, cpu or cuda (cuda:N).</summary>
    public string Device { get; init; } = "auto";
    /// <summary>auto, f32, bf16 or f16. auto: the checkpoint's dtype on CUDA, f32 on CPU (bf16 is no faster there).</summary>
    public string DType { get; init; } = "auto";
    public int? Threads { get; init; }
    /// <summary>
    /// auto, f32, bf16 or q8: how the matmul weights are stored (<see cref="WeightFormat"/>),
    /// converted at load from whatever the checkpoint holds. auto: dense in <see cref="DType"/>.
    /// </summary>
    public string Weights { get; init; } = "auto";
    /// <summary>Where Load reports, in one line, the weight format and the bytes the weights hold (the CLI: stderr).</summary>
    public Action<string>? Report { get; init; }
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
    /// <summary>The compact format the matmul weights were converted to; null: dense in <see cref="DType"/>.</summary>
    public WeightFormat? Weights { get; init; }
    /// <summary>The weights' format as --weights names it.</summary>
    public string WeightsName => Weights?.Name() ?? DType switch { ScalarType.BFloat16 => "bf16", ScalarType.Float16 => "f16", _ => "f32" };
    /// <summary>Bytes the model's weights hold on its device.</summary>
    public long WeightBytes => Compaction.WeightBytes(Model);
    public required string Directory { get; init; }
    /// <summary>The prompt used when the caller gives none (config key ra_default_prompt, else LLaVA-1.5's).</summary>
    public string DefaultPrompt { get; init; } = "USER: <image>\nDescribe the image briefly. ASSISTANT:";
    /// <summary>
    /// Config key ra_group_positions: the model was trained with group position encoding, so
    /// generated text goes to the target group at positions φ, φ+1, … (φ = 0) instead of following the prompt.
    /// </summary>
    public bool GroupPositions { get; init; }

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

    /// <summary>
    /// --weights: the format to convert to, or null to keep the dense dtype. A format wider than
    /// the model's dtype would only cost memory, so it is refused.
    /// </summary>
    public static WeightFormat? ResolveWeights(string spec, ScalarType dtype)
    {
        if (spec.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        var format = WeightFormats.Parse(spec);
        if (format == WeightFormats.Of(dtype)) return null;
        if (format == WeightFormat.F32 || (format == WeightFormat.BF16 && dtype != ScalarType.Float32))
            throw new UserError($"--weights {format.Name()} is wider than the model's dtype {dtype}: use --dtype f32, or a narrower --weights");
        return format;
    }

    public static LlavaEngine Load(string dir, EngineOptions? options = null, ILogger? log = null)
    {
        options ??= new EngineOptions();
        if (!System.IO.Directory.Exists(dir)) throw new UserError($"model folder not found: {dir}");
        if (options.Threads is { } n) torch.set_num_threads(n);
        var cfg = LlavaConfig.Load(dir);
        var device = ResolveDevice(options.Device);
        var dtype = ResolveDType(options.DType, device, cfg.TorchDtype);
        var format = ResolveWeights(options.Weights, dtype);
        var pre = PreprocessorConfig.Load(dir, cfg.Vision);
        var tok = TextTokenizer.Load(dir);
        var weights = SafeTensorsReader.Open(dir);
        var model = new LlavaModel(cfg, new TensorSpec(device, dtype));
        LoadWeights(model, weights, cfg, format);
        model.eval();
        var raw = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var prompt = raw?["ra_default_prompt"]?.GetValue<string>();
        var group = raw?["ra_group_positions"]?.GetValue<bool>() ?? false;
        log?.LogInformation("loaded {Dir}: {Vision}+{Text}, {Layers} decoder layers on {Device} as {DType}",
            dir, cfg.Vision.ModelType, cfg.Text.ModelType, cfg.Text.NumHiddenLayers, device, dtype);
        var engine = prompt is null
            ? new LlavaEngine { Config = cfg, Preprocessor = pre, Tokenizer = tok, Model = model, Device = device, DType = dtype, Weights = format, Directory = dir, GroupPositions = group }
            : new LlavaEngine { Config = cfg, Preprocessor = pre, Tokenizer = tok, Model = model, Device = device, DType = dtype, Weights = format, Directory = dir, GroupPositions = group, DefaultPrompt = prompt };
        options.Report?.Invoke(engine.WeightsNote());
        return engine;
    }

    /// <summary>One line: the weights' format, the bytes they hold, and the process's resident memory.</summary>
    public string WeightsNote()
    {
        var what = Weights switch
        {
            WeightFormat.Q8 => "int8, a float32 scale per 32",
            WeightFormat.BF16 => "bfloat16",
            _ => $"dense {DType}",
        };
        return $"weights: {WeightsName} ({what}) on {Device}: {WeightBytes / 1e6:N1} MB; process resident {Environment.WorkingSet / 1e6:N0} MB";
    }

    /// <summary>
    /// Which modules a compact format applies to: all of them (decoder, projector and vision
    /// tower). Measured in docs/BENCHMARKS.md.
    /// </summary>
    public static bool Compacts(string moduleName) => true;

    /// <summary>
    /// Reads every parameter from the checkpoint; lists missing and unexpected tensors on mismatch.
    /// With a <paramref name="format"/>, each compactable unit (<see cref="Compaction.Units"/>) is
    /// converted as soon as its weights are read, and its dense memory freed: loading never holds
    /// a second full copy of the model.
    /// </summary>
    public static void LoadWeights(LlavaModel model, SafeTensorsReader weights, LlavaConfig cfg, WeightFormat? format = null)
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
        var units = format is null ? Array.Empty<ICompactable>() : Compaction.Units(model, Compacts);
        var unitOf = new Dictionary<Parameter, ICompactable>(ReferenceEqualityComparer.Instance);
        var unread = new Dictionary<ICompactable, int>(ReferenceEqualityComparer.Instance);
        foreach (var unit in units)
        {
            var ws = unit.Weights.ToList();
            foreach (var w in ws) unitOf[w] = unit;
            unread[unit] = ws.Count;
        }
        foreach (var (m, p) in parameters)
        {
            weights.ReadInto(byModelName[m], p, m);
            if (unitOf.TryGetValue(p, out var unit) && --unread[unit] == 0) unit.Compact(format!.Value);
        }
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
