using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.Streaming;

/// <summary>The inference stand-in: its costs, its one device per silo, and that the one frame loop runs it.</summary>
public class SimulatedSessionTests
{
    static Mat Grey(byte level) => new(16, 16, MatType.CV_8UC3, new Scalar(level, level, level));

    [Fact]
    public void Parse_TakesReadAndOptionalTokenMs_AndRefusesNonsense()
    {
        Assert.Equal(new SimulatedModel(20, 2), SimulatedModel.Parse("20"));
        Assert.Equal(new SimulatedModel(20, 3.5), SimulatedModel.Parse("20,3.5"));
        foreach (var bad in new[] { "", "abc", "-1", "20,x", "1,2,3", "1e9" })
            Assert.Throws<UserError>(() => SimulatedModel.Parse(bad));
    }

    [Fact]
    public void CaptionNamesItsFrame_AnswerNamesItsQuestion_EachExactlyTheTokensAsked()
    {
        var device = new SimulatedDevice();
        using var s = new SimulatedSession(new SimulatedModel(1, 0.5, Tokens: 9), device, new StreamingOptions { WindowFrames = 2 });
        using (var black = Grey(0)) s.Read(black);
        var caption = s.Write().ToList();
        Assert.Equal(9, caption.Count);
        Assert.StartsWith("simulated caption of frame 1 grey 0", string.Concat(caption.Select(e => e.Text)));
        using (var grey = Grey(200)) Assert.Contains("frame 2 grey 200", string.Concat(s.ReadAndWrite(grey).Select(e => e.Text)));
        Assert.Equal("read+write", s.Last.Kind);
        Assert.Equal(2, s.FramesInWindow);
        var answer = string.Concat(s.Write("what is red").Select(e => e.Text));
        Assert.StartsWith("simulated answer to what is red", answer);
        Assert.Equal(2 + 9 * 3, device.Steps); // two reads and three writes of nine tokens, all on the device
        Assert.Null(s.Engine);
    }

    [Fact]
    public void SessionsOnOneDevice_TakeTurns_OnTwoDevicesTheyOverlap()
    {
        const int reads = 6;
        const double ms = 25;
        double Elapsed(SimulatedDevice a, SimulatedDevice b)
        {
            using var s1 = new SimulatedSession(new SimulatedModel(ms, 0), a, new StreamingOptions());
            using var s2 = new SimulatedSession(new SimulatedModel(ms, 0), b, new StreamingOptions());
            var sw = Stopwatch.StartNew();
            Parallel.Invoke(() => { for (int i = 0; i < reads; i++) using (var f = Grey(9)) s1.Read(f); },
                            () => { for (int i = 0; i < reads; i++) using (var f = Grey(9)) s2.Read(f); });
            return sw.Elapsed.TotalMilliseconds;
        }
        var shared = new SimulatedDevice();
        double together = Elapsed(shared, shared);
        // One device runs one step at a time: twelve reads of 25 ms cannot take less than 300 ms.
        Assert.True(together >= 2 * reads * ms * 0.98, $"two sessions on one device took {together:0} ms for {2 * reads} reads of {ms} ms");
        Assert.Equal(2 * reads, shared.Steps);
        Assert.Equal(2 * reads * ms, shared.BusyMs, 1e-6);
    }

    [Fact]
    public void TheFrameLoopAndDriverRunIt_LikeAModelSession()
    {
        var device = new SimulatedDevice();
        using var session = new SimulatedSession(new SimulatedModel(1, 0.2, Tokens: 6), device, new StreamingOptions { WindowFrames = 2 });
        var segments = new List<StreamSegment>();
        using var loop = new FrameLoop(new GeneratedFrameSource(i => Grey((byte)(i * 7)), 30, count: 30), session, new Profiler(), new FrameLoopOptions
        {
            Pacing = Pacing.Headless, Stride = 3,
            Driver = new DriverOptions { Policy = WritePolicy.Parse("every:2"), GateThreshold = 0 },
            Questions = [(TimeSpan.FromSeconds(0.5), "is it grey")],
        }) { Written = (s, _) => { lock (segments) segments.Add(s); } };
        var result = loop.RunHeadless(CancellationToken.None);
        Assert.Equal(10, result.Stats.Read);                // every third of 30 frames, each read once
        var captions = segments.Where(s => s.Question is null).ToList();
        Assert.Equal(5, captions.Count);                    // every:2 writes at the first read, then every second one
        Assert.All(segments, s => Assert.Equal("simulated", s.Mode));
        Assert.Equal(captions.Select(c => c.FrameIndex).Order(), captions.Select(c => c.FrameIndex));
        var answer = Assert.Single(segments, s => s.Question is not null);
        Assert.StartsWith("simulated answer to is it grey", answer.Text);
    }
}
