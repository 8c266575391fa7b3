using Microsoft.Extensions.Logging;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Kernels;
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
    /// <summary>
    /// auto, f32, bf16, f16 or q8: how the matmul weights are stored (<see cref="WeightFormat"/>),
    /// converted at load from whatever the checkpoint holds. auto: <see cref="Engine.AutoWeights"/>.
    /// </summary>
    public string Weights { get; init; } = "auto";
    /// <summary>
    /// The most pixels an image or frame is resized to, for the families that size their visual
    /// tokens to the image (Qwen2-VL, Qwen2.5-VL: their processor's max_pixels). A frame's tokens
    /// and its vision encoder's time scale with it. Null: the processor's own bound.
    /// </summary>
    public long? MaxPixels { get; init; }
    /// <summary>Where Load reports, in one line, a compact format and the bytes the weights hold (the CLI: stderr).</summary>
    public Action<string>? Report { get; init; }
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
    /// <summary>The compact format the matmul weights were converted to; null: dense in <see cref="DType"/>.</summary>
    public WeightFormat? Weights { get; init; }
    /// <summary>The weights' format as --weights names it.</summary>
    public string WeightsName => Weights?.Name() ?? DType switch { ScalarType.BFloat16 => "bf16", ScalarType.Float16 => "f16", _ => "f32" };
    /// <summary>Bytes the model's weights hold on its device.</summary>
    public long WeightBytes => Compaction.WeightBytes(Model.Module);
    /// <summary>The model's weights, vision and decoder, counted as loaded (compact copies included).</summary>
    public long Parameters => Model.ParameterCounts.Vision + Model.ParameterCounts.Decoder;

    public Device Device => Model.Device;
    public ScalarType DType => Model.DType;
    public TextConfig Text => Model.Text;
    public LanguageModel Language => Model.Language;
    public DecoderModel Decoder => Model.Language.model;
    /// <summary>Runs the decoder passes, decode steps and vision encodes of every session and caption on this engine: each on its caller's thread, or batched in the model's turn (a <see cref="ForwardBatcher"/> when several streams share it).</summary>
    public IModelRunner Runner { get; set; } = DirectRunner.Instance;

    /// <summary>The image marker's token id (a prompt's marker expands to an image's token run).</summary>
    public int ImageMarkerId => Tokenizer.TokenToId(Model.ImageMarker) ?? throw new UserError($"the image marker '{Model.ImageMarker}' is not in the tokenizer");
    /// <summary>What the default prompt asks about its image.</summary>
    public const string DefaultQuestion = "Describe the image briefly.";

    /// <summary>The prompt used when the caller gives none: config key ra_default_prompt, else <see cref="Prompt"/> of <see cref="DefaultQuestion"/>.</summary>
    public string DefaultPrompt => Layout.DefaultPrompt ?? Prompt(DefaultQuestion, 1);

    /// <summary>
    /// One user turn holding <paramref name="images"/> images then <paramref name="text"/>, in the
    /// model's own format: its chat template when it has one (rendered as apply_chat_template does,
    /// with the answer's generation prompt), else LLaVA-1.5's "USER: … ASSISTANT:".
    /// </summary>
    public string Prompt(string text, int images)
    {
        if (Layout.Template is { } t)
        {
            var parts = Enumerable.Repeat(Chat.ChatPart.Image(), images).Append(Chat.ChatPart.TextPart(text)).ToArray();
            return t.Render(new[] { Chat.ChatMessage.FromParts("user", parts) });
        }
        return $"USER: {string.Concat(Enumerable.Repeat(Model.ImageSnippet, images))}\n{text} ASSISTANT:";
    }

    /// <summary>Where generation stops: generation_config.json's eos ids and the tokenizer's end-of-sequence token.</summary>
    public IReadOnlyCollection<int> StopTokens =>
        Layout.EosTokens.Concat(Tokenizer.EosId is { } e ? new[] { e } : Array.Empty<int>()).Distinct().ToArray();
    /// <summary>Generated text goes to the target group at positions φ, φ+1, … (φ = 0) instead of following the prompt.</summary>
    public bool GroupPositions => Layout.GroupPositions;

    /// <summary>Where the engine says things a user should know (the CLI prints them on stderr; null: nowhere).</summary>
    public static Action<string>? Notice { get; set; }

    /// <summary>torch's intra-op thread count, chosen by the user; libtorch takes 0 or less unchecked, so it is refused here.</summary>
    public static void SetThreads(int n)
    {
        if (n < 1) throw new UserError($"--threads must be 1 or more, got {n}");
        torch.set_num_threads(n);
        _threadsChosen = true;
    }

    static bool _threadsChosen;
    static int? _machineThreads;

    /// <summary>A decoder this narrow runs its CPU ops on one thread unless the user chose otherwise.</summary>
    public const int OneThreadWidth = 128;

    /// <summary>
    /// Intra-op threads for a model when the user chose none: one for a model of width at most
    /// <see cref="OneThreadWidth"/> on the CPU, libtorch's own count otherwise. A row of such a model's
    /// matmuls is microseconds of work, less than a fork and join of the team costs; a second thread
    /// leaves the median read as it was and makes every op wait for the slower core (the demo model:
    /// read p50 4.97 ms on one thread against 4.93 on two, p95 6.39 against 11.55; BENCHMARKS,
    /// "The governor at a frame budget"). The count is the process's: the model loaded last sets it.
    /// </summary>
    static void ThreadsFor(int width, Device device)
    {
        if (_threadsChosen || device.type != DeviceType.CPU) return;
        _machineThreads ??= torch.get_num_threads();
        int n = width <= OneThreadWidth ? 1 : _machineThreads.Value;
        if (torch.get_num_threads() != n) torch.set_num_threads(n);
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

    /// <summary>
    /// --weights: the format to convert to, or null to keep the dense dtype. A format wider than
    /// the model's dtype would only cost memory, so it is refused; the half formats are stores for
    /// a float32 model.
    /// </summary>
    public static WeightFormat? ResolveWeights(string spec, ScalarType dtype)
    {
        if (spec.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        var format = WeightFormats.Parse(spec);
        if (format == WeightFormats.Of(dtype)) return null;
        if (format == WeightFormat.F32 || (format == WeightFormat.BF16 && dtype != ScalarType.Float32))
            throw new UserError($"--weights {format.Name()} is wider than the model's dtype {dtype}: use --dtype f32, or a narrower --weights");
        if (format == WeightFormat.F16 && dtype != ScalarType.Float32)
            throw new UserError($"--weights f16 stores the weights of a float32 model, not of a {dtype} one: use --dtype f32");
        return format;
    }

    /// <summary>
    /// --weights auto on a float32 CPU model keeps a half-precision checkpoint's own matrices, bit
    /// for bit, in half the memory of float32 copies, so every product reads half the bytes:
    /// - every matrix bfloat16: bf16. Decode steps run the bf16 kernels. On a CPU that multiplies
    ///   bf16 natively a prefill's GEMMs run in bf16 with float32 sums (its activations rounded to
    ///   bf16 at each product, as the checkpoint's own dtype runs them); elsewhere they multiply
    ///   the weights widened to float32, as f16's do.
    /// - every matrix float16: f16. Decode steps widen the weights exactly in the kernels, and a
    ///   prefill's GEMM multiplies them widened to float32 a block of rows at a time, so the
    ///   products are float32's.
    /// Anything else stays dense in the model's dtype: float32 or mixed checkpoints, and CUDA
    /// (the dtype already follows the checkpoint there). `--weights f32` keeps float32 weights.
    /// </summary>
    public static WeightFormat? AutoWeights(string spec, Device device, ScalarType dtype, SafeTensorsReader checkpoint)
    {
        if (!spec.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase) || device.type != DeviceType.CPU || dtype != ScalarType.Float32) return null;
        var stored = checkpoint.Tensors.Values.Where(t => t.Shape.Length >= 2 && t.DType is "BF16" or "F16" or "F32" or "F64").Select(t => t.DType).Distinct().ToList();
        return stored switch
        {
            ["BF16"] => WeightFormat.BF16,
            ["F16"] => WeightFormat.F16,
            _ => null,
        };
    }

    /// <summary>One line: the weights' format, the bytes they hold, and the process's resident memory.</summary>
    public string WeightsNote()
    {
        var what = Weights switch
        {
            WeightFormat.Q8 => "int8, a float32 scale per 32",
            WeightFormat.BF16 => "bfloat16",
            WeightFormat.F16 => "float16",
            _ => $"dense {DType}",
        };
        return $"weights: {WeightsName} ({what}) on {Device}: {WeightBytes / 1e6:N1} MB; process resident {Environment.WorkingSet / 1e6:N0} MB";
    }

    public static Engine Load(string dir, EngineOptions? options = null, ILogger? log = null)
    {
        options ??= new EngineOptions();
        if (!System.IO.Directory.Exists(dir)) throw new UserError($"model folder not found: {dir}");
        if (options.Threads is { } n) SetThreads(n);
        var config = ModelFamilies.ReadConfig(dir);
        var source = Path.Combine(dir, "config.json");
        var modelType = ModelFamilies.ModelType(config, source);
        ModelFamilies.CheckSupported(modelType, source);
        if (options.MaxPixels is not null && !ModelFamilies.SizesTokensToTheImage(modelType))
            throw new UserError($"--max-pixels: {modelType} resizes every image to its own fixed size; the bound applies to {string.Join(" and ", ModelFamilies.Supported.Where(ModelFamilies.SizesTokensToTheImage))}");
        var device = ResolveDevice(options.Device);
        var checkpointDtype = (config["torch_dtype"] ?? config["text_config"]?["torch_dtype"])?.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? (config["torch_dtype"] ?? config["text_config"]?["torch_dtype"])!.GetValue<string>() : "float32";
        var dtype = ResolveDType(options.DType, device, checkpointDtype);
        var weights = SafeTensorsReader.Open(dir);
        var chosen = ResolveWeights(options.Weights, dtype);
        var format = chosen ?? AutoWeights(options.Weights, device, dtype, weights);
        var layout = ModelLayout.Read(dir, config);
        var tok = TextTokenizer.Load(dir);
        var model = ModelFamilies.Load(new FamilyLoadContext(dir, config, new TensorSpec(device, dtype), weights, tok, format, options.MaxPixels));
        // A checkpoint in neither our frame layout nor with a chat template gets LLaVA-1.5's prompt form: say so, once.
        if (layout.Template is null && layout.FrameMarker is null && layout.DefaultPrompt is null)
            Notice?.Invoke(Chat.ChatTemplate.NoTemplateNote(dir));
        var (vision, decoder) = model.ParameterCounts;
        log?.LogInformation("loaded {Dir}: {Type}, {Layers} decoder layers, {Vision:N0} vision + {Decoder:N0} decoder parameters on {Device} as {DType}",
            dir, model.ModelType, model.Text.NumHiddenLayers, vision, decoder, device, dtype);
        ThreadsFor(model.Text.HiddenSize, device);
        var engine = new Engine { Model = model, Tokenizer = tok, Layout = layout, Directory = dir, Weights = format };
        // A dense model needs no note: stderr stays for what a user must know.
        if (format is not null)
            options.Report?.Invoke(engine.WeightsNote() + (chosen is null ? $"; the checkpoint's own {(format == WeightFormat.F16 ? "float16" : "bfloat16")} (--weights f32 for float32 weights)" : "")
                + (format == WeightFormat.BF16 && device.type == DeviceType.CPU && !CpuIsa.MultipliesBf16 ? "; a prefill multiplies them widened to float32, since this CPU has no native bfloat16 products" : ""));
        return engine;
    }

    public void Dispose() => Model.Dispose();
}
