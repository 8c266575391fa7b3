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

    /// <summary>
    /// A small object that leaves (or appears) moves the mean by well under a grey level, but the
    /// cells it covered by tens: the gate reads that frame. The same object nudged by two pixels
    /// moves no cell that far, and the frame stays unread.
    /// </summary>
    [Fact]
    public void Gate_ReadsASmallObjectLeaving_ThoughTheMeanBarelyMoves_ButNotOneNudged()
    {
        using var gate = new SceneChangeGate(1);
        static Mat Scene(int? x)
        {
            var m = new Mat(480, 480, MatType.CV_8UC3, new Scalar(80, 80, 80));
            if (x is { } left) Cv2.Rectangle(m, new Rect(left, 200, 28, 28), new Scalar(0, 220, 220), -1); // a yellow square, 1/300 of the frame
            return m;
        }
        using Mat big = Scene(200), bigNudged = Scene(202), bigEmpty = Scene(null);
        Assert.True(gate.Accept(big));
        Assert.False(gate.Accept(bigNudged));
        Assert.True(gate.LastCellChange <= SceneChangeGate.CellFactor);
        Assert.True(gate.Accept(bigEmpty)); // the object left
        Assert.True(gate.LastDistance < 1, $"the mean moved {gate.LastDistance}: the test is of the cell rule");
        Assert.True(gate.LastCellChange > SceneChangeGate.CellFactor);
    }

    /// <summary>A camera's view: a lit gradient with a few shapes, the whole frame under a gain and an offset of light.</summary>
    static Mat Lit(double gain, double offset, bool withObject = false)
    {
        using var scene = new Mat(240, 320, MatType.CV_8UC3);
        for (int y = 0; y < 240; y++)
            scene.Row(y).SetTo(new Scalar(40 + y / 3, 60 + y / 4, 90 + y / 5));
        Cv2.Circle(scene, new Point(80, 90), 30, new Scalar(30, 40, 200), -1);
        Cv2.Rectangle(scene, new Rect(200, 140, 60, 50), new Scalar(200, 160, 40), -1);
        if (withObject) Cv2.Rectangle(scene, new Rect(150, 30, 20, 20), new Scalar(20, 230, 230), -1); // 1/190 of the frame
        var lit = new Mat();
        scene.ConvertTo(lit, MatType.CV_8UC3, gain, offset);
        return lit;
    }

    /// <summary>
    /// Mains flicker and auto-exposure move a still camera's whole frame by a few levels at once;
    /// the gate fits that light and reads none of those frames, though the plain mean moved past
    /// G. An object that appears under the same flicker is still read, and so is a change of the
    /// light beyond 16·G (the lights went out).
    /// </summary>
    [Fact]
    public void Gate_ReadsNoFrameForFlickerOrExposure_ButAnObjectUnderIt_AndTheLightsGoingOut()
    {
        using var gate = new SceneChangeGate(1);
        using var first = Lit(1, 0);
        Assert.True(gate.Accept(first));
        foreach (var (gain, offset) in new[] { (1.03, 2.0), (0.97, -3.0), (1.0, 5.0), (1.05, -1.0), (0.96, 0.0) })
        {
            using var flicker = Lit(gain, offset);
            double plain = PlainMean(first, flicker);
            Assert.True(plain > 1, $"gain {gain}, offset {offset}: the frame moved {plain:F2} levels, which the plain mean rule would not read");
            Assert.False(gate.Accept(flicker), $"gain {gain}, offset {offset}: distance {gate.LastDistance:F2}, light {gate.LastLightingChange:F2}");
            Assert.Equal(plain, gate.LastLightingChange, 0.5);
            Assert.True(gate.LastDistance < 1);
        }
        using (var objectUnderFlicker = Lit(1.03, 3, withObject: true))
        {
            Assert.True(gate.Accept(objectUnderFlicker));
            Assert.True(gate.LastCellChange > SceneChangeGate.CellFactor);
        }
        using (var dark = Lit(0.6, -10, withObject: true))
        {
            Assert.True(gate.Accept(dark));
            Assert.True(gate.LastLightingChange > SceneChangeGate.LightingFactor);
            Assert.True(gate.LastDistance < 1, $"the lights going out read as light, not as objects: {gate.LastDistance:F2}");
        }
    }

    /// <summary>A scene whose light holds still is compared as it was before the light was fitted: motion reads as motion, not as light.</summary>
    [Fact]
    public void Gate_UnderSteadyLight_MeasuresThePlainDifference()
    {
        using var gate = new SceneChangeGate(1);
        using Mat before = Lit(1, 0), after = Lit(1, 0, withObject: true);
        Assert.True(gate.Accept(before));
        Assert.True(gate.Accept(after));
        Assert.Equal(0, gate.LastLightingChange);
        Assert.Equal(PlainMean(before, after), gate.LastDistance, 6);
    }

    /// <summary>The mean absolute difference of two frames' 16×16 thumbnails: what the gate measured before it fitted the light.</summary>
    static double PlainMean(Mat a, Mat b)
    {
        using var ta = a.Resize(new Size(16, 16), 0, 0, InterpolationFlags.Area);
        using var tb = b.Resize(new Size(16, 16), 0, 0, InterpolationFlags.Area);
        using var diff = new Mat();
        Cv2.Absdiff(ta, tb, diff);
        var mean = Cv2.Mean(diff);
        return (mean.Val0 + mean.Val1 + mean.Val2) / 3;
    }

    /// <summary>A source whose frames turn from colour to grey (a camera's night mode) still compares: the same scene in grey is unchanged.</summary>
    [Fact]
    public void Gate_ComparesAGreyFrameWithAColourOne()
    {
        using var gate = new SceneChangeGate(1);
        using Mat colour = Grey(90), grey = new(32, 32, MatType.CV_8UC1, new Scalar(90)), brighter = new(32, 32, MatType.CV_8UC1, new Scalar(140));
        Assert.True(gate.Accept(colour));
        Assert.False(gate.Accept(grey));
        Assert.Equal(0, gate.LastDistance);
        Assert.True(gate.Accept(brighter));
        Assert.Equal(50, gate.LastDistance, 1);
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

    /// <summary>
    /// every:N on a scene that moves and then settles: the frames the gate passes over as unchanged
    /// count toward N once something was read since the last caption, so the settled scene is
    /// captioned a few frames after it settles, not when it next moves (the demo clip's caption of a
    /// triangle that had left stayed on for 8 s). A scene still since its caption writes nothing more.
    /// </summary>
    [Fact]
    public void EveryN_ASceneThatSettles_IsCaptionedAsItSettles_AndAStillSceneNoMore()
    {
        using var session = Session(window: 2);
        using var driver = new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("every:3"), GateThreshold = 2 });
        int[] levels = [20, 20, 20, 60, 100, 100, 100, 100, 100, 100, 100, 100, 140];
        var writes = new List<int>();
        for (int i = 0; i < levels.Length; i++)
        {
            using var f = Grey(levels[i]);
            if (driver.Push(f, i, TimeSpan.FromSeconds(i)).Any(s => s.Question is null)) writes.Add(i);
        }
        // Frame 0 is read and written; 1 and 2 are unchanged with nothing read since (no write);
        // 3 and 4 move (two reads); 5 is the third frame since: the settled scene's caption, the
        // window read at frame 4. Frames 6–11 are still with nothing read since; 12 moves.
        Assert.Equal(new[] { 0, 5 }, writes);
        Assert.Equal(4, session.FramesRead);
        Assert.Equal(9, driver.Stats.Skipped);
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
