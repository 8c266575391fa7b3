using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra live [SOURCE]`: the live window (or, with no display, headless with captions printed).</summary>
public static class LiveCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("source") { Description = "camera index (0), /dev/videoN, video file, rtsp:// or http(s):// stream (through ffmpeg; an http(s) URL of a video file, .mp4, .mkv, .webm, .mov, .avi or an ended .m3u8, plays at its own rate and ends), FIFO or '-' (standard input) as a camera, image folder or 'synthetic[:seed=N]'", DefaultValueFactory = _ => "0" };
        var loop = new Option<bool>("--loop") { Description = "replay a file when it ends" };
        var fps = Cli.DisplayFpsOption();
        var seconds = Cli.Seconds(new Option<double?>("--seconds") { Description = "stop after this many seconds" }, max: 7 * 86400);
        var headless = new Option<bool>("--headless") { Description = "do not open a window even if a display exists" };
        var noHud = new Option<bool>("--no-hud") { Description = "start with the HUD hidden (H toggles it)" };
        var snapshot = new Option<string?>("--snapshot") { Description = "when the run ends, save its last overlay frame to this PNG" };
        var threads = Cli.ThreadsOption("torch threads for the model (default: 1 for a model of width ≤ 128, else all cores; 1 leaves a core to render)");
        var giveUp = Cli.GiveUpOption("live");
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var rt = new RealtimeFlags("finished", questions: false);
        var cmd = new Command("live", "Live captioning: the video, streaming captions and a latency HUD in a window. " +
            "Frames stream through the GPE session, with the governor pruning each read to the frame budget (--mode reencode and --prune-method none turn each off). " +
            "Keys: H HUD, P pruning, S screenshot, Q/Esc quit; type a question and press Enter to ask it. " +
            "With no display it runs headless and prints each caption with its video time.")
            { source, loop, fps, seconds, headless, noHud, snapshot, threads, giveUp, model, device, dtype, weights, maxPixels };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            var spec = pr.GetValue(source)!;
            rt.Check(pr);
            var modelDir = AppModel.Resolve(pr.GetValue(model));
            // Fail on a bad source before the model and the window: one line, exit 2.
            double sourceFps = Capture.FrameSources.Check(spec, AppSources.Options()) ?? 30; // a camera's rate is known once it is open
            string? why = "--headless";
            var window = pr.GetValue(headless) ? null : LiveApp.TryOpenWindow(960, 600, $"RealtimeAssistant – {spec}", out why);
            if (window is null)
                Console.Error.WriteLine($"live: no window ({why}); running headless (EGL): captions are printed below, Ctrl+C stops");
            using var engine = Model.Engine.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights, maxPixels) with { Threads = pr.GetValue(threads) });
            var run = rt.Resolve(pr, engine, sourceFps, Pacing.Live);
            Console.Error.WriteLine($"live: {run.Header}{(window is null ? "" : "; P toggles pruning")}");
            using var session = SessionModes.Create(run.Mode, engine, run.Streaming);
            using var logging = Cli.Logging();
            var stats = LiveApp.Run(window, new LiveAppOptions
            {
                Source = spec, Loop = pr.GetValue(loop), DisplayFps = pr.GetValue(fps),
                Duration = pr.GetValue(seconds) is { } s ? TimeSpan.FromSeconds(s) : null,
                // The first caption pays one-time costs (JIT, allocation): the HUD and the summary count from the next.
                WarmupCaptions = 1,
                ShowHud = !pr.GetValue(noHud), GiveUpAfter = TimeSpan.FromSeconds(pr.GetValue(giveUp)), SnapshotPath = pr.GetValue(snapshot), PrintCaptions = window is null, Logger = logging.CreateLogger("live"),
            }, session, run.Loop, ct);
            LiveApp.PrintSummary(stats);
            RealtimeFlags.ReportBudget(stats.Stream, cancelled: false, "live"); // a live run ends by the user's hand: still worth saying
            return LiveApp.ExitCode("live", stats, interrupt.Requested);
        });
    }
}
