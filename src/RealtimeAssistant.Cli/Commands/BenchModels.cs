using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using ScalarType = TorchSharp.torch.ScalarType;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `--family F` for the benches: a model folder at a real small checkpoint's sizes (its Hub
/// config, tests/…/Fixtures/hf/hub-configs) with random weights, the family's stand-in tokenizer,
/// chat template and generation config (tests/…/Fixtures/hf/&lt;family&gt;), and config.json's
/// special-token ids rewritten to the stand-in tokenizer's. Made once under .ra/bench-models/.
/// </summary>
public static class BenchModels
{
    public sealed record Family(string Name, string HubConfig, string Fixture, string? PreprocessorFrom = null, string? ProcessorClass = null);

    public static readonly Family[] Families =
    {
        new("qwen2_vl", "Qwen2-VL-2B-Instruct", "qwen2_vl"),
        // Its preprocessor_config.json was not found; Qwen2.5-VL uses Qwen2-VL's image processor and values.
        new("qwen2_5_vl", "Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", "Qwen2-VL-2B-Instruct", "Qwen2_5_VLProcessor"),
        new("smolvlm", "SmolVLM2-256M-Video-Instruct", "smolvlm"),
        new("llava_onevision", "llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision"),
    };

    public const string FixturesPath = "tests/RealtimeAssistant.Tests/Fixtures/hf";
    public const string CachePath = ".ra/bench-models";
    const string Marker = "ra-bench-model.json";

    /// <summary>
    /// Not a Hub checkpoint: LLaVA-1.5-7B's decoder depth (32 layers) and visual tokens a frame (576:
    /// a 336-pixel CLIP input in 14-pixel patches) at a reduced width, in our frame layout so it
    /// streams. A prefill-bound model that fits 2 CPU cores (7B does not).
    /// </summary>
    public const string LlavaShaped = "llava_shaped";
    /// <summary>The same, its weights stored in float16 as llava-hf's LLaVA-1.5 checkpoints are.</summary>
    public const string LlavaShapedF16 = "llava_shaped_f16";
    const int LlavaShapedHidden = 512;

    public static Option<string?> Option() => new("--family")
    {
        Description = $"a real small checkpoint's shapes with random weights: {string.Join(", ", Families.Select(f => $"{f.Name} ({f.HubConfig})"))}; " +
            $"or {LlavaShaped} (LLaVA-1.5-7B's depth and 576 visual tokens a frame at width {LlavaShapedHidden}; {LlavaShapedF16}: stored in float16, as llava-hf's are); made once under {CachePath}/",
    };

    public static Family Find(string name) => Families.FirstOrDefault(f => f.Name == name)
        ?? throw new UserError(name == "llava"
            ? $"--family llava: no LLaVA-1.5-7B hub config here, and 7B does not fit this machine; --family {LlavaShaped} has its depth and visual tokens at a reduced width"
            : $"--family '{name}' is not one of {string.Join(", ", Families.Select(f => f.Name).Append(LlavaShaped).Append(LlavaShapedF16))}");

    /// <summary>The benchmark folder for <paramref name="name"/>, made on first use (and said so on <paramref name="report"/>).</summary>
    public static string Resolve(string name, Action<string> report)
    {
        var fixtures = Cli.FindRepoPath(FixturesPath) ?? throw new UserError($"--family needs {FixturesPath} (a source checkout)");
        var root = Path.GetFullPath(Path.Combine(fixtures, "../../../.."));
        if (name == LlavaShaped) return ResolveLlavaShaped(name, Path.Combine(root, CachePath, $"llava-1.5-7b-shaped-h{LlavaShapedHidden}"), ScalarType.Float32, report);
        if (name == LlavaShapedF16) return ResolveLlavaShaped(name, Path.Combine(root, CachePath, $"llava-1.5-7b-shaped-h{LlavaShapedHidden}-f16"), ScalarType.Float16, report);
        var family = Find(name);
        var dir = Path.Combine(root, CachePath, family.HubConfig);
        if (File.Exists(Path.Combine(dir, Marker)))
        {
            report($"--family {name}: {Path.GetRelativePath(Environment.CurrentDirectory, dir)} ({family.HubConfig}'s sizes, random weights; made earlier, reused)");
            return Path.GetRelativePath(Environment.CurrentDirectory, dir);
        }
        report($"--family {name}: writing {family.HubConfig}'s sizes with random bf16 weights to {Path.GetRelativePath(Environment.CurrentDirectory, dir)} (once; gitignored)…");
        var bytes = Synthesize(family, fixtures, dir, tiny: false);
        report($"--family {name}: wrote {bytes / 1e9:N2} GB of weights");
        return Path.GetRelativePath(Environment.CurrentDirectory, dir);
    }

    static string ResolveLlavaShaped(string name, string dir, ScalarType stored, Action<string> report)
    {
        var shown = Path.GetRelativePath(Environment.CurrentDirectory, dir);
        if (File.Exists(Path.Combine(dir, Marker)))
        {
            report($"--family {name}: {shown} (made earlier, reused)");
            return shown;
        }
        report($"--family {name}: writing LLaVA-1.5-7B's depth and visual tokens at width {LlavaShapedHidden}, random weights stored as {stored}, to {shown} (once; gitignored)…");
        var partial = dir + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, true);
        WriteLlavaShaped(partial, LlavaShapedHidden);
        if (stored != ScalarType.Float32)
        {
            var file = Path.Combine(partial, "model.safetensors");
            var reader = SafeTensorsReader.Open(file);
            var tensors = reader.Tensors.Keys.Select(k => (k, reader.Load(k).to_type(stored))).ToList();
            SafeTensorsWriter.Write(file, tensors);
            foreach (var (_, t) in tensors) t.Dispose();
        }
        File.WriteAllText(Path.Combine(partial, Marker), new JsonObject { ["shape"] = "llava-1.5-7b depth, 576 visual tokens", ["hidden"] = LlavaShapedHidden, ["weights"] = "random", ["stored"] = stored.ToString() }.ToJsonString());
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.Move(partial, dir);
        return shown;
    }

    /// <summary>LLaVA-1.5-7B's decoder depth and visual tokens a frame at width <paramref name="hidden"/>, random weights, in our frame layout (<see cref="LlavaShaped"/>).</summary>
    public static void WriteLlavaShaped(string dir, int hidden)
    {
        var cfg = SyntheticCheckpoint.Config(vocab: 512, vHidden: 64, vLayers: 1, imageSize: 336, patch: 14, tHidden: hidden, tLayers: 32,
            heads: hidden / 64, kvHeads: hidden / 64, intermediate: (int)Math.Round(hidden * 11008.0 / 4096 / 64) * 64);
        SyntheticCheckpoint.Write(dir, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(512)), seed: 3,
            extraConfig: new JsonObject { ["ra_frame_marker"] = "w5", ["ra_instruction"] = "w1 w2 w3", ["ra_group_positions"] = true });
    }

    /// <summary>
    /// The folder's config.json: the Hub config (sizes included), with every special-token id the
    /// fixture's config names set to the fixture's (the stand-in tokenizer's) id. <paramref name="tiny"/>:
    /// the fixture's sizes instead (a seconds-long load for tests), in the Hub file's key set.
    /// </summary>
    public static JsonObject Config(Family family, string fixtures, bool tiny)
    {
        var fixture = (JsonObject)JsonFile.Read(Path.Combine(fixtures, family.Fixture, "config.json"), "config.json");
        var config = (JsonObject)HubFile(family.HubConfig, fixtures, "config.json")!.DeepClone();
        Overlay(config, fixture, tiny ? _ => true : IsTokenId);
        return config;
    }

    public static bool IsTokenId(string key) => key.Contains("token_id", StringComparison.Ordinal) || key.Contains("token_index", StringComparison.Ordinal);

    static void Overlay(JsonObject into, JsonObject from, Func<string, bool> take)
    {
        foreach (var (k, v) in from)
        {
            if (v is JsonObject child && into[k] is JsonObject target) Overlay(target, child, take);
            else if (take(k)) into[k] = v?.DeepClone();
        }
    }

    /// <summary>A file of the hub-configs JSON (its key is the file name, possibly followed by a note in parentheses).</summary>
    static JsonObject? HubFile(string hub, string fixtures, string file)
    {
        var path = Path.Combine(fixtures, "hub-configs", hub + ".json");
        var json = (JsonObject)JsonFile.Read(path, hub + ".json");
        return json.Where(kv => kv.Key == file || kv.Key.StartsWith(file + " (", StringComparison.Ordinal)).Select(kv => kv.Value).OfType<JsonObject>().FirstOrDefault();
    }

    /// <summary>Writes the folder (config, processor configs, tokenizer files, random weights) into <paramref name="dir"/>; returns the weight bytes.</summary>
    public static long Synthesize(Family family, string fixtures, string dir, bool tiny, long seed = 0)
    {
        var partial = dir + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, true);
        WriteFiles(family, fixtures, partial, tiny);
        var bytes = RandomWeights.Write(partial, seed);
        File.WriteAllText(Path.Combine(partial, Marker), new JsonObject
        {
            ["hub_config"] = family.HubConfig, ["fixture"] = family.Fixture, ["tiny"] = tiny, ["weights"] = "random bf16, N(0, 0.02²), norm scales 1",
            ["weight_bytes"] = bytes, ["seed"] = seed,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(dir))!);
        Directory.Move(partial, dir);
        return bytes;
    }

    /// <summary>Everything but the weights: config.json, the processor configs and the fixture's tokenizer, template and generation files.</summary>
    public static void WriteFiles(Family family, string fixtures, string partial, bool tiny)
    {
        Directory.CreateDirectory(partial);
        var fixtureDir = Path.Combine(fixtures, family.Fixture);
        var skip = new HashSet<string> { "config.json", "model.safetensors", "expected.json", "expected.safetensors" };
        foreach (var file in Directory.GetFiles(fixtureDir).Where(f => !skip.Contains(Path.GetFileName(f))))
            File.Copy(file, Path.Combine(partial, Path.GetFileName(file)));
        var indented = new JsonSerializerOptions { WriteIndented = true };
        if (!tiny)
            foreach (var file in new[] { "preprocessor_config.json", "processor_config.json" })
            {
                var hub = HubFile(family.HubConfig, fixtures, file)
                    ?? (file == "preprocessor_config.json" && family.PreprocessorFrom is { } other ? HubFile(other, fixtures, file) : null);
                if (hub is null) continue; // the fixture's stays
                hub = (JsonObject)hub.DeepClone();
                if (family.ProcessorClass is { } pc && hub.ContainsKey("processor_class")) hub["processor_class"] = pc;
                File.WriteAllText(Path.Combine(partial, file), hub.ToJsonString(indented));
            }
        File.WriteAllText(Path.Combine(partial, "config.json"), Config(family, fixtures, tiny).ToJsonString(indented));
    }

    /// <summary>Starts a new peak: VmHWM falls to the current resident size (Linux: "5" to /proc/self/clear_refs). False where that is not possible.</summary>
    public static bool ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Peak and current resident memory of this process (VmHWM, VmRSS in /proc/self/status), bytes; null where there is no procfs.</summary>
    public static (long Peak, long Current)? Rss()
    {
        try
        {
            long Kb(string key) => File.ReadLines("/proc/self/status").Where(l => l.StartsWith(key + ":", StringComparison.Ordinal))
                .Select(l => long.Parse(l.Split(':')[1].Trim().Split(' ')[0]) * 1024).First();
            return (Kb("VmHWM"), Kb("VmRSS"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException) { return null; }
    }
}
