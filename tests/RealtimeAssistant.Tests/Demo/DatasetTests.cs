using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class DatasetTests
{
    [Fact]
    public void SamplesAreAPureFunctionOfSplitAndIndex()
    {
        var a = new DemoDataset(DemoSplit.Train);
        var b = new DemoDataset(DemoSplit.Train);
        using var x = a.CaptionSample(12345);
        using var y = b.CaptionSample(12345);
        Assert.Equal(x.Target, y.Target);
        Assert.Equal(SceneTests.Bytes(x.Image), SceneTests.Bytes(y.Image));
        using var q1 = a.QaSample(7);
        using var q2 = b.QaSample(7);
        Assert.Equal((q1.Prompt, q1.Target), (q2.Prompt, q2.Target));
    }

    [Fact]
    public void TrainAndEvalSeedsNeverOverlap()
    {
        var train = new DemoDataset(DemoSplit.Train);
        var eval = new DemoDataset(DemoSplit.Eval);
        for (long i = 0; i < 2000; i++)
        {
            Assert.Equal(0, train.SeedFor(i, 0) & 1);
            Assert.Equal(1, eval.SeedFor(i, 0) & 1);
        }
        var seeds = Enumerable.Range(0, 2000).Select(i => train.SeedFor(i, 0)).ToHashSet();
        Assert.True(seeds.Count > 1990);
    }

    [Fact]
    public void CaptionSamplesDescribeTheirScene()
    {
        var ds = new DemoDataset(DemoSplit.Eval);
        for (long i = 0; i < 50; i++)
        {
            using var s = ds.CaptionSample(i);
            Assert.Equal(DemoVocabulary.CaptionPrompt, s.Prompt);
            Assert.Single(s.Frames);
            Assert.Equal(64, s.Image.Width);
            Assert.Equal(1.0, AttributeScorer.Score(s.Target, ds.SceneFor(i), withMotion: false).F1);
            Assert.DoesNotContain("moving", s.Target); // one frame cannot show motion
        }
    }

    [Fact]
    public void MultiFrameSamplesShowAndDescribeMotion()
    {
        var ds = new DemoDataset(DemoSplit.Train, variedCaptions: true);
        using var s = ds.CaptionSample(3, size: 48, frames: 3);
        Assert.Equal(3, s.Frames.Count);
        Assert.Equal(48, s.Frames[2].Height);
        Assert.NotEqual(SceneTests.Bytes(s.Frames[0]), SceneTests.Bytes(s.Frames[2]));
        Assert.Equal(1.0, AttributeScorer.Score(s.Target, ds.SceneFor(3).Advanced(1)).F1);
    }

    [Fact]
    public void StreamingSamplesEndWithTheWindowCaption()
    {
        var ds = new DemoDataset(DemoSplit.Train);
        int withEvents = 0;
        for (long i = 0; i < 40; i++)
        {
            using var s = ds.StreamingSample(i, frames: 8);
            Assert.Equal(8, s.Frames.Count);
            Assert.Equal(DemoVocabulary.StreamingPrompt, s.Prompt);
            Assert.EndsWith(" .", s.Target);
            if (s.Target.Contains("enters") || s.Target.Contains("leaves") || s.Target.Contains("turns")
                || s.Target.Contains("stops") || s.Target.Contains("starts")) withEvents++;
        }
        Assert.InRange(withEvents, 5, 39); // events are common but not constant
    }

    [Fact]
    public void ValidationScenesAreHeldOut_AndShareNoSeedWithTheEvalScenesTheBenchesScore()
    {
        // analyze picks a schedule on Validation; bench pruning and eval score on Eval (up to 600 scenes).
        var val = new DemoDataset(DemoSplit.Validation);
        var eval = new DemoDataset(DemoSplit.Eval);
        var evalSeeds = Enumerable.Range(0, 1000).SelectMany(i => new[] { eval.SeedFor(i, 0), eval.SeedFor(i, 1), eval.SeedFor(i, 2) }).ToHashSet();
        var valSeeds = Enumerable.Range(0, 1000).SelectMany(i => new[] { val.SeedFor(i, 0), val.SeedFor(i, 1), val.SeedFor(i, 2) }).ToList();
        Assert.All(valSeeds, s => Assert.Equal(1, s & 1)); // odd: never a training seed
        Assert.Empty(valSeeds.Where(evalSeeds.Contains));
        Assert.Equal(3000, valSeeds.Distinct().Count());
    }
}
