using System.CommandLine;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Cli.App;

/// <summary>Finds and loads the model the app commands caption with: --model DIR, else the bundled demo model.</summary>
public static class AppModel
{
    public const string DemoModelPath = "media/demo-model";

    public static Option<string?> ModelOption() =>
        new("--model", "-m") { Description = $"model folder in Hugging Face's layout (default: the bundled {DemoModelPath})" };

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

    public static Engine Load(string? model, EngineOptions options) => Engine.Load(Resolve(model), options);
}
