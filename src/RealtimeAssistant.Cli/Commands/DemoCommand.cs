using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra demo`: the README's main command. The bundled model on the bundled video, streamed through
/// the GPE session with the governor on: in the live window when there is a display, else captions
/// streamed to the terminal and the annotated outputs written to runs/demo-TIMESTAMP/.
/// </summary>
public static class DemoCommand
{
    public const string DemoVideo = "media/demo.mp4";

    public static Command Create()
    {
        var headless = new Option<bool>("--headless") { Description = "never open a window: stream captions to the terminal and write the outputs" };
        var output = Cli.WritesTo(new Option<string?>("--output", "-o") { Description = "output folder when headless (default: runs/demo-TIMESTAMP)" }, folder: true);
        var video = new Option<string?>("--video") { Description = $"video to run on (default: the bundled {DemoVideo})" };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var rt = new RealtimeFlags("finished");
        var cmd = new Command("demo", "Run the bundled demo model on the bundled video: a live window with a display, else captions in the terminal plus annotated outputs. " +
            "GPE streaming with the frame-budget governor on (--mode reencode and --prune-method none turn each off).")
            { headless, output, video, model, device, dtype, weights, maxPixels };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            rt.Check(pr);
            var input = pr.GetValue(video) ?? Cli.FindRepoPath(DemoVideo)
                ?? throw new UserError($"the demo video is missing ({DemoVideo} not found in this checkout)");
            double fps = Capture.FrameSources.Check(input, AppSources.Options()) ?? 30;
            using var engine = Model.Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights, maxPixels));

            if (!pr.GetValue(headless))
            {
                var window = LiveApp.TryOpenWindow(640, 640, "RealtimeAssistant demo", out var why);
                if (window is not null)
                {
                    var live = rt.Resolve(pr, engine, fps, Pacing.Live);
                    Console.Error.WriteLine($"demo: playing {input} in a window: {live.Header} (H: HUD, P: pruning, S: screenshot, type + Enter: ask, Q/Esc: quit)");
                    using var session = SessionModes.Create(live.Mode, engine, live.Streaming);
                    var stats = LiveApp.Run(window, new LiveAppOptions { Source = input, Loop = true, Realtime = true, WarmupCaptions = 1 }, session, live.Loop, ct);
                    LiveApp.PrintSummary(stats);
                    return LiveApp.ExitCode("demo", stats, interrupt.Requested);
                }
                Console.Error.WriteLine($"demo: no window ({why}); streaming the captions here and writing the annotated video instead");
            }

            var run = rt.Resolve(pr, engine, fps, Pacing.File, Cli.IsExplicit(pr, rt.Policy) ? null : AnnotateCommand.EveryPolicy(0, fps, rt.StrideFor(pr, fps)));
            var dir = pr.GetValue(output) ?? Path.Combine("runs", $"demo-{DateTime.Now:yyyyMMdd-HHmmss}");
            Console.Error.WriteLine($"demo: {run.Header}");
            Console.Error.WriteLine($"demo: {input} → {Path.GetFullPath(dir)}/");
            using (var session = SessionModes.Create(run.Mode, engine, run.Streaming))
            {
                var report = Annotator.Run(new AnnotateOptions { Input = input, OutputDir = dir, Console = AnnotateConsole.StreamCaptions }, session, run.Loop, ct);
                Annotator.PrintSummary(report);
                Console.Error.WriteLine($"demo: outputs in {Path.GetFullPath(dir)}/ (annotated.mp4, captions.srt, captions.vtt, captions.jsonl)");
                return report.Cancelled ? 130 : 0;
            }
        });
    }
}
