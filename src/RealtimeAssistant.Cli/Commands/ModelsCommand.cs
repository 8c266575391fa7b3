using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra models`: the checkpoints this machine has (the bundled demo model, the Hugging Face cache's), and whether `ra` runs each.</summary>
public static class ModelsCommand
{
    /// <param name="env">The environment the Hub is reached through (HF_ENDPOINT, HF_TOKEN, …); the process's by default.</param>
    public static Command Create(Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        var cache = new Option<string?>("--cache") { Description = "the Hugging Face cache to list (default: where the hub library keeps it: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)" };
        var fetch = new Option<string[]>("--fetch") { Description = "first fetch these Hub ids (owner/name[@revision]) into the cache, without loading them, as `huggingface-cli download` would; for a machine that will run offline (HF_HUB_OFFLINE=1)", AllowMultipleArgumentsPerToken = true };
        var json = Cli.JsonOption("also write the list as JSON to this file ('-' for stdout)");
        var cmd = new Command("models", "List the checkpoints here, the bundled demo model and those in the Hugging Face cache, with each one's model_type, weights on disk, whether ra runs it, and the id that runs it.")
            { cache, fetch, json };
        return cmd.WithAction((pr, ct) =>
        {
            var root = pr.GetValue(cache) ?? HubCache.Root(env);
            var hub = pr.GetValue(cache) is { } c ? k => k == "HF_HUB_CACHE" ? c : env(k) : env;
            foreach (var id in pr.GetValue(fetch) ?? [])
            {
                if (!HubCache.TryParse(id, out _, out _)) throw new UserError($"--fetch takes Hub ids (owner/name[@revision]), got '{id}'");
                Console.Error.WriteLine($"{id}: {AppModel.Resolve(id, hub)}");
            }
            var rows = new List<Dictionary<string, object?>>();
            if (Cli.FindRepoPath(AppModel.DemoModelPath) is { } demo && File.Exists(Path.Combine(demo, "config.json")))
                rows.Add(Row("(bundled demo model)", demo, "", complete: true));
            foreach (var s in HubCache.List(root))
                rows.Add(Row(s.ModelArgument, s.Folder, string.Join(" ", s.Refs), s.Complete));

            var table = new Table().AddColumns("--model", "model_type", "weights", "runs here", "refs");
            foreach (var r in rows)
                table.AddRow(Markup.Escape((string)r["model"]!), Markup.Escape((string?)r["model_type"] ?? "-"),
                    r["weights_bytes"] is long b ? (b >= 1e9 ? $"{b / 1e9:0.00} GB" : $"{b / 1e6:0.0} MB") : "-", Markup.Escape((string)r["runs"]!), Markup.Escape((string)r["refs"]!));
            AnsiConsole.Write(table);
            Console.Error.WriteLine($"Hugging Face cache: {root}{(Directory.Exists(root) ? "" : " (none yet)")}");
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { cache = root, models = rows });
            return Task.FromResult(0);
        });
    }

    /// <summary>One checkpoint's line: what its config says and whether this build loads that family. Never fails: a bad config is reported, not thrown.</summary>
    static Dictionary<string, object?> Row(string model, string folder, string refs, bool complete)
    {
        string? type = null, runs;
        if (!complete) runs = "no: incomplete (no config.json)";
        else
        {
            try
            {
                type = ModelFamilies.ModelType(ModelFamilies.ReadConfig(folder), Path.Combine(folder, "config.json"));
                runs = ModelFamilies.Supported.Contains(type) ? "yes" : $"no: model_type '{type}' is not supported";
            }
            catch (UserError e) { runs = $"no: {e.Message}"; }
        }
        var weights = Directory.GetFiles(folder, "*.safetensors").Select(Size).Sum();
        return new()
        {
            ["model"] = model, ["folder"] = folder, ["refs"] = refs, ["model_type"] = type,
            ["weights_bytes"] = weights > 0 ? weights : null, ["runs"] = runs,
        };
    }

    /// <summary>A file's size through its link (the cache's snapshot files are links into blobs/); 0 for a dangling link.</summary>
    static long Size(string file)
    {
        var info = new FileInfo(file);
        var target = info.LinkTarget is null ? info : info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo;
        return target is { Exists: true } ? target.Length : 0;
    }
}
