using System.CommandLine;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.App;

/// <summary>The pruning flags of the user commands (caption, live, annotate, profile, stream): what they turn on, and what it keeps.</summary>
public class PruningFlagsTests
{
    static readonly PruningConfig ModelSchedule = new() { ShallowLayers = 0, FilterFrom = 1, ExitLayer = 2 };

    static PruningConfig? Requested(params string[] args)
    {
        var options = new PruningOptions();
        var cmd = options.AddTo(new Command("x"));
        var parsed = cmd.Parse(args);
        Assert.Empty(parsed.Errors);
        return options.Requested(parsed, ModelSchedule);
    }

    [Fact]
    public void PruningIsOnOnlyWhenAFlagAsksForIt_AndTheModelsScheduleFillsTheRest()
    {
        Assert.Null(Requested());
        Assert.Null(Requested("--prune-method", "none"));
        // One flag: the model's own schedule with that setting changed.
        var exit3 = Requested("--exit-layer", "3")!;
        Assert.Equal(ModelSchedule with { ExitLayer = 3 }, exit3);
        Assert.Equal(ModelSchedule, Requested("--prune-method", "visipruner"));
        Assert.Equal(ModelSchedule with { MinExitLayer = 2 }, Requested("--min-exit-layer", "2"));
        // A file replaces the model's schedule; flags still override it.
        var file = Path.Combine(Capture.TestMedia.TempDir("prune-flags"), "p.json");
        new PruningConfig { Method = "fastv", FastvK = 1 }.Save(file);
        Assert.Equal(new PruningConfig { Method = "fastv", FastvK = 1, FastvKeep = 0.25 }, Requested("--prune-config", file, "--fastv-keep", "0.25"));
    }

    static string StillFrame()
    {
        var path = Path.Combine(Capture.TestMedia.TempDir("prune-caption"), "frame.png");
        using var frame = ClipGenerator.Generate(2_000_017, 1, 15).Render(0, 64, 64);
        Cv2.ImWrite(path, frame);
        return path;
    }

    [Fact]
    public async Task Caption_WithPruningFlags_PrunesItsPrefill_AndReportsEachLayersVisualTokens()
    {
        var model = RealtimeAssistant.Cli.Cli.FindRepoPath(AppModel.DemoModelPath)!;
        var image = StillFrame();
        var stdout = new StringWriter();
        var before = Console.Out;
        int code;
        try
        {
            Console.SetOut(stdout);
            code = await CaptionCommand.Create().Parse(["-m", model, "-i", image, "--json", "--max-new-tokens", "8",
                "--prune-method", "random", "--fastv-k", "1", "--random-keep", "5"]).InvokeAsync();
        }
        finally { Console.SetOut(before); }
        Assert.Equal(0, code);
        // Other tests may write to the console meanwhile: take the caption's own JSON line.
        var line = stdout.ToString().Split('\n').Single(l => l.StartsWith("{\"text\""));
        var pruning = JsonNode.Parse(line)!["pruning"]!;
        Assert.Equal(64, pruning["visual_tokens"]!.GetValue<int>());
        Assert.Equal(5, pruning["kept_tokens"]!.GetValue<int>());
        // All 64 through layers 0 and 1 (cut at 1, after its keys and values), then the 5 kept.
        Assert.Equal(new[] { 64, 64, 5, 5, 5, 5, 5, 5 }, pruning["layers"]!.AsArray().Select(l => l!["visual"]!.GetValue<int>()));
        Assert.True(pruning["flops"]!.GetValue<double>() < pruning["dense_flops"]!.GetValue<double>());

        // An absurd setting is one line and exit 2, not a stack trace.
        Assert.Equal(2, await CaptionCommand.Create().Parse(["-m", model, "-i", image, "--shallow-layers", "99"]).InvokeAsync());
    }

    [Fact]
    public void TheAppPrunesWhenAsked_AndPTurnsItOff()
    {
        // The demo model, a fixed random-keep pruning (no budget), two frames a window: the driver's
        // P switch (the live app's key) runs the next read unpruned and the one after pruned again.
        using var engine = AppModel.Load(null, new EngineOptions());
        var pruning = new PruningConfig { Method = "random", FastvK = 1, RandomKeep = 5 };
        using var session = new GpeSession(engine, new StreamingOptions { WindowFrames = 2, Pruning = pruning });
        using var driver = new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("every:1"), GateThreshold = 0 });
        var clip = ClipGenerator.Generate(1_000_033, 2, 15);
        UpdateReport Read(int frame)
        {
            using var img = clip.Render(frame, 64, 64);
            return Assert.Single(driver.Push(img, frame, TimeSpan.Zero)).Report;
        }
        Assert.Equal(5, Read(0).KeptTokens);   // pruned as it entered: 5 of 64
        driver.PruningEnabled = false;
        var plain = Read(5);
        Assert.Equal(64, plain.KeptTokens);
        Assert.Null(plain.Prune);
        driver.PruningEnabled = true;
        var again = Read(10);
        Assert.Equal(5, again.KeptTokens);
        Assert.Equal(64, again.KeptGrid!.Length); // the heatmap covers the 8×8 grid
        Assert.Equal(5, again.KeptGrid.Count(c => c > 0));
    }

    [Fact]
    public async Task Annotate_RejectsABadPruningFlag_BeforeWritingAnything()
    {
        var dir = Path.Combine(Capture.TestMedia.TempDir("prune-ann"), "out");
        var input = Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("prune-ann-in"), frames: 5);
        Assert.Equal(2, await AnnotateCommand.Create().Parse([input, "-o", dir, "--exit-layer", "0"]).InvokeAsync());
        Assert.False(Directory.Exists(dir));
    }
}
