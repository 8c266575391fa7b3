using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra annotate IN -o DIR`: captions burned into a video plus SRT, VTT and JSONL, at model speed.</summary>
public static class AnnotateCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "video file (or image folder, FIFO, 'synthetic')" };
        var output = new Option<string>("--output", "-o") { Description = "output folder", Required = true };
        var every = new Option<int>("--every") { Description = "a new caption every N frames (1 = every frame; default: one per second of video)", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force") { Description = "overwrite the outputs of an earlier run in the folder" };
        var resume = new Option<bool>("--resume") { Description = "continue an earlier, interrupted run after its last caption" };
        var hud = new Option<bool>("--hud") { Description = "burn the latency HUD into the video too" };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var prune = new PruningOptions();
        var cmd = new Command("annotate", "Annotate a video: annotated.mp4 with the captions burned in, plus captions.srt, .vtt and .jsonl.")
            { input, output, every, force, resume, hud, model, device, dtype, weights };
        prune.AddTo(cmd); // any pruning flag prunes every caption
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            if (pr.GetValue(every) < 0) throw new UserError("--every must be 1 or more (or 0 for one caption per second)");
            var options = new AnnotateOptions
            {
                Input = pr.GetValue(input)!, OutputDir = pr.GetValue(output)!, Every = pr.GetValue(every),
                Force = pr.GetValue(force), Resume = pr.GetValue(resume), Hud = pr.GetValue(hud),
            };
            // Check the folder and the input before the model loads: bad arguments fail fast.
            Output.OutputFolder.Plan(options.OutputDir, options.Force, options.Resume);
            using (Capture.FrameSources.Open(options.Input, AppSources.Options())) { }
            var modelDir = AppModel.Resolve(pr.GetValue(model));
            var pruning = prune.Requested(pr, PruningConfig.BesideModel(modelDir))?.Validate(LlavaConfig.Load(modelDir).Text.NumHiddenLayers);
            using var captioner = AppModel.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights), pruning: pruning);
            if (pruning is not null) Console.Error.WriteLine($"annotate: pruning every caption ({pruning.Method}); kept_tokens in captions.jsonl says what each kept");
            var report = Annotator.Run(options, captioner, ct);
            Annotator.PrintSummary(report);
            return report.Cancelled ? 130 : 0;
        });
    }
}
