using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Log;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>Redis lost while the cluster runs: captions go on from memory, the stream says its log is degraded, and the log catches up when Redis returns.</summary>
[Collection("cluster")]
public class RedisLossTests
{
    [Fact]
    public async Task RedisLost_StreamsKeepCaptioningFromMemory_SayTheLogIsDegraded_AndCatchUpWhenItReturns()
    {
        await using var redis = await RedisServer.StartAsync(); // this test's own: it is killed
        await using var c = await TestCluster.StartAsync(redis.Url, SiloRole.Gateway, SiloRole.Inference);
        var info = await c.Streams.OpenAsync(TestCluster.Synthetic(3), limit: 10);
        var before = await c.WaitFor(info.Id, s => s.DurableSeq >= 2, 30, "two segments");

        // A reader follows from the start through the whole outage.
        var seen = new List<long>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var reader = Task.Run(async () =>
        {
            await foreach (var page in c.Streams.FollowAsync(info.Id, 0, cts.Token))
                lock (seen) seen.AddRange(page.Entries.Select(e => e.Seq));
        });

        await redis.KillAsync();
        var degraded = await c.WaitFor(info.Id, s => s.Log == "degraded" && s.LastSeq >= before.LastSeq + 3, 30, "degraded, with new segments from memory");
        Assert.Equal("running", degraded.State);
        Assert.NotNull(degraded.LogError);
        Assert.True(degraded.DurableSeq < degraded.LastSeq);
        await WaitUntil(() => { lock (seen) return seen.Count > 0 && seen[^1] > before.DurableSeq + 2; }, 30, "the reader to get segments from memory");

        await redis.StartProcessAsync(); // back, empty (no persistence): the queued entries land under the numbers they have
        var healed = await c.WaitFor(info.Id, s => s.Log == "ok" && s.DurableSeq >= degraded.LastSeq, 60, "the log to catch up");
        await WaitUntil(() => { lock (seen) return seen.Count > 0 && seen[^1] >= healed.DurableSeq; }, 30, "the reader to go on from the log");
        cts.Cancel();
        try { await reader; } catch (OperationCanceledException) { }
        lock (seen) TestCluster.NoGapNoDuplicate(seen, info.Id); // the reader saw every number once, across log, memory and log again
    }

    static async Task WaitUntil(Func<bool> done, double seconds, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (!done())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {seconds} s for {what}");
            await Task.Delay(100);
        }
    }
}
