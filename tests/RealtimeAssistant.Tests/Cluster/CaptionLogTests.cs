using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Cluster.Log;
using StackExchange.Redis;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>The durable caption log on a real redis-server: numbering, resume, retention, fencing, followers.</summary>
[Collection("cluster")]
public class CaptionLogTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    static string Stream() => "s_" + Guid.NewGuid().ToString("N")[..12];

    async Task<(IConnectionMultiplexer, CaptionLog)> Open(int retention = 1000)
    {
        var url = redis.Need();
        var (mux, _) = await RedisConnection.ConnectAsync(new ClusterSettings { Redis = url }, "test");
        return (mux, new CaptionLog(mux, "t" + Guid.NewGuid().ToString("N")[..8], retention));
    }

    [Fact]
    public async Task ReadsResumeAfterACursor_EachEntryOnceInOrder()
    {
        var (mux, log) = await Open();
        await using var _ = mux;
        var s = Stream();
        Assert.Equal(0, await log.LastSeqAsync(s));
        for (long i = 1; i <= 50; i++) await log.AppendAsync(s, new LogEntry(i, "segment", $"{{\"n\":{i}}}"));
        Assert.Equal(50, await log.LastSeqAsync(s));
        var all = await log.ReadAsync(s, 0, 1000);
        Assert.Equal(0, all.Missed);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), all.Entries.Select(e => e.Seq));
        Assert.Equal("{\"n\":7}", all.Entries[6].Data);
        var after = await log.ReadAsync(s, 37, 5);
        Assert.Equal(new long[] { 38, 39, 40, 41, 42 }, after.Entries.Select(e => e.Seq));
        Assert.Empty((await log.ReadAsync(s, 50)).Entries);
    }

    [Fact]
    public async Task LastFrame_IsTheNewestCaptionsOrAnswersFrame_SkippingOtherEntries()
    {
        var (mux, log) = await Open();
        await using var _ = mux;
        var s = Stream();
        Assert.Null(await log.LastFrameAsync(s));
        await log.AppendAsync(s, new LogEntry(1, "segment", "{\"segment\":1,\"frame\":4}"));
        await log.AppendAsync(s, new LogEntry(2, "answer", "{\"frame\":6}"));
        await log.AppendAsync(s, new LogEntry(3, "question", "{\"question_id\":\"q\",\"frame\":99}"));
        await log.AppendAsync(s, new LogEntry(4, "segment", "not json"));
        Assert.Equal(6, await log.LastFrameAsync(s));
        await log.AppendAsync(s, new LogEntry(5, "segment", "{\"frame\":8}"));
        Assert.Equal(8, await log.LastFrameAsync(s));
        // Only the last few entries are looked at: a log of questions only has no frame there.
        var q = Stream();
        await log.AppendAsync(q, new LogEntry(1, "segment", "{\"frame\":2}"));
        for (long i = 2; i <= 5; i++) await log.AppendAsync(q, new LogEntry(i, "question", "{}"));
        Assert.Null(await log.LastFrameAsync(q, look: 4));
        Assert.Equal(2, await log.LastFrameAsync(q, look: 5));
    }

    [Fact]
    public async Task ASequenceNumberIsWrittenOnce_ALateWriterIsFenced()
    {
        var (mux, log) = await Open();
        await using var _ = mux;
        var s = Stream();
        await log.AppendAsync(s, new LogEntry(1, "segment", "a"));
        await log.AppendAsync(s, new LogEntry(2, "segment", "b"));
        var e = await Assert.ThrowsAsync<LogFencedException>(() => log.AppendAsync(s, new LogEntry(2, "segment", "stale")));
        Assert.Equal(2, e.Seq);
        await Assert.ThrowsAsync<LogFencedException>(() => log.AppendAsync(s, new LogEntry(1, "segment", "stale")));
        var page = await log.ReadAsync(s, 0);
        Assert.Equal(new[] { "a", "b" }, page.Entries.Select(x => x.Data));
    }

    [Fact]
    public async Task RetentionDropsOldEntries_AndAReaderBehindItIsToldHowMany()
    {
        var (mux, log) = await Open(retention: 10);
        await using var _ = mux;
        var s = Stream();
        for (long i = 1; i <= 1000; i++) await log.AppendAsync(s, new LogEntry(i, "segment", "x"));
        var page = await log.ReadAsync(s, 0, 5000);
        // MAXLEN ~ keeps at least the retention (Redis trims whole nodes); what it dropped is counted, not skipped silently.
        Assert.InRange(page.Entries.Count, 10, 999);
        Assert.Equal(page.Entries[0].Seq - 1, page.Missed);
        Assert.Equal(1000, page.Entries[^1].Seq);
        Assert.Equal(page.Entries.Count, page.Entries.Select(e => e.Seq).Distinct().Count());
    }

    [Fact]
    public async Task AFollowerIsWokenByAppends_AndEndsAfterTheEndedEntry()
    {
        var (mux, log) = await Open();
        await using var _ = mux;
        var s = Stream();
        await log.AppendAsync(s, new LogEntry(1, "segment", "first"));
        var seen = new List<long>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var follower = Task.Run(async () =>
        {
            await foreach (var page in log.FollowAsync(s, 0, cts.Token))
                lock (seen) seen.AddRange(page.Entries.Select(e => e.Seq));
        });
        for (long i = 2; i <= 20; i++)
        {
            await Task.Delay(10);
            await log.AppendAsync(s, new LogEntry(i, i == 20 ? StreamEvents.Ended : "segment", "x"));
        }
        await follower.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), seen);
    }

    [Fact]
    public async Task RedisUnreachable_IsAOneLineUserError()
    {
        var port = RedisServer.FreePort(); // nothing listens there
        var e = await Assert.ThrowsAsync<UserError>(() => RedisConnection.ConnectAsync(new ClusterSettings { Redis = $"redis://127.0.0.1:{port}" }, "test"));
        Assert.Contains($"cannot reach Redis at 127.0.0.1:{port}", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Theory]
    [InlineData("127.0.0.1:6379")]
    [InlineData("http://127.0.0.1:6379")]
    [InlineData("redis://")]
    [InlineData("redis://127.0.0.1:6379/99")]
    [InlineData("redis://user:pw@127.0.0.1:6379")]
    public void BadClusterUrls_AreUserErrors(string url) =>
        Assert.Throws<UserError>(() => new ClusterSettings { Redis = url }.Validate());
}
