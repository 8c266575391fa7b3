using System.CommandLine;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>Every <see cref="PruningConfig"/> setting on the command line, over an optional --prune-config JSON file.</summary>
public sealed class PruningOptions
{
    public readonly Option<string?> File = new("--prune-config") { Description = "pruning settings as JSON (snake_case keys; `ra analyze` writes one); flags below override it" };
    public readonly Option<string?> Method = new("--prune-method") { Description = "none, visipruner, fastv or random" };
    public readonly Option<int?> Shallow = new("--shallow-layers") { Description = "s: layers 0..s-1 bar text from vision (reference: 6)" };
    public readonly Option<bool?> Sink = new("--sink") { Description = "keep one sink visual token per frame for text in the shallow stage (default true)" };
    public readonly Option<double?> LayerThr = new("--layer-threshold") { Description = "filtering test fires when min cos < this (reference: 0.995)" };
    public readonly Option<double?> TokensThr = new("--tokens-threshold") { Description = "keep tokens with ||contrib|| above this (reference: 0.2)" };
    public readonly Option<int?> FilterFrom = new("--filter-from") { Description = "first layer running the filtering test (default s+1)" };
    public readonly Option<double?> ExitThr = new("--exit-threshold") { Description = "exit test passes when every cos >= this (reference: 0.999)" };
    public readonly Option<int?> ExitPasses = new("--exit-passes") { Description = "passes (cumulative) before every visual token is dropped (reference: 2)" };
    public readonly Option<int?> ExitLayer = new("--exit-layer") { Description = "fixed exit: no visual token reaches layers >= this" };
    public readonly Option<bool?> KeepNewest = new("--keep-newest-frame") { Description = "several frames in a prompt: never prune the newest; the filter and exit act on the older ones" };
    public readonly Option<int?> OlderExit = new("--older-frames-exit-layer") { Description = "with --keep-newest-frame: no older frame's token reaches layers >= this (default: --exit-layer)" };
    public readonly Option<int?> MinExit = new("--min-exit-layer") { Description = "the earliest exit the frame-budget governor reads a frame at; below it, it skips frames (default: the first layer after the shallow stage, s + 1; `ra analyze` measures one)" };
    public readonly Option<long?> MinFramePixels = new("--min-frame-pixels") { Description = "Qwen2-VL and Qwen2.5-VL: the fewest pixels the frame-budget governor reads a frame at (default 100352, 128 tokens; a frame's own area or more: it never lowers the resolution)" };
    public readonly Option<int?> Budget = new("--budget") { Description = "budget mode: at most k visual tokens per frame (top-k by ||contrib||)" };
    public readonly Option<int?> Deadline = new("--deadline-layer") { Description = "budget mode: filter at this layer if the test has not fired" };
    public readonly Option<int?> FastvK = new("--fastv-k") { Description = "FastV / random: the layer after which tokens are cut (default 2)" };
    public readonly Option<double?> FastvKeep = new("--fastv-keep") { Description = "FastV: fraction of visual tokens kept (default 0.5)" };
    public readonly Option<int?> RandomKeep = new("--random-keep") { Description = "random: visual tokens kept per frame (default 16)" };

    Option[] All => new Option[] { File, Method, Shallow, Sink, LayerThr, TokensThr, FilterFrom, ExitThr, ExitPasses, ExitLayer, KeepNewest, OlderExit, MinExit, MinFramePixels, Budget, Deadline, FastvK, FastvKeep, RandomKeep };

    public Command AddTo(Command c)
    {
        foreach (var o in All) c.Options.Add(o);
        return c;
    }

    /// <summary>Whether any pruning flag or file was given.</summary>
    public bool Given(ParseResult pr) => All.Any(o => pr.GetResult(o) is not null);

    /// <summary>
    /// The pruning a run should start with: null when no pruning option was given or the method
    /// is none. <paramref name="modelSchedule"/> (the model's own, <see cref="PruningConfig.BesideModel"/>)
    /// fills in whatever the file and flags leave unset, so `--prune-method visipruner` alone runs
    /// the schedule `ra analyze` measured for that model.
    /// </summary>
    public PruningConfig? Requested(ParseResult pr, PruningConfig modelSchedule)
    {
        if (!Given(pr)) return null;
        var c = Read(pr, modelSchedule);
        return c.Method == "none" ? null : c;
    }

    /// <summary>The file's settings (or <paramref name="fallback"/>, or the reference defaults) with the flags given applied.</summary>
    public PruningConfig Read(ParseResult pr, PruningConfig? fallback = null)
    {
        var c = pr.GetValue(File) is { } f ? PruningConfig.Load(f) : fallback ?? new PruningConfig();
        return c with
        {
            Method = pr.GetValue(Method) ?? c.Method,
            ShallowLayers = pr.GetValue(Shallow) ?? c.ShallowLayers,
            Sink = pr.GetValue(Sink) ?? c.Sink,
            LayerThreshold = pr.GetValue(LayerThr) ?? c.LayerThreshold,
            TokensThreshold = pr.GetValue(TokensThr) ?? c.TokensThreshold,
            FilterFrom = pr.GetValue(FilterFrom) ?? c.FilterFrom,
            ExitThreshold = pr.GetValue(ExitThr) ?? c.ExitThreshold,
            ExitPasses = pr.GetValue(ExitPasses) ?? c.ExitPasses,
            ExitLayer = pr.GetValue(ExitLayer) ?? c.ExitLayer,
            KeepNewestFrame = pr.GetValue(KeepNewest) ?? c.KeepNewestFrame,
            OlderFramesExitLayer = pr.GetValue(OlderExit) ?? c.OlderFramesExitLayer,
            MinExitLayer = pr.GetValue(MinExit) ?? c.MinExitLayer,
            MinFramePixels = pr.GetValue(MinFramePixels) ?? c.MinFramePixels,
            Budget = pr.GetValue(Budget) ?? c.Budget,
            DeadlineLayer = pr.GetValue(Deadline) ?? c.DeadlineLayer,
            FastvK = pr.GetValue(FastvK) ?? c.FastvK,
            FastvKeep = pr.GetValue(FastvKeep) ?? c.FastvKeep,
            RandomKeep = pr.GetValue(RandomKeep) ?? c.RandomKeep,
        };
    }
}
