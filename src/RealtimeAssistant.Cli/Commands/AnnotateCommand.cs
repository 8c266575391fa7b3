using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra annotate IN -o DIR`: captions burned into a video plus SRT, VTT and JSONL, at model speed.</summary>
public static class AnnotateCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "video file (or an http(s):// or rtsp:// URL, an image folder, 'synthetic', or a FIFO or '-' for standard input), read to its end, every frame" };
        var output = Cli.WritesTo(new Option<string>("--output", "-o") { Description = "output folder", Required = true }, folder: true);
        var every = new Option<int>("--every") { Description = "a new caption about every N source frames (default: one per second of video); sets --policy every:(N / stride)", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force") { Description = "overwrite the outputs of an earlier run in the folder" };
        var resume = new Option<bool>("--resume") { Description = "continue an earlier, interrupted run after its last caption" };
        var hud = new Option<bool>("--hud") { Description = "burn the latency HUD into the video too" };
        var giveUp = Cli.GiveUpOption("annotate");
        var limit = new Option<int>("--max-frames") { DefaultValueFactory = _ => 0, Description = "stop after the source's first N frames, as if it ended there (a camera or live stream has no end of its own; 0 = to its end)" };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var rt = new RealtimeFlags("every:6");
        var cmd = new Command("annotate", "Annotate a video: annotated.mp4 with the captions burned in, plus captions.srt, .vtt and .jsonl. " +
            "Frames stream through the GPE session with the governor holding each read to the frame budget (--mode reencode and --prune-method none turn each off); --ask answers questions at given times.")
            { input, output, every, force, resume, hud, limit, giveUp, model, device, dtype, weights, maxPixels };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            if (pr.GetValue(every) < 0) throw new UserError("--every must be 1 or more (or 0 for one caption per second)");
            if (pr.GetValue(limit) < 0) throw new UserError("--max-frames must be ≥ 0");
            rt.Check(pr);
            var options = new AnnotateOptions
            {
                Input = pr.GetValue(input)!, OutputDir = pr.GetValue(output)!,
                Force = pr.GetValue(force), Resume = pr.GetValue(resume), Hud = pr.GetValue(hud),
            };
            // Check the folder and the input before the model loads: bad arguments fail fast.
            var plan = Output.OutputFolder.Plan(options.OutputDir, options.Force, options.Resume);
            // Opened once, before the model: a bad input fails fast, and a pipe (read once) gives its rate now.
            Capture.IFrameSource? source = Capture.FrameSources.Open(options.Input, Annotator.SourceOptions with { GiveUpAfter = TimeSpan.FromSeconds(pr.GetValue(giveUp)) });
            var opened = source;
            try
            {
                double fps = source.Fps;
                if (plan.Mode == Output.OutputMode.Resume && Annotator.IsComplete(plan, source) is { } frames)
                {
                    // Nothing after the last caption: no model to load, and no empty part to write.
                    Console.Error.WriteLine($"annotate: {options.OutputDir} is complete: its {plan.Existing.Count} captions reach the video's last frame ({frames} frames); nothing to resume");
                    return 0;
                }
                using var engine = Model.Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights, maxPixels));
                var run = rt.Resolve(pr, engine, fps, Pacing.File, Cli.IsExplicit(pr, rt.Policy) ? null : EveryPolicy(pr.GetValue(every), fps, rt.StrideFor(pr, fps)));
                Console.Error.WriteLine($"annotate: {run.Header}");
                using var session = SessionModes.Create(run.Mode, engine, run.Streaming);
                var report = Annotator.Run(options, session, run.Loop with { MaxFrames = pr.GetValue(limit) }, ct, Interlocked.Exchange(ref source, null)); // the run's loop owns it now
                Annotator.PrintSummary(report);
                RealtimeFlags.ReportUnasked(report.Unasked, report.Cancelled, "annotate");
                RealtimeFlags.ReportBudget(report.Stats, report.Cancelled, "annotate");
                return report.Cancelled ? 130 : Cli.ReportLost(opened, "annotate");
            }
            finally { source?.Dispose(); }
        });
    }

    /// <summary>--every N source frames as a write policy over reads (one read per stride): every:max(1, N / stride); N = 0: one per second.</summary>
    public static string EveryPolicy(int every, double fps, int stride)
    {
        int frames = every > 0 ? every : Math.Max(1, (int)Math.Round(fps is > 0 and < 1000 ? fps : 30));
        return $"every:{Math.Max(1, (int)Math.Round(frames / (double)stride))}";
    }
}
