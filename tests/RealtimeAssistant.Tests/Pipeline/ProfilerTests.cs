using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Tests.Pipeline;

public class ProfilerTests
{
    [Fact]
    public void Percentiles_OnKnownSamples()
    {
        var p = new Profiler();
        foreach (var v in Enumerable.Range(1, 100)) p.Record("vision", v);
        var s = p.Snapshot().Stage("vision")!;
        Assert.Equal(100, s.Count);
        Assert.Equal(100, s.WindowCount);
        Assert.Equal(100, s.Last);
        Assert.Equal(50.5, s.Mean, 9);
        Assert.Equal(50, s.P50);   // the nearest rank: a measured value, as every report gives
        Assert.Equal(95, s.P95);
        Assert.Equal(99, s.P99);
        Assert.Equal(100, s.Max);
    }

    [Fact]
    public void Restart_ForgetsWhatWasRecorded_AndRecordsAnew()
    {
        var p = new Profiler();
        p.Record("vision", 100);
        p.Count("words", 5);
        p.Restart();
        Assert.Null(p.Snapshot().Stage("vision"));
        Assert.Empty(p.Series("vision"));
        Assert.Null(p.Snapshot().Counter("words"));
        p.Record("vision", 2);
        p.Count("words");
        Assert.Equal(1, p.Snapshot().Stage("vision")!.Count);
        Assert.Equal(2, p.Snapshot().Stage("vision")!.Max);
        Assert.Equal(1, p.Snapshot().Counter("words")!.Total);
    }

    [Fact]
    public void Window_KeepsOnlyTheLastSamples()
    {
        var p = new Profiler(window: 10);
        for (int i = 0; i < 25; i++) p.Record("decode", i < 15 ? 1000 : 2);
        var s = p.Snapshot().Stage("decode")!;
        Assert.Equal(25, s.Count);
        Assert.Equal(10, s.WindowCount);
        Assert.Equal(2, s.P99);
        var series = p.Series("decode");
        Assert.Equal(10, series.Count);
        Assert.True(series.Zip(series.Skip(1)).All(x => x.Second.Seconds >= x.First.Seconds), "series runs oldest first");
    }

    [Fact]
    public void ScopedTimer_RecordsElapsedTime()
    {
        var p = new Profiler();
        using (p.Time("prefill")) Thread.Sleep(30);
        var s = p.Snapshot().Stage("prefill")!;
        Assert.Equal(1, s.Count);
        Assert.InRange(s.Last, 25, 2000);
    }

    [Fact]
    public void Latency_IsMeasuredFromTheCaptureTimestamp()
    {
        var p = new Profiler();
        var capturedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        Thread.Sleep(20);
        var ms = p.RecordLatency(capturedAt);
        Assert.InRange(ms, 15, 2000);
        Assert.Single(p.Series(Profiler.GlassToCaption));
        Assert.Equal(ms, p.Snapshot().Stage(Profiler.GlassToCaption)!.Last);
    }

    [Fact]
    public void Rates_CountRecentEvents()
    {
        var p = new Profiler(rateWindow: TimeSpan.FromSeconds(10));
        Thread.Sleep(100);
        p.Count(Profiler.CaptionUpdates, 5);
        var c = p.Snapshot().Counter(Profiler.CaptionUpdates)!;
        Assert.Equal(5, c.Total);
        // 5 events within a run of ~0.1 s: tens per second, not 5/10 s.
        Assert.InRange(c.PerSecond, 5, 60);
    }

    [Fact]
    public async Task ConcurrentRecording_LosesNothing_AndSnapshotsStayConsistent()
    {
        var p = new Profiler(window: 64);
        var stages = new[] { Profiler.Capture, Profiler.Vision, Profiler.Decode, Profiler.Render };
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
                foreach (var s in p.Snapshot().Stages) Assert.True(s.P50 <= s.P95 && s.P95 <= s.P99 && s.P99 <= s.Max);
        });
        Parallel.For(0, 8, t =>
        {
            for (int i = 0; i < 5000; i++)
            {
                p.Record(stages[(t + i) % stages.Length], i % 100);
                p.Count("events");
            }
        });
        stop.Cancel();
        await reader.WaitAsync(TimeSpan.FromSeconds(20));
        var snap = p.Snapshot();
        Assert.Equal(40_000, snap.Stages.Sum(s => s.Count));
        Assert.Equal(stages.Length, snap.Stages.Count);
        Assert.Equal(40_000, snap.Counter("events")!.Total);
        Assert.Contains("vision", snap.ToString());
    }

    [Fact]
    public void TimingAStage_AllocatesNothing_OnceTheStageExists()
    {
        var p = new Profiler();
        using (p.Time(Profiler.Render)) { }
        p.Count(Profiler.CaptionUpdates);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            using (p.Time(Profiler.Render)) { }
            p.Count(Profiler.CaptionUpdates);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
