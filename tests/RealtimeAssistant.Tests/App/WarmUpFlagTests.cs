using System.CommandLine;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.Model;

namespace RealtimeAssistant.Tests.App;

/// <summary>
/// --warm-up on the commands that stream: auto warms a model up before the first frame where it
/// pays (a GPU, or a small model on the CPU) and says in the header when it does not; on and off
/// decide it; anything else is a user's error.
/// </summary>
public class WarmUpFlagTests
{
    static Realtime Resolve(Engine engine, params string[] args)
    {
        var flags = new RealtimeFlags("every:2");
        var pr = flags.AddTo(new Command("stream")).Parse(args);
        Assert.Empty(pr.Errors);
        flags.Check(pr);
        return flags.Resolve(pr, engine, 15, Pacing.File);
    }

    [Fact]
    public void Auto_WarmsASmallModelUpOnTheCpu_AndOnAndOffDecide()
    {
        using var engine = AppTestSupport.TinyEngine();
        Assert.InRange(engine.Parameters, 1, SessionModes.WarmUpMaxCpuParameters);
        var auto = Resolve(engine);
        Assert.True(auto.Loop.WarmUp);
        Assert.DoesNotContain("warm-up", auto.Header);
        var off = Resolve(engine, "--warm-up", "off");
        Assert.False(off.Loop.WarmUp);
        Assert.EndsWith(" · no warm-up (--warm-up off)", off.Header);
        Assert.True(Resolve(engine, "--warm-up", "ON").Loop.WarmUp);
        Assert.Equal("--warm-up takes auto, on or off, got 'later'", Assert.Throws<UserError>(() => Resolve(engine, "--warm-up", "later")).Message);
    }

    [Fact]
    public void Auto_SkipsTheWarmUpOfALargerModelOnTheCpu_SayingWhy_AndOnStillWarmsIt()
    {
        using var dir = new TempDir();
        var path = dir.File("model");
        Directory.CreateDirectory(path);
        // Two decoder layers of width 1024: about 34 M parameters.
        var cfg = SyntheticCheckpoint.Config(tHidden: 1024, tLayers: 2, heads: 16, kvHeads: 16, intermediate: 4096);
        SyntheticCheckpoint.Write(path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(cfg.Text.VocabSize)), seed: 5);
        using var engine = Engine.Load(path, new EngineOptions { Device = "cpu" });
        Assert.True(engine.Parameters > SessionModes.WarmUpMaxCpuParameters, $"{engine.Parameters} parameters");
        var auto = Resolve(engine);
        Assert.False(auto.Loop.WarmUp);
        Assert.EndsWith($" · no warm-up ({engine.Parameters / 1e6:N0} M parameters on the CPU: a warm-up would cost about a read)", auto.Header);
        var on = Resolve(engine, "--warm-up", "on");
        Assert.True(on.Loop.WarmUp);
        Assert.DoesNotContain("warm-up", on.Header);
    }
}
