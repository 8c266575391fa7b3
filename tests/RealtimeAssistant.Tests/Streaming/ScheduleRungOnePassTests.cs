using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Training;

namespace RealtimeAssistant.Tests.Streaming;

/// <summary>
/// The demo model's schedule rung (the newest frame spared, older frames leaving the deep layers)
/// reads a frame and writes in one decoder pass, as an unpruned session does. With a window wider
/// than the model's frame band, the entries a frame skips differ by layer once older frames left
/// the deep layers: the one pass must skip each layer's own count, as the read alone does.
/// </summary>
public class ScheduleRungOnePassTests
{
    [Fact]
    public void ReadAndWriteInOnePass_IsReadThenWrite_WithABandThatDiffersByLayer()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var schedule = e.Layout.Schedule ?? throw new InvalidOperationException("the demo model ships a pruning schedule");
        Assert.True(schedule.KeepNewestFrame && schedule.OlderFramesExitLayer is > 0 && schedule.OlderFramesExitLayer < e.Text.NumHiddenLayers);
        Assert.True(e.Layout.FrameBand is { } band && band < 6, "the test needs a window wider than the model's frame band");
        var clip = new DemoDataset(DemoSplit.Eval).CaptionSample(2, DemoModelSpec.ImageSize, 9);
        var o = new StreamingOptions { WindowFrames = 6, Pruning = schedule, Generation = new GenerationOptions { MaxNewTokens = 16 } };
        using var separate = new GpeSession(e, o);
        using var fused = new GpeSession(e, o);
        int written = 0;
        for (int i = 0; i < clip.Frames.Count; i++)
        {
            separate.Read(clip.Frames[i]);
            var readLevel = separate.Last.Level;
            var a = string.Concat(separate.Write().Select(t => t.Text));
            var b = string.Concat(fused.ReadAndWrite(clip.Frames[i]).Select(t => t.Text));
            Assert.Equal(a, b);
            // The report names the rung the frame was read at, as a read alone does (captions.jsonl's "level").
            Assert.Equal(SessionBase.LevelName(schedule), readLevel);
            Assert.Equal(readLevel, fused.Last.Level);
            written++;
            for (int l = 0; l < e.Text.NumHiddenLayers; l++)
            {
                var (x, y) = (separate.Cache.Layers[l].Source, fused.Cache.Layers[l].Source);
                Assert.Equal(x.Positions.ToArray(), y.Positions.ToArray());
                double err = (x.Keys - y.Keys).abs().max().item<float>();
                Assert.True(err < 1e-4, $"frame {i} layer {l}: cached keys differ by {err}");
            }
        }
        // The window filled past the band, and older frames left the deep layers: each layer holds its own count.
        Assert.Equal(6, fused.FramesInWindow);
        Assert.NotEqual(fused.Cache.Layers[0].Source.Length, fused.Cache.Layers[^1].Source.Length);
        Assert.Equal(clip.Frames.Count, written);
    }
    [Fact]
    public void EveryRungOfTheGovernorsLadder_ReadsAndWritesInOnePass_AsReadThenWrite()
    {
        // A rung that prunes the new frame decides from the frame's own last row (its marker),
        // as the read alone does, while the instruction's rows ride behind it in the same pass.
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var schedule = e.Layout.Schedule! with { Method = "visipruner" };
        using var clip = new DemoDataset(DemoSplit.Eval).CaptionSample(3, DemoModelSpec.ImageSize, 5);
        int visual;
        using (var enc = e.Model.EncodeOne(clip.Frames[0], ImageUse.VideoFrame)) visual = enc.Count;
        var ladder = FrameGovernor.Ladder(schedule, e.Text.NumHiddenLayers, visual);
        int scored = 0;
        foreach (var rung in ladder)
        {
            var o = new StreamingOptions { WindowFrames = 2, Pruning = rung.Pruning, Generation = new GenerationOptions { MaxNewTokens = 12 } };
            using var separate = new GpeSession(e, o);
            using var fused = new GpeSession(e, o);
            for (int i = 0; i < clip.Frames.Count; i++)
            {
                separate.Read(clip.Frames[i]);
                var read = separate.Last;
                var a = string.Concat(separate.Write().Select(t => t.Text));
                var b = string.Concat(fused.ReadAndWrite(clip.Frames[i]).Select(t => t.Text));
                Assert.Equal(a, b);
                Assert.Equal("read+write", fused.Last.Kind);
                Assert.Equal(read.Prune?.KeptVisual, fused.Last.Prune?.KeptVisual);
                Assert.Equal(read.VisualPerLayer, fused.Last.VisualPerLayer);
                if (fused.Last.Prune is { Probes.Count: > 0 }) scored++;
                for (int l = 0; l < e.Text.NumHiddenLayers; l++)
                    Assert.Equal(separate.Cache.Layers[l].Source.Positions.ToArray(), fused.Cache.Layers[l].Source.Positions.ToArray());
            }
        }
        Assert.True(scored > 0, "no rung's pruner scored a frame: the probe row went untested");
    }
}
