using RealtimeAssistant.Capture;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Streaming;

/// <summary>
/// The model's warm-up before a stream's first frame: a throwaway session reads a synthetic frame
/// and writes a short caption, once per engine and mode, and the stream's own session is left
/// as it was, so its captions are a cold run's.
/// </summary>
public class WarmUpTests(ITestOutputHelper log)
{
    static GeneratedFrameSource Frames(int count) => new(i => TestMedia.Pattern(i), 15, count: count, realtime: false);

    /// <summary>A headless run over the same frames: its captions (text, level) and the loop's warm-up ms.</summary>
    static (List<(long Frame, string Text, string? Level)> Captions, double WarmUpMs, long Read, long SessionRead) Run(Engine engine, string mode, bool warmUp, double? budgetMs = null)
    {
        using var session = SessionModes.Create(mode, engine, AppTestSupport.TinyOptions());
        var captions = new List<(long, string, string?)>();
        using var loop = new FrameLoop(Frames(24), session, new Profiler(),
            AppTestSupport.Loop(Pacing.Headless, stride: 2, policy: "every:2", budgetMs: budgetMs, schedule: budgetMs is null ? null : AppTestSupport.TinySchedule) with { WarmUp = warmUp })
        { Written = (s, _) => captions.Add((s.FrameIndex, s.Text, s.Level)) };
        var result = loop.RunHeadless(CancellationToken.None);
        return (captions, loop.WarmUpMs, result.Stats.Read, session.FramesRead);
    }

    [Theory]
    [InlineData(SessionModes.Gpe, null)]
    [InlineData(SessionModes.Gpe, 10_000.0)] // the governor on: the copy reads at the schedule
    [InlineData(SessionModes.ReEncode, null)]
    public void AWarmedUpStream_CaptionsAsAColdOneDoes_AndItsSessionReadOnlyTheStreamsFrames(string mode, double? budgetMs)
    {
        using var cold = AppTestSupport.TinyEngine();
        using var warm = AppTestSupport.TinyEngine();
        var without = Run(cold, mode, warmUp: false, budgetMs);
        var with = Run(warm, mode, warmUp: true, budgetMs);
        log.WriteLine($"warm-up {with.WarmUpMs:F1} ms; {with.Captions.Count} captions; first: {with.Captions[0]}");
        Assert.Equal(0, without.WarmUpMs);
        Assert.True(with.WarmUpMs > 0);
        Assert.True(with.Captions.Count >= 5);
        Assert.Equal(without.Captions, with.Captions);
        Assert.Equal(12, with.Read);           // every 2nd of 24 frames
        Assert.Equal(12, with.SessionRead);    // the synthetic frame went to the copy, not the stream's session
        if (budgetMs is not null) Assert.All(with.Captions, c => Assert.NotNull(c.Level));
    }

    [Fact]
    public void TheWarmUpRunsOncePerEngineAndMode()
    {
        using var engine = AppTestSupport.TinyEngine();
        Assert.True(Run(engine, SessionModes.Gpe, warmUp: true).WarmUpMs > 0);
        Assert.Equal(0, Run(engine, SessionModes.Gpe, warmUp: true).WarmUpMs);      // the engine is warm
        Assert.True(Run(engine, SessionModes.ReEncode, warmUp: true).WarmUpMs > 0); // another mode's passes are not
        Assert.Equal(0, Run(engine, SessionModes.ReEncode, warmUp: true).WarmUpMs);
        using var other = AppTestSupport.TinyEngine();
        Assert.True(Run(other, SessionModes.Gpe, warmUp: true).WarmUpMs > 0);       // per engine, not per process
    }

    [Fact]
    public void ASessionWithoutAModel_HasNothingToWarm()
    {
        var slow = new SlowSession(TimeSpan.Zero, TimeSpan.Zero);
        using var loop = new FrameLoop(Frames(4), slow, new Profiler(), AppTestSupport.Loop(Pacing.Headless, stride: 1));
        Assert.Equal(0, loop.WarmUpMs);
        loop.RunHeadless(CancellationToken.None);
        Assert.Equal(4, slow.FramesRead);
    }
}
