using System.CommandLine;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Cli.App;

/// <summary>Finds and loads the model the app commands caption with: --model DIR, else the bundled demo model.</summary>
public static class AppModel
{
    public const string DemoModelPath = "media/demo-model";

    public static Option<string?> ModelOption() =>
        new("--model", "-m") { Description = $"model folder in the llava-hf layout (default: the bundled {DemoModelPath})" };

    /// <summary>The folder to load, or a one-line error saying how to get one.</summary>
    public static string Resolve(string? model)
    {
        if (!string.IsNullOrEmpty(model))
        {
            if (!Directory.Exists(model)) throw new UserError($"model folder not found: {model}");
            return model;
        }
        return Cli.FindRepoPath(DemoModelPath) is { } found && File.Exists(Path.Combine(found, "config.json"))
            ? found
            : throw new UserError($"the demo model is missing ({DemoModelPath} not found): train it with `./ra train -o {DemoModelPath}`, or pass --model DIR");
    }

    /// <summary>
    /// Loads the engine and wraps it as the app's captioner. Pruning is switchable at run time (the
    /// P key). It starts on with <paramref name="pruning"/> when given (the command's pruning
    /// flags); otherwise it starts off, and P turns on the schedule measured for this model
    /// (<see cref="PruningConfig.BesideModel"/>).
    /// </summary>
    public static IFrameCaptioner Load(string? model, EngineOptions engine, int frameStride = 5, int maxNewTokens = 48, PruningConfig? pruning = null)
    {
        var dir = Resolve(model);
        var e = LlavaEngine.Load(dir, engine);
        try
        {
            var captioner = new PrunedFrameCaptioner(e, pruning ?? PruningConfig.BesideModel(dir), frameStride: frameStride,
                options: new GenerationOptions { MaxNewTokens = maxNewTokens }) { PruningEnabled = pruning is not null };
            return new OwningCaptioner(captioner, e);
        }
        catch { e.Dispose(); throw; } // a bad pruning setting: one line, and the engine is not leaked
    }

    /// <summary>Disposes the engine with the captioner (LlavaFrameCaptioner leaves the engine to its owner).</summary>
    sealed class OwningCaptioner(IFrameCaptioner inner, IDisposable engine) : IFrameCaptioner
    {
        public int FramesPerCaption => inner.FramesPerCaption;
        public int FrameStride => inner.FrameStride;
        public bool PruningEnabled { get => inner.PruningEnabled; set => inner.PruningEnabled = value; }
        public CaptionResult Caption(CaptionRequest request, Action<string>? onDelta, CancellationToken ct) => inner.Caption(request, onDelta, ct);
        public void Dispose() { inner.Dispose(); engine.Dispose(); }
    }
}
