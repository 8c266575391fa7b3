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
/// A loaded model folder in Hugging Face's layout (config.json, *.safetensors single or sharded,
/// tokenizer.json, the processor's config), whatever its family, with its layout record. The demo
/// model and real checkpoints take this same path.
/// </summary>
public sealed class Engine : IDisposable
{
    public required IVisionLanguageModel Model { get; init; }
    public required TextTokenizer Tokenizer { get; init; }
    public required ModelLayout Layout { get; init; }
    public required string Directory { get; init; }

    public Device Device => Model.Device;
    public ScalarType DType => Model.DType;
    public TextConfig Text => Model.Text;
    public LanguageModel Language => Model.Language;
    public DecoderModel Decoder => Model.Language.model;
    /// <summary>The image marker's token id (a prompt's marker expands to an image's token run).</summary>
    public int ImageMarkerId => Tokenizer.TokenToId(Model.ImageMarker) ?? throw new UserError($"the image marker '{Model.ImageMarker}' is not in the tokenizer");
    /// <summary>The prompt used when the caller gives none: config key ra_default_prompt, else LLaVA-1.5's form with the family's image snippet.</summary>
    public string DefaultPrompt => Layout.DefaultPrompt ?? $"USER: {Model.ImageSnippet}\nDescribe the image briefly. ASSISTANT:";
    /// <summary>Generated text goes to the target group at positions φ, φ+1, … (φ = 0) instead of following the prompt.</summary>
    public bool GroupPositions => Layout.GroupPositions;

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

    public static Engine Load(string dir, EngineOptions? options = null, ILogger? log = null)
    {
        options ??= new EngineOptions();
        if (!System.IO.Directory.Exists(dir)) throw new UserError($"model folder not found: {dir}");
        if (options.Threads is { } n) SetThreads(n);
        var config = ModelFamilies.ReadConfig(dir);
        var source = Path.Combine(dir, "config.json");
        ModelFamilies.CheckSupported(ModelFamilies.ModelType(config, source), source);
        var device = ResolveDevice(options.Device);
        var checkpointDtype = (config["torch_dtype"] ?? config["text_config"]?["torch_dtype"])?.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? (config["torch_dtype"] ?? config["text_config"]?["torch_dtype"])!.GetValue<string>() : "float32";
        var dtype = ResolveDType(options.DType, device, checkpointDtype);
        var layout = ModelLayout.Read(dir, config);
        var tok = TextTokenizer.Load(dir);
        var model = ModelFamilies.Load(new FamilyLoadContext(dir, config, new TensorSpec(device, dtype), SafeTensorsReader.Open(dir), tok));
        var (vision, decoder) = model.ParameterCounts;
        log?.LogInformation("loaded {Dir}: {Type}, {Layers} decoder layers, {Vision:N0} vision + {Decoder:N0} decoder parameters on {Device} as {DType}",
            dir, model.ModelType, model.Text.NumHiddenLayers, vision, decoder, device, dtype);
        return new Engine { Model = model, Tokenizer = tok, Layout = layout, Directory = dir };
    }

    public void Dispose() => Model.Dispose();
}
