using System.CommandLine;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Cli.App;

/// <summary>Finds and loads the model the app commands caption with: --model DIR, else the bundled demo model.</summary>
public static class AppModel
{
    public const string DemoModelPath = "media/demo-model";

    public static Option<string?> ModelOption() =>
        new("--model", "-m") { Description = $"model folder in Hugging Face's layout, or a Hub id (owner/name[@revision]) already in the Hugging Face cache (default: the bundled {DemoModelPath})" };

    /// <summary>
    /// The folder to load: <paramref name="model"/> as a folder, else as a Hub id in the Hugging
    /// Face cache (<see cref="HubCache"/>, read through <paramref name="env"/>), else the demo
    /// model when none is given; or a one-line error saying how to get one.
    /// </summary>
    public static string Resolve(string? model, Func<string, string?>? env = null)
    {
        if (!string.IsNullOrEmpty(model))
        {
            if (Directory.Exists(model)) return model;
            if (!HubCache.TryParse(model, out var repo, out var revision)) throw new UserError($"model folder not found: {model}");
            var (folder, missing) = HubCache.Find(HubCache.Root(env ?? Environment.GetEnvironmentVariable), repo, revision);
            return folder ?? throw new UserError(
                $"model folder not found: {model}; as a Hub id it is {missing}: fetch it with `huggingface-cli download {repo}{(revision == "main" ? "" : " --revision " + revision)}` (or transformers), or pass a folder");
        }
        return Cli.FindRepoPath(DemoModelPath) is { } found && File.Exists(Path.Combine(found, "config.json"))
            ? found
            : throw new UserError($"the demo model is missing ({DemoModelPath} not found): train it with `./ra train -o {DemoModelPath}`, or pass --model DIR");
    }

    public static Engine Load(string? model, EngineOptions options) => Engine.Load(Resolve(model), options);
}
