using RealtimeAssistant.Model;
using RealtimeAssistant.Training;

namespace RealtimeAssistant.Tests.Training;

public class TrainerTests
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
        using var engine = LlavaEngine.Load(dir.Path);
        Assert.True(engine.GroupPositions);
        Assert.Equal(8 * 8, engine.Config.ImageTokens);
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
        var resumed = new Recorder();
        trainer.Run(resumed, CancellationToken.None);
        Assert.Equal(6, resumed.Seen[0].Step);
        Assert.Equal(12, resumed.Seen[^1].Step);
        // Same data and same weights at step 5: the resumed step 6 matches the original step 6.
        Assert.Equal(rec.Seen[5].BatchLoss, resumed.Seen[0].BatchLoss, 3);
        Assert.True(File.Exists(Path.Combine(dir.Path, "model.safetensors")));
    }

    [Fact]
    public void BadSettingsAreUserErrors()
    {
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 0, 0, 0)));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { BatchSize = 0 }));
        Assert.Throws<UserError>(() => new Trainer(Tiny("x", 1, 1, 1) with { LearningRate = -1 }));
    }
}
