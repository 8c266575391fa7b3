using RealtimeAssistant.Model;
using RealtimeAssistant.Training;

namespace RealtimeAssistant.Tests.Training;

public class TrainerTests(ITestOutputHelper log)
{
    static TrainOptions Tiny(string dir, int text, int align, int joint, int every = 1000) => new()
    {
        OutDir = dir, TextSteps = text, AlignSteps = align, JointSteps = joint, BatchSize = 4, LearningRate = 3e-3,
        WarmupSteps = 2, TextLayers = 1, TextHidden = 32, VisionLayers = 1, VisionHidden = 32, CheckpointEvery = every, Seed = 3,
    };

    sealed class Recorder : IProgress<TrainProgress>
    {
        public readonly List<TrainProgress> Seen = new();
        public Action<TrainProgress>? Then;
        public void Report(TrainProgress p) { Seen.Add(p); Then?.Invoke(p); }
    }

    [Fact]
    public void AFewStepsLowerTheLoss_AndTheResultLoadsThroughTheRealLoader()
    {
        using var dir = new TempDir();
        var rec = new Recorder();
        new Trainer(Tiny(dir.Path, 5, 5, 30)).Run(rec, CancellationToken.None);
        Assert.Equal(40, rec.Seen.Count);
        Assert.Equal(new[] { "text", "align", "joint" }, rec.Seen.Select(p => p.Stage).Distinct());
        double first = rec.Seen.Take(3).Average(p => p.BatchLoss), last = rec.Seen.TakeLast(5).Average(p => p.BatchLoss);
        Assert.True(last < first - 0.4, $"loss {first:0.000} → {last:0.000}");
        using var engine = Engine.Load(dir.Path);
        Assert.True(engine.GroupPositions);
        Assert.Equal(8 * 8, ((LlavaFamily)engine.Model).Config.ImageTokens);
        // Streaming sessions on it default their frame band to the frames one frame saw in training.
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "config.json")))!;
        Assert.Equal(4, cfg["ra_frame_band"]!.GetValue<int>()); // streaming windows of 4 frames by default
    }

    [Fact]
    public void InterruptedRunResumesFromItsLastCheckpoint()
    {
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        var rec = new Recorder { Then = p => { if (p.Step == 7) cts.Cancel(); } };
        var options = Tiny(dir.Path, 2, 2, 8, every: 5);
        Assert.Throws<OperationCanceledException>(() => new Trainer(options).Run(rec, cts.Token));
        var trainer = new Trainer(options);
        Assert.Equal(5, trainer.ResumePoint().Step);
        // The checkpoint records the training time so far; pretend it was 1,000 s, so that a resume
        // that forgot it would show (tiny steps take milliseconds).
        var state = Path.Combine(dir.Path, "checkpoint", "trainer_state.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(state))!;
        Assert.True(json["seconds"]!.GetValue<double>() >= 0);
        json["seconds"] = 1000.0;
        File.WriteAllText(state, json.ToJsonString());
        var resumed = new Recorder();
        trainer.Run(resumed, CancellationToken.None);
        // training.json counts the whole run: the first 5 steps as well as the resumed ones.
        double total = SecondsIn(Path.Combine(dir.Path, "training.json"));
        Assert.InRange(total, 1000 + resumed.Seen[^1].Elapsed.TotalSeconds - 0.1, 1000 + 120);
        Assert.Equal(6, resumed.Seen[0].Step);
        Assert.Equal(12, resumed.Seen[^1].Step);
        // Same data and same weights at step 5: the resumed step 6 matches the original step 6.
        Assert.Equal(rec.Seen[5].BatchLoss, resumed.Seen[0].BatchLoss, 3);
        Assert.True(File.Exists(Path.Combine(dir.Path, "model.safetensors")));
    }

    static double SecondsIn(string json) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(json))!["seconds"]!.GetValue<double>();

    [Fact]
    public void MultiFrameBatchesTrainTheDecoderProbe_AndInitFromStartsFromAModel()
    {
        using var first = new TempDir();
        var rec = new Recorder();
        new Trainer(Tiny(first.Path, 0, 0, 30) with { MotionFraction = 1.0, StreamingFraction = 0 }).Run(rec, CancellationToken.None);
        // Every joint batch has two frames, so every step reports the decoder motion probe's accuracy.
        Assert.All(rec.Seen, p => Assert.InRange(p.MotionAccuracy, 0, 1));
        Assert.True(File.Exists(Path.Combine(first.Path, "checkpoint", "decoder_probe.bin")));
        // Two-frame batches only: a frame never saw more than two frames.
        Assert.Equal(2, System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(first.Path, "config.json")))!["ra_frame_band"]!.GetValue<int>());

        // A fine-tune from that model starts where it ended, not at a fresh model's loss.
        using var fresh = new TempDir();
        using var tuned = new TempDir();
        var freshRec = new Recorder();
        var tunedRec = new Recorder();
        new Trainer(Tiny(fresh.Path, 0, 0, 1) with { MotionFraction = 1.0, StreamingFraction = 0, Seed = 9 }).Run(freshRec, CancellationToken.None);
        new Trainer(Tiny(tuned.Path, 0, 0, 1) with { MotionFraction = 1.0, StreamingFraction = 0, Seed = 9, InitFrom = first.Path }).Run(tunedRec, CancellationToken.None);
        Assert.True(tunedRec.Seen[0].BatchLoss < freshRec.Seen[0].BatchLoss - 0.4, $"fresh {freshRec.Seen[0].BatchLoss:0.000}, tuned {tunedRec.Seen[0].BatchLoss:0.000}");
        // A model of other sizes is refused in one line.
        var e = Assert.Throws<UserError>(() => new Trainer(Tiny(Path.Combine(tuned.Path, "other"), 0, 0, 1) with { InitFrom = first.Path, TextHidden = 64 }).Run(null, CancellationToken.None));
        Assert.Contains("sizes differ", e.Message);
        Assert.Throws<UserError>(() => new Trainer(Tiny(tuned.Path, 0, 0, 1) with { InitFrom = "/no/such/model" }));
    }

    [Fact]
    public void AFineTuneStartsFromTheProbeHeadsItsModelWasTrainedWith()
    {
        using var first = new TempDir();
        new Trainer(Tiny(first.Path, 0, 0, 20) with { VisionSteps = 300, MotionFraction = 0.5, StreamingFraction = 0 }).Run(null, CancellationToken.None);
        Assert.Equal(Path.Combine(first.Path, "checkpoint"), Trainer.ProbeHeadsDir(first.Path));
        // The model folder alone, as the shipped one used to be: no heads to start from.
        using var bare = new TempDir();
        foreach (var f in Directory.GetFiles(first.Path)) File.Copy(f, Path.Combine(bare.Path, Path.GetFileName(f)));
        Assert.Null(Trainer.ProbeHeadsDir(bare.Path));

        // One step of a fine-tune with another seed: the step's probe accuracy is the heads' before any update.
        TrainProgress FirstStep(string init)
        {
            using var o = new TempDir();
            var rec = new Recorder();
            new Trainer(Tiny(o.Path, 0, 0, 1) with { MotionFraction = 0.5, StreamingFraction = 0, Seed = 9, InitFrom = init }).Run(rec, CancellationToken.None);
            return rec.Seen[0];
        }
        var withHeads = FirstStep(first.Path);
        var fresh = FirstStep(bare.Path);
        log.WriteLine($"patch shape accuracy at step 1: {withHeads.PatchShapeAccuracy:0.000} with the model's heads, {fresh.PatchShapeAccuracy:0.000} with fresh ones; colour {withHeads.PatchColourAccuracy:0.000} / {fresh.PatchColourAccuracy:0.000}");
        // Measured over six runs: colour 0.53–0.87 with the model's heads, 0.13–0.17 with fresh ones.
        Assert.True(withHeads.PatchColourAccuracy > fresh.PatchColourAccuracy + 0.2);
        Assert.Equal(withHeads.BatchLoss, fresh.BatchLoss, 3); // the same model and batch: only the heads differ

        // Heads kept beside the weights (the shipped demo model's) are found first.
        File.Copy(Path.Combine(first.Path, "checkpoint", Trainer.PatchProbeFile), Path.Combine(bare.Path, Trainer.PatchProbeFile));
        File.Copy(Path.Combine(first.Path, "checkpoint", Trainer.DecoderProbeFile), Path.Combine(bare.Path, Trainer.DecoderProbeFile));
        Assert.Equal(bare.Path, Trainer.ProbeHeadsDir(bare.Path));
        var beside = FirstStep(bare.Path);
        Assert.True(beside.PatchColourAccuracy > fresh.PatchColourAccuracy + 0.2);
    }

    [Fact]
    public void BadSettingsAreUserErrors()
    {
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 0, 0, 0)));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { BatchSize = 0 }));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { LearningRate = -1 }));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { DecoderProbeWeight = -1 }));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { AnswerLossWeight = 0 }));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { VisualExitFraction = 1.5 }));
        var e = Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { TextLayers = 4, VisualExitFraction = 0.5, VisualExitLayers = new[] { 2, 4 } }));
        Assert.Contains("1..3", e.Message);
        e = Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { TextLayers = 4, DecoderProbeLayer = 4 }));
        Assert.Contains("0..3", e.Message);
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { DecoderProbeLayer = -1 }));
    }

    [Fact]
    public void VisualExitBatches_TrainOnTheSameDataWithTheImageCutFromTheExitLayer()
    {
        // One joint step from the same weights and data: with the exit on every batch the loss
        // differs (text lost the image in layer 1), and nothing else about the step changed.
        List<TrainProgress> Steps(double fraction, int fromStep = 0)
        {
            using var dir = new TempDir();
            var rec = new Recorder();
            new Trainer(Tiny(dir.Path, 0, 0, 2) with { TextLayers = 2, VisualExitFraction = fraction, VisualExitLayers = new[] { 1 }, VisualExitFromStep = fromStep })
                .Run(rec, CancellationToken.None);
            return rec.Seen;
        }
        var (plain, again, exited) = (Steps(0), Steps(0), Steps(1));
        Assert.Equal(plain[0].BatchLoss, again[0].BatchLoss, 5);
        // The exit's effect at init is small (about 1e-3) but far above run-to-run noise (< 1e-5).
        Assert.True(Math.Abs(plain[0].BatchLoss - exited[0].BatchLoss) > 1e-4, $"{plain[0].BatchLoss} vs {exited[0].BatchLoss}");
        Assert.Equal(plain[0].PatchShapeAccuracy, exited[0].PatchShapeAccuracy, 5); // the vision side saw the same images
        // With the exit starting at step 1, step 0 is the plain run's step and step 1 is not.
        var late = Steps(1, fromStep: 1);
        Assert.Equal(plain[0].BatchLoss, late[0].BatchLoss, 5);
        Assert.True(Math.Abs(plain[1].BatchLoss - late[1].BatchLoss) > 1e-4, $"{plain[1].BatchLoss} vs {late[1].BatchLoss}");
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { VisualExitFromStep = -1 }));
    }
}
