using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra live [SOURCE]`: the live window (or, with no display, headless with captions printed).</summary>
public static class LiveCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("source") { Description = "camera index (0), /dev/videoN, video file, FIFO, image folder or 'synthetic[:seed=N]'", DefaultValueFactory = _ => "0" };
        var loop = new Option<bool>("--loop") { Description = "replay a file when it ends" };
        var fps = new Option<double>("--display-fps") { Description = "render rate", DefaultValueFactory = _ => 60 };
        var seconds = new Option<double?>("--seconds") { Description = "stop after this many seconds" };
        var headless = new Option<bool>("--headless") { Description = "do not open a window even if a display exists" };
        var noHud = new Option<bool>("--no-hud") { Description = "start with the HUD hidden (H toggles it)" };
        var snapshot = new Option<string?>("--snapshot") { Description = "when the run ends, save its last overlay frame to this PNG" };
        var threads = new Option<int?>("--threads") { Description = "torch threads for the model (default: all cores; 1 leaves a core to render)" };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var prune = new PruningOptions();
        var cmd = new Command("live", "Live captioning: the video, streaming captions and a latency HUD in a window. " +
            "Keys: H HUD, P pruning, S screenshot, Q/Esc quit; type a question and press Enter to ask it. " +
            "With no display it runs headless and prints each caption with its video time.")
            { source, loop, fps, seconds, headless, noHud, snapshot, threads, model, device, dtype, weights };
        prune.AddTo(cmd); // any pruning flag starts with pruning on (P still toggles it)
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            var spec = pr.GetValue(source)!;
            if (pr.GetValue(fps) is not (> 0 and <= 1000)) throw new UserError("--display-fps must be in (0, 1000]");
            var modelDir = AppModel.Resolve(pr.GetValue(model));
            var pruning = prune.Requested(pr, PruningConfig.BesideModel(modelDir))?.Validate(LlavaConfig.Load(modelDir).Text.NumHiddenLayers);
            // Fail on a bad source before the model and the window: one line, exit 2.
            using (Capture.FrameSources.Open(spec, AppSources.Options() with { GiveUpAfter = TimeSpan.FromSeconds(5) })) { }
            string? why = "--headless";
            var window = pr.GetValue(headless) ? null : LiveApp.TryOpenWindow(960, 600, $"RealtimeAssistant – {spec}", out why);
            if (window is null)
                Console.Error.WriteLine($"live: no window ({why}); running headless (EGL): captions are printed below, Ctrl+C stops");
            using var captioner = AppModel.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights) with { Threads = pr.GetValue(threads) }, pruning: pruning);
            if (pruning is not null) Console.Error.WriteLine($"live: pruning on ({pruning.Method}){(window is null ? "" : "; P turns it off")}");
            using var logging = Cli.Logging();
            var stats = LiveApp.Run(window, new LiveAppOptions
            {
                Source = spec, Loop = pr.GetValue(loop), DisplayFps = pr.GetValue(fps),
                Duration = pr.GetValue(seconds) is { } s ? TimeSpan.FromSeconds(s) : null,
                ShowHud = !pr.GetValue(noHud), SnapshotPath = pr.GetValue(snapshot), PrintCaptions = window is null, Logger = logging.CreateLogger("live"),
            }, captioner, ct);
            LiveApp.PrintSummary(stats);
            return stats.Error is not null ? 1 : interrupt.Requested ? 130 : 0;
        });
    }
}
