using System.Text.Json;
using System.Text.Json.Serialization;

namespace RealtimeAssistant.Pruning;

/// <summary>
/// Every pruning setting, loadable from a JSON file (snake_case keys) and overridable on the CLI.
/// Defaults are the VisiPruner reference's (s = 6, layer threshold 0.995, tokens threshold 0.2,
/// exit at cos ≥ 0.999 after 2 cumulative passes). Layer indices are 0-based.
/// </summary>
public sealed record PruningConfig
{
    /// <summary>none, visipruner, fastv or random.</summary>
    public string Method { get; init; } = "visipruner";
    /// <summary>s: layers 0..s−1 are the shallow stage (text never scores visual keys).</summary>
    public int ShallowLayers { get; init; } = 6;
    /// <summary>The shallow stage keeps one sink visual token (each frame's first) that text may attend to.</summary>
    public bool Sink { get; init; } = true;
    /// <summary>The filtering test fires when min_j cos(o − contrib_j, o) is below this.</summary>
    public double LayerThreshold { get; init; } = 0.995;
    /// <summary>At the filtering layer, keep the visual tokens with ‖contrib_j‖₂ above this.</summary>
    public double TokensThreshold { get; init; } = 0.2;
    /// <summary>First layer that runs the filtering test; default s + 1 (the reference's).</summary>
    public int? FilterFrom { get; init; }
    /// <summary>The exit test passes at a layer when every cos ≥ this.</summary>
    public double ExitThreshold { get; init; } = 0.999;
    /// <summary>After this many passes (cumulative), every visual token is dropped from the next layer on.</summary>
    public int ExitPasses { get; init; } = 2;
    /// <summary>A fixed exit: no visual token reaches layers ≥ this (e.g. what analyze measured); null = the exit test only.</summary>
    public int? ExitLayer { get; init; }
    /// <summary>
    /// Several frames in one prompt (not in the reference): the newest frame is never pruned, and
    /// the filter and the exit act on the older frames only. A lone frame is pruned as usual. On
    /// the demo model, two-frame captions keep their F1 this way where dropping every frame at the
    /// exit loses 0.19 (BENCHMARKS.md, Pruning).
    /// </summary>
    public bool KeepNewestFrame { get; init; }
    /// <summary>With <see cref="KeepNewestFrame"/> and several frames: no older frame's token reaches layers ≥ this (null: <see cref="ExitLayer"/>).</summary>
    public int? OlderFramesExitLayer { get; init; }
    /// <summary>
    /// The earliest exit the frame-budget governor reads a frame at. Where a model's captions
    /// collapse when visual tokens leave earlier than this, a read there holds the budget with a
    /// caption that says little; below it the governor skips frames instead. Null: <see cref="Floor"/>.
    /// </summary>
    public int? MinExitLayer { get; init; }
    /// <summary>
    /// The governor's earliest exit: min_exit_layer where measured, else the first layer after the
    /// shallow stage. The stage holds that the text does not need the frame in layers 0..s−1, so
    /// an exit at or before s would keep little of it by the schedule's own account.
    /// </summary>
    [JsonIgnore] public int Floor => MinExitLayer ?? ShallowLayers + 1;
    /// <summary>
    /// A dynamic-resolution family (Qwen2-VL, Qwen2.5-VL): the fewest pixels the frame-budget
    /// governor reads a frame at. Null: 128 merged tokens' worth (qwen-vl-utils' least video
    /// frame); at or above a frame's own area, the governor never lowers its resolution.
    /// </summary>
    public long? MinFramePixels { get; init; }
    /// <summary>Budget mode: keep at most k visual tokens per frame (top-k by ‖contrib‖); null = threshold mode.</summary>
    public int? Budget { get; init; }
    /// <summary>Budget mode: filtering is forced at this layer if the test has not fired; default min(s + 2, layers − 2).</summary>
    public int? DeadlineLayer { get; init; }
    /// <summary>FastV: rank the visual tokens at layer K by the last token's attention…</summary>
    public int FastvK { get; init; } = 2;
    /// <summary>…and keep this fraction of them (FastV's default drops 50%).</summary>
    public double FastvKeep { get; init; } = 0.5;
    /// <summary>Random baseline: keep this many visual tokens per frame, chosen at layer FastvK.</summary>
    public int RandomKeep { get; init; } = 16;
    public int Seed { get; init; }

    public static readonly string[] Methods = { "none", "visipruner", "fastv", "random" };

    /// <summary>
    /// The reference's defaults for a model of <paramref name="layers"/> decoder layers: its
    /// shallow stage (6 of LLaVA-7B's 32 layers) scaled to the depth, so a model without a
    /// measured schedule (no pruning.json) can still be pruned; `ra analyze` measures a better one.
    /// </summary>
    public static PruningConfig Reference(int layers) =>
        new() { ShallowLayers = Math.Clamp((int)Math.Round(6.0 * layers / 32), 0, Math.Max(0, layers - 2)) };

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static PruningConfig Load(string path)
    {
        if (!File.Exists(path)) throw new UserError($"pruning config not found: {path}");
        try { return JsonSerializer.Deserialize<PruningConfig>(File.ReadAllText(path), Json) ?? throw new UserError($"pruning config {path} is empty"); }
        catch (JsonException e) { throw new UserError($"pruning config {path}: {e.Message}"); }
    }

    /// <summary>The schedule measured for a model (pruning.json beside its weights, from `ra analyze`), else the reference defaults.</summary>
    public static PruningConfig BesideModel(string modelDir)
    {
        var path = Path.Combine(modelDir, "pruning.json");
        return File.Exists(path) ? Load(path) : new PruningConfig();
    }

    public string ToJson() => JsonSerializer.Serialize(this, Json);
    public void Save(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, ToJson());
    }

    [JsonIgnore] public int FirstTestLayer => FilterFrom ?? ShallowLayers + 1;
    public int Deadline(int layers) => DeadlineLayer ?? Math.Max(FirstTestLayer, Math.Min(ShallowLayers + 2, layers - 2));

    /// <summary>Checks every setting against a model with <paramref name="layers"/> decoder layers.</summary>
    public PruningConfig Validate(int layers)
    {
        if (!Methods.Contains(Method)) throw new UserError($"pruning method '{Method}' is not one of {string.Join(", ", Methods)}");
        if (Method == "visipruner") ValidateVisiPruner(layers); // s and the thresholds are VisiPruner's only
        // The depth bound only where the layer is used (the default 2 can exceed a tiny model's); a negative layer never names one.
        if (FastvK < 0 || Method is "fastv" or "random" && FastvK >= layers) throw new UserError($"fastv_k must be in 0..{layers - 1}, got {FastvK}");
        if (!(FastvKeep >= 0 && FastvKeep <= 1)) throw new UserError($"fastv_keep must be in [0, 1], got {FastvKeep}");
        if (RandomKeep < 0) throw new UserError($"random_keep must be ≥ 0, got {RandomKeep}");
        return this;
    }

    void ValidateVisiPruner(int layers)
    {
        static bool Unit(double x) => x > 0 && x <= 1 && !double.IsNaN(x);
        if (ShallowLayers < 0) throw new UserError($"shallow_layers (s) must be ≥ 0, got {ShallowLayers}");
        if (ShallowLayers >= layers)
            throw new UserError($"shallow_layers (s) = {ShallowLayers} is beyond this model's {layers} decoder layers (use 0..{layers - 1}; `ra analyze` proposes one)");
        if (!Unit(LayerThreshold)) throw new UserError($"layer_threshold must be in (0, 1], got {LayerThreshold}");
        if (!Unit(ExitThreshold)) throw new UserError($"exit_threshold must be in (0, 1], got {ExitThreshold}");
        if (!(TokensThreshold >= 0) || double.IsInfinity(TokensThreshold)) throw new UserError($"tokens_threshold must be a finite number ≥ 0, got {TokensThreshold}");
        if (ExitPasses < 1) throw new UserError($"exit_passes must be ≥ 1, got {ExitPasses}");
        if (FilterFrom is { } f && (f < ShallowLayers || f >= layers)) throw new UserError($"filter_from must be in {ShallowLayers}..{layers - 1} (not in the shallow stage), got {f}");
        if (ExitLayer is { } x && (x < 1 || x > layers)) throw new UserError($"exit_layer must be in 1..{layers}, got {x}");
        // Text attends only a sink token per frame in the shallow stage, so an exit inside it leaves the caption blind.
        if (ExitLayer is { } xs && xs <= ShallowLayers)
            throw new UserError($"exit_layer {xs} is inside the shallow stage (shallow_layers {ShallowLayers}: text reads no image token before layer {ShallowLayers}), so captions would never see the image; use an exit above {ShallowLayers} or fewer shallow layers");
        if (OlderFramesExitLayer is { } ox && (ox < 1 || ox > layers)) throw new UserError($"older_frames_exit_layer must be in 1..{layers}, got {ox}");
        if (OlderFramesExitLayer is not null && !KeepNewestFrame) throw new UserError("older_frames_exit_layer needs keep_newest_frame (without it every frame exits at exit_layer)");
        if (MinExitLayer is { } mx && (mx < 1 || mx > layers)) throw new UserError($"min_exit_layer must be in 1..{layers}, got {mx}");
        if (MinFramePixels is { } mp && mp < 1) throw new UserError($"min_frame_pixels must be a positive number of pixels, got {mp}");
        if (Budget is { } k && k < 0) throw new UserError($"budget k (tokens per frame) must be ≥ 0, got {k}");
        if (DeadlineLayer is { } d && (d < FirstTestLayer || d >= layers))
            throw new UserError($"deadline_layer must be in {FirstTestLayer}..{layers - 1} (from the first filtering-test layer), got {d}");
    }

    /// <summary>The pruner this config describes, validated for a model with <paramref name="layers"/> layers.</summary>
    public ITokenPruner CreatePruner(int layers)
    {
        Validate(layers);
        return Method switch
        {
            "none" => new NonePruner(),
            "fastv" => new FastVPruner(FastvK, FastvKeep),
            "random" => new RandomPruner(FastvK, RandomKeep, Seed),
            _ => new VisiPruner(this, layers),
        };
    }
}
