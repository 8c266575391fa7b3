using RealtimeAssistant.Cluster;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>
/// Orleans' in-process test cluster, 3 silos (a gateway and two inference silos), the simulated
/// model, Redis for grain state and the caption log.
/// </summary>
[Collection("cluster")]
public class InProcessClusterTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    static readonly SiloRole[] GatewayAndTwoInference = [SiloRole.Gateway, SiloRole.Inference, SiloRole.Inference];

    [Fact]
    public async Task StreamGrainsLandOnlyOnInferenceSilos_BalancedByStreamCount()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var infos = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => c.Streams.OpenAsync(TestCluster.Synthetic(i), limit: 100)));
        Assert.All(infos, i => Assert.Contains(i.SiloName, new[] { "Silo_1", "Silo_2" }));
        Assert.Equal(new[] { 3, 3 }, infos.GroupBy(i => i.SiloName).Select(g => g.Count()).Order().ToArray());
        foreach (var i in infos)
        {
            var running = await c.WaitFor(i.Id, s => s.DurableSeq >= 2, 30, "two segments in the log");
            Assert.Equal("running", running.State);
            Assert.Equal("ok", running.Log);
        }
        var listed = await c.Streams.ListAsync();
        Assert.Equal(infos.Select(i => i.Id).Order(), listed.Select(i => i.Id).Order());
    }

    [Fact]
    public async Task StoppingAnInferenceSilo_MovesItsStreams_SequenceNumbersContinueWithNoGap()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var infos = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => c.Streams.OpenAsync(TestCluster.Synthetic(10 + i), limit: 100)));
        var before = new Dictionary<string, long>();
        foreach (var i in infos) before[i.Id] = (await c.WaitFor(i.Id, s => s.DurableSeq >= 3, 30, "three segments")).DurableSeq;
        var victim = infos.GroupBy(i => i.SiloName).First().Key!;
        var survivor = victim == "Silo_1" ? "Silo_2" : "Silo_1";
        await c.Cluster.StopSiloAsync(c.Silo(victim));
        foreach (var i in infos)
        {
            var after = await c.WaitFor(i.Id, s => s.SiloName == survivor && s.DurableSeq >= before[i.Id] + 3, 60, $"running on {survivor} with new segments");
            Assert.Equal("running", after.State);
        }
        foreach (var i in infos) TestCluster.NoGapNoDuplicate(await c.Seqs(i.Id), i.Id);
        // The moved streams' clips resumed where they would be now, not from their start: frame indices go on rising.
        foreach (var i in infos.Where(i => i.SiloName == victim))
        {
            var frames = (await c.Log.ReadAsync(i.Id, 0, 10_000)).Entries.Where(e => e.Type == "segment")
                .Select(e => System.Text.Json.JsonDocument.Parse(e.Data).RootElement.GetProperty("frame").GetInt64()).ToArray();
            Assert.True(frames.Zip(frames.Skip(1)).All(p => p.Second > p.First), $"stream {i.Id}: frames {string.Join(',', frames)}");
        }
    }

    [Fact]
    public async Task DrainMovesEveryStreamOffASilo_ByMigration_WithNoGap_AndPlacementAvoidsIt()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var infos = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => c.Streams.OpenAsync(TestCluster.Synthetic(20 + i), limit: 100)));
        foreach (var i in infos) await c.WaitFor(i.Id, s => s.DurableSeq >= 2, 30, "two segments");
        var drained = c.Silo("Silo_1");
        var onIt = infos.Where(i => i.SiloName == "Silo_1").Select(i => i.Id).ToHashSet();
        Assert.NotEmpty(onIt);
        var moved = await ClusterAdmin.DrainAsync(c.Client, drained.SiloAddress, TimeSpan.FromSeconds(60));
        Assert.Equal(onIt.Order(), moved.Select(m => m.Stream).Order());
        foreach (var i in infos)
        {
            var now = await c.WaitFor(i.Id, s => s.SiloName == "Silo_2" && s.DurableSeq >= 4, 30, "running on Silo_2");
            if (onIt.Contains(i.Id))
            {
                var move = Assert.Single(now.Moves);
                Assert.Equal(drained.SiloAddress.ToParsableString(), move.FromSilo);
                Assert.Empty(now.Failovers); // a drain is a move, not a failover
            }
        }
        var late = await c.Streams.OpenAsync(TestCluster.Synthetic(99), limit: 100);
        Assert.Equal("Silo_2", late.SiloName); // placement skips a draining silo
        await c.WaitFor(late.Id, s => s.DurableSeq >= 1, 30, "a segment");
        foreach (var i in infos) TestCluster.NoGapNoDuplicate(await c.Seqs(i.Id), i.Id);
    }

    [Fact]
    public async Task AStreamMovedJustAfterACaption_GoesOnAfterThatFrame_NeverReadingItAgain()
    {
        // One frame a second: a move within half a second of a caption lands where the wall clock
        // rounds to the frame just captioned, which the new silo must not read again.
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var info = await c.Streams.OpenAsync(TestCluster.Synthetic(30) with { Source = "synthetic:seed=30,size=48,fps=1", Stride = 1 }, limit: 100);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await c.Streams.GetAsync(info.Id))!.LastSeq < 2)
        {
            Assert.True(DateTime.UtcNow < deadline, $"two captions within 30 s: {await c.Streams.GetAsync(info.Id)}");
            await Task.Delay(10);
        }
        var moved = await ClusterAdmin.DrainAsync(c.Client, c.Silo(info.SiloName!).SiloAddress, TimeSpan.FromSeconds(60));
        Assert.Equal(info.Id, Assert.Single(moved).Stream);
        var other = info.SiloName == "Silo_1" ? "Silo_2" : "Silo_1";
        await c.WaitFor(info.Id, s => s.SiloName == other && s.DurableSeq >= 4, 30, $"two more captions on {other}");
        var frames = (await c.Log.ReadAsync(info.Id, 0, 10_000)).Entries.Where(e => e.Type == "segment")
            .Select(e => System.Text.Json.JsonDocument.Parse(e.Data).RootElement.GetProperty("frame").GetInt64()).ToArray();
        Assert.True(frames.Zip(frames.Skip(1)).All(p => p.Second > p.First), $"stream {info.Id}: frames {string.Join(',', frames)}");
    }

    [Fact]
    public async Task ClosingAStreamEndsItsLog_FreesIt_AndAnswersCarryTheirQuestionId()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var info = await c.Streams.OpenAsync(TestCluster.Synthetic(5), limit: 100);
        await c.WaitFor(info.Id, s => s.DurableSeq >= 1, 30, "a segment");
        var qid = await c.Streams.AskAsync(info.Id, "what moves");
        await c.WaitFor(info.Id, s => s.Answers >= 1, 30, "an answer");
        Assert.True(await c.Streams.CloseAsync(info.Id));
        var entries = new List<RealtimeAssistant.Cluster.Grains.LogEntry>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (var page in c.Streams.FollowAsync(info.Id, 0, cts.Token)) entries.AddRange(page.Entries);
        Assert.Equal("end", entries[^1].Type);
        var answer = Assert.Single(entries, e => e.Type == "answer");
        Assert.Contains($"\"question_id\":\"{qid}\"", answer.Data);
        Assert.Contains("simulated answer to what moves", answer.Data);
        TestCluster.NoGapNoDuplicate(entries.Select(e => e.Seq).ToList(), info.Id);
        Assert.Empty(await c.Streams.ListAsync());
        Assert.Equal("closed", (await c.Streams.GetAsync(info.Id))!.State);
        Assert.False(await c.Streams.CloseAsync("s_no_such_stream"));
        Assert.Null(await c.Streams.GetAsync("s_no_such_stream"));
    }

    [Fact]
    public async Task ASourceNoSiloCanOpen_IsTheClientsError_AndLeavesNothingBehind()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        var e = await Assert.ThrowsAsync<UserError>(() => c.Streams.OpenAsync(TestCluster.Synthetic(1) with { Source = "synthetic:seed=1,colour=red" }, limit: 10));
        Assert.Contains("'colour=red' is not NAME=NUMBER", e.Message);
        await Assert.ThrowsAsync<UserError>(() => c.Streams.OpenAsync(TestCluster.Synthetic(1) with { Source = "/no/such/clip.mp4" }, limit: 10));
        Assert.Empty(await c.Streams.ListAsync());
    }

    [Fact]
    public async Task TheClusterAdmitsAtMostItsLimit()
    {
        await using var c = await TestCluster.StartAsync(redis.Need(), GatewayAndTwoInference);
        await c.Streams.OpenAsync(TestCluster.Synthetic(1), limit: 2);
        await c.Streams.OpenAsync(TestCluster.Synthetic(2), limit: 2);
        await Assert.ThrowsAsync<StreamLimitException>(() => c.Streams.OpenAsync(TestCluster.Synthetic(3), limit: 2));
    }
}
