using System.CommandLine;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Training;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra train`: trains the demo model from scratch on the scene world (CPU).</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var output = Cli.WritesTo(new Option<string>("--output", "-o") { Description = "model folder to write (resumes if it holds a checkpoint)", DefaultValueFactory = _ => "runs/demo-model" }, folder: true);
        // Defaults are the shipped model's recipe (media/demo-model/MODEL_CARD.md).
        var visionSteps = new Option<int>("--vision-steps") { DefaultValueFactory = _ => 2000, Description = "stage 0: vision tower alone on dense patch labels" };
        var textSteps = new Option<int>("--text-steps") { DefaultValueFactory = _ => 0, Description = "stage 1: decoder on text alone" };
        var alignSteps = new Option<int>("--align-steps") { DefaultValueFactory = _ => 0, Description = "stage 2: vision+projector, decoder frozen" };
        var jointSteps = new Option<int>("--joint-steps") { DefaultValueFactory = _ => 3500, Description = "stage 3: everything" };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 32 };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 2e-3 };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 1L };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 100 };
        var layers = new Option<int>("--text-layers") { DefaultValueFactory = _ => 8 };
        var hidden = new Option<int>("--text-hidden") { DefaultValueFactory = _ => 128 };
        var vlayers = new Option<int>("--vision-layers") { DefaultValueFactory = _ => 3 };
        var vhidden = new Option<int>("--vision-hidden") { DefaultValueFactory = _ => 128 };
        var threads = Cli.ThreadsOption();
        var varied = new Option<bool>("--varied-captions") { Description = "train on the grammar's varied captions (default: canonical reading order)" };
        var patchLoss = new Option<double>("--patch-loss") { DefaultValueFactory = _ => 1.0, Description = "weight of the vision tower's dense patch loss (0 = off)" };
        var motion = new Option<double>("--motion-fraction") { DefaultValueFactory = _ => 0.4, Description = "fraction of two-frame (motion) batches" };
        var streaming = new Option<double>("--streaming-fraction") { DefaultValueFactory = _ => 0.15, Description = "fraction of streaming clip-window batches" };
        var decoderProbe = new Option<double>("--decoder-probe-loss", "--motion-loss") { DefaultValueFactory = _ => 1.0, Description = "weight of the decoder's dense colour, shape and motion loss at its middle layer (0 = off)" };
        var questions = new Option<int>("--questions") { DefaultValueFactory = _ => 6, Description = "questions about the same frames trained with each caption (0 = separate caption and question batches)" };
        var questionMix = new Option<QuestionMix>("--question-mix") { DefaultValueFactory = _ => QuestionMix.Uniform, Description = "how question types are drawn: Uniform (the shipped model), or Focused on binding (colour of a shape, counts, existence with hard negatives)" };
        var answerWeight = new Option<double>("--answer-weight") { DefaultValueFactory = _ => 2.0, Description = "loss weight of each question-branch answer token against a caption token's 1" };
        var initFrom = new Option<string?>("--init-from") { Description = "start from this model folder's weights (a fine-tune) instead of random ones" };
        var exitFraction = new Option<double>("--visual-exit-fraction") { DefaultValueFactory = _ => 0, Description = "fraction of image batches where text stops reading the image at a visual-exit layer (prune-aware training; 0 = off)" };
        var probeLayer = new Option<int?>("--decoder-probe-layer") { Description = "decoder layer whose output the dense probe reads (default: the middle one, layers/2 - 1); for a visual exit at layer L, L - 2 teaches the visual rows motion before text stops reading them" };
        var exitLayers = new Option<int[]>("--visual-exit-layers") { DefaultValueFactory = _ => new[] { 2 }, AllowMultipleArgumentsPerToken = true, Description = "decoder layers a visual exit is drawn from" };
        var exitFrom = new Option<int>("--visual-exit-from-step") { DefaultValueFactory = _ => 0, Description = "first step (over all stages) that may draw a visual exit: learn the task first, add the exit at the end" };
        var cmd = new Command("train", "Train the demo model (llava layout) from scratch on the synthetic scene world.")
            { output, visionSteps, textSteps, alignSteps, jointSteps, batch, lr, seed, every, layers, hidden, vlayers, vhidden, threads, varied, patchLoss, motion, streaming, decoderProbe, probeLayer, questions, questionMix, answerWeight, initFrom, exitFraction, exitLayers, exitFrom };
        return cmd.WithAction((pr, ct) =>
        {
            if (pr.GetValue(threads) is { } n) RealtimeAssistant.Model.Engine.SetThreads(n);
            var options = new TrainOptions
            {
                OutDir = pr.GetValue(output)!, VisionSteps = pr.GetValue(visionSteps), TextSteps = pr.GetValue(textSteps), AlignSteps = pr.GetValue(alignSteps),
                JointSteps = pr.GetValue(jointSteps), BatchSize = pr.GetValue(batch), LearningRate = pr.GetValue(lr),
                Seed = pr.GetValue(seed), CheckpointEvery = Math.Max(1, pr.GetValue(every)), TextLayers = pr.GetValue(layers),
                TextHidden = pr.GetValue(hidden), VisionLayers = pr.GetValue(vlayers), VisionHidden = pr.GetValue(vhidden),
                VariedCaptions = pr.GetValue(varied), PatchLossWeight = pr.GetValue(patchLoss),
                MotionFraction = pr.GetValue(motion), StreamingFraction = pr.GetValue(streaming),
                DecoderProbeWeight = pr.GetValue(decoderProbe), DecoderProbeLayer = pr.GetValue(probeLayer), QuestionsPerCaption = pr.GetValue(questions), QuestionMix = pr.GetValue(questionMix), AnswerLossWeight = pr.GetValue(answerWeight), InitFrom = pr.GetValue(initFrom),
                VisualExitFraction = pr.GetValue(exitFraction), VisualExitLayers = pr.GetValue(exitLayers)!, VisualExitFromStep = pr.GetValue(exitFrom),
            };
            try { return Task.FromResult(Train(options, ct)); }
            catch (System.Runtime.InteropServices.ExternalException e) when (e.Message.Contains("c10/core/Scalar.h"))
            {
                // libtorch found a scalar argument with a garbage tag. Most likely TorchSharp 0.107's
                // implicit scalars, left to the finalizer (dotnet/TorchSharp#1496), freed mid-call.
                // Rare (about once an hour of training here); the checkpoint a rerun resumes is intact.
                Console.Error.WriteLine("error: libtorch found a corrupt scalar argument (a rare TorchSharp fault, not your settings); "
                    + "the last checkpoint is intact: run the same command again to resume (./ra train does so itself)");
                return Task.FromResult(TransientNativeFault);
            }
        });
    }

    /// <summary>Exit code of a run that died of a known transient native fault: rerunning resumes it (EX_TEMPFAIL).</summary>
    public const int TransientNativeFault = 75;

    static int Train(TrainOptions options, CancellationToken ct)
    {
        var trainer = new Trainer(options);
        var (resume, _) = trainer.ResumePoint();
        if (resume > 0) AnsiConsole.MarkupLine($"[yellow]resuming from step {resume}[/]");
        else if (options.InitFrom is { } init && Trainer.ProbeHeadsDir(init) is null)
            AnsiConsole.MarkupLine($"[yellow]--init-from {Markup.Escape(init)}: no probe heads there ({Trainer.PatchProbeFile}); they start from --seed {options.Seed}, and a seed other than the one that model was trained with can pull its features apart[/]");
        bool interactive = !Console.IsOutputRedirected;
        if (interactive)
        {
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: options.TotalSteps);
                    task.Value = resume;
                    trainer.Run(new Progress(p =>
                    {
                        task.Value = p.Step;
                        task.Description = $"{p.Stage} loss {p.Loss:0.000}";
                    }), ct);
                });
        }
        else
        {
            // Logs (CI, nohup): one line every 20 steps with loss and ETA.
            trainer.Run(new Progress(p =>
            {
                if (p.Step % 20 != 0 && p.Step != p.TotalSteps) return;
                var rate = p.Elapsed.TotalSeconds / Math.Max(1, p.Step - resume);
                var eta = TimeSpan.FromSeconds(rate * (p.TotalSteps - p.Step));
                Console.WriteLine($"step {p.Step}/{p.TotalSteps} {p.Stage} loss {p.Loss:0.0000} lr {p.LearningRate:0.00e0} image/text scale {p.FeatureScale:0.00} image diversity {p.FeatureDiversity:0.000} patch shape acc {p.PatchShapeAccuracy:0.000} colour acc {p.PatchColourAccuracy:0.000} motion acc {p.MotionAccuracy:0.000} elapsed {p.Elapsed:hh\\:mm\\:ss} eta {eta:hh\\:mm\\:ss}");
            }), ct);
        }
        AnsiConsole.MarkupLine($"[green]model written to {Markup.Escape(options.OutDir)}[/]");
        return 0;
    }

    /// <summary>Synchronous IProgress (System.Progress posts to the thread pool, out of order).</summary>
    sealed class Progress(Action<TrainProgress> report) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value) => report(value);
    }
}
