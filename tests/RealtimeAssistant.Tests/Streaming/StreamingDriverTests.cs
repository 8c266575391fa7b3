using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.Streaming;

public sealed class StreamingDriverTests : IDisposable
{
    readonly TempDir _dir = new();
    readonly Engine _engine;

    public StreamingDriverTests()
    {
        var cfg = SyntheticCheckpoint.Config(tLayers: 2, imageSize: 16, patch: 8);
        SyntheticCheckpoint.Write(_dir.Path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)), seed: 5,
            extraConfig: new JsonObject { ["ra_frame_marker"] = "w0", ["ra_instruction"] = "w1 w2", ["ra_group_positions"] = true });
        _engine = Engine.Load(_dir.Path);
    }

    public void Dispose() { _engine.Dispose(); _dir.Dispose(); }

    GpeSession Session(int window = 3) => new(_engine, new StreamingOptions
    {
        WindowFrames = window, Generation = new GenerationOptions { MaxNewTokens = 4, StopTokens = Array.Empty<int>() },
    });

    static Mat Grey(int level) => new(32, 32, MatType.CV_8UC3, new Scalar(level, level, level));

    [Fact]
    public void GatePassesOnlyFramesThatChangedSinceTheLastAcceptedOne()
    {
        using var gate = new SceneChangeGate(4);
        using Mat a = Grey(100), same = Grey(100), slightly = Grey(103), more = Grey(106);
        Assert.True(gate.Accept(a));          // the first frame always goes on
        Assert.False(gate.Accept(same));
        Assert.False(gate.Accept(slightly));  // 3 levels: below the threshold
        Assert.True(gate.Accept(more));       // 6 levels from the last accepted frame (drift adds up)
        Assert.Equal(6, gate.LastDistance, 1);
        Assert.Throws<UserError>(() => new SceneChangeGate(-1));
    }

    [Fact]
    public void GateZero_PassesEveryFrame_AnIdenticalOneToo()
    {
        using var gate = new SceneChangeGate(0);
        using Mat a = Grey(100), same = Grey(100);
        Assert.True(gate.Accept(a));
        Assert.True(gate.Accept(same)); // a still scene in a stream read at gate 0 (every frame) is still read
        Assert.Equal(0, gate.LastDistance);
    }

    [Fact]
    public void UnchangedSceneCostsNoModelWork()
    {
        using var session = Session();
        using var driver = new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("change"), GateThreshold = 2 });
        using var still = Grey(80);
        for (int i = 0; i < 20; i++) driver.Push(still, i, TimeSpan.FromSeconds(i));
        Assert.Equal(1, session.FramesRead); // the vision encoder ran once
        Assert.Equal(19, driver.Stats.Skipped);
        Assert.Equal(1, driver.Stats.Writes);
        using var changed = Grey(160);
        var segments = driver.Push(changed, 20, TimeSpan.FromSeconds(20));
        Assert.Equal(2, session.FramesRead);
        Assert.Single(segments);
        Assert.Equal(4, segments[0].Tokens);
    }

    [Fact]
    public void EveryNWritesAfterNReadsAndQuestionsAreAnsweredInStream()
    {
        using var session = Session(window: 2);
        using var driver = new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("every:3"), GateThreshold = 0 });
        var writes = new List<int>();
        for (int i = 0; i < 9; i++)
        {
            using var f = Grey(20 * i);
            if (i == 4) driver.Ask("w3 w4");
            var segs = driver.Push(f, i, TimeSpan.FromSeconds(i));
            if (segs.Any(s => s.Question is null)) writes.Add(i);
            if (i == 4) Assert.Equal("w3 w4", Assert.Single(segs).Question);
        }
        Assert.Equal(new[] { 0, 3, 6 }, writes); // the first read writes, then every third (the answer has frame 4 to itself)
        Assert.Equal(9, session.FramesRead);
        Assert.Equal(2, session.FramesInWindow);
        Assert.Equal(1, driver.Stats.Answers);
    }

    [Theory]
    [InlineData("every:0")]
    [InlineData("sometimes")]
    [InlineData("every:x")]
    public void BadPoliciesAreUserErrors(string text) => Assert.Throws<UserError>(() => WritePolicy.Parse(text));

    [Fact]
    public void ChangePolicyNeedsAGate()
    {
        using var session = Session();
        Assert.Throws<UserError>(() => new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("change"), GateThreshold = 0 }));
    }
}
