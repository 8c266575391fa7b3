using System.CommandLine;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.App;

/// <summary>Finds and loads the model the app commands caption with: --model DIR, else the bundled demo model.</summary>
public static class AppModel
{
    public const string DemoModelPath = "media/demo-model";

    public static Option<string?> ModelOption() =>
        new("--model", "-m") { Description = $"model folder in Hugging Face's layout, or a Hub id (owner/name[@revision]): from the Hugging Face cache, fetched into it if missing (default: the bundled {DemoModelPath})" };

    /// <summary>
    /// The folder to load: <paramref name="model"/> as a folder, else as a Hub id in the Hugging
    /// Face cache (<see cref="HubCache"/>, read through <paramref name="env"/>; fetched into it
    /// unless HF_HUB_OFFLINE says not to), else the demo model when none is given; or a one-line
    /// error saying how to get one.
    /// </summary>
    public static string Resolve(string? model, Func<string, string?>? env = null)
    {
        if (!string.IsNullOrEmpty(model))
        {
            if (Directory.Exists(model)) return model;
            if (!HubCache.TryParse(model, out var repo, out var revision)) throw new UserError($"model folder not found: {model}");
            env ??= Environment.GetEnvironmentVariable;
            var root = HubCache.Root(env);
            var (folder, missing) = HubCache.Find(root, repo, revision);
            if (folder is not null) return folder;
            if (env("HF_HUB_OFFLINE") is "1" or "true" or "TRUE")
                throw new UserError($"model folder not found: {model}; as a Hub id it is {missing}, and HF_HUB_OFFLINE forbids fetching it");
            return new HubDownload(env, Console.Error.WriteLine).Fetch(root, repo, revision).GetAwaiter().GetResult();
        }
        return Cli.FindRepoPath(DemoModelPath) is { } found && File.Exists(Path.Combine(found, "config.json"))
            ? found
            : throw new UserError($"the demo model is missing ({DemoModelPath} not found): train it with `./ra train -o {DemoModelPath}`, or pass --model DIR");
    }

    public static Engine Load(string? model, EngineOptions options) => Engine.Load(Resolve(model), options);

    /// <summary>
    /// A server's model warmed up before it takes requests (<see cref="SessionModes.WarmUp"/>, GPE),
    /// through <paramref name="inTurn"/> where calls to the model take turns; logged. A model that
    /// cannot stream is served without (its streams are refused with their own error).
    /// </summary>
    public static void WarmUp(Engine engine, ILogger log, Func<Func<double>, double>? inTurn = null)
    {
        try
        {
            double Warm() => SessionModes.WarmUp(SessionModes.Gpe, engine, new StreamingOptions { WindowFrames = 2 });
            double ms = inTurn is null ? Warm() : inTurn(Warm);
            log.LogInformation("warm-up: one synthetic frame read and a short caption written in {Ms:F0} ms", ms);
        }
        catch (UserError e) { log.LogWarning("no warm-up: {Why}", e.Message); }
    }
}
