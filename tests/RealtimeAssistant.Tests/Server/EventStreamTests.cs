using System.Text;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Sse;
using RealtimeAssistant.Server.Streams;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The live streams' model-free parts: the per-stream event log (sequence numbers, retention,
/// Last-Event-ID resume with no loss and no repeats) and the SSE writer, read back by a parser
/// that follows the WHATWG event-stream rules.
/// </summary>
public class EventStreamTests
{
    [Fact]
    public void Log_NumbersEvents_AndCountsWhatRetentionDropped()
    {
        var log = new EventLog<string>(capacity: 3);
        Assert.Equal((0L, 1L), (log.LastSeq, log.FirstSeq));
        Assert.Equal(1, log.Append("a"));
        Assert.Equal(2, log.Append("b"));
        var batch = log.Read(0);
        Assert.Equal(0, batch.Missed);
        Assert.Equal([(1L, "a"), (2L, "b")], batch.Events.Select(e => (e.Seq, e.Item)));
        foreach (var s in new[] { "c", "d", "e" }) log.Append(s);
        Assert.Equal((5L, 3L), (log.LastSeq, log.FirstSeq));
        batch = log.Read(1); // 2 was dropped
        Assert.Equal(1, batch.Missed);
        Assert.Equal(["c", "d", "e"], batch.Events.Select(e => e.Item));
        batch = log.Read(3, max: 1);
        Assert.Equal((0L, 4L), (batch.Missed, batch.Events.Single().Seq));
        Assert.Empty(log.Read(5).Events);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Read(6));
    }

    [Fact]
    public void LastEventId_IsACursorOfThisLog_OrTheClientsError()
    {
        var log = new EventLog<int>(8);
        for (int i = 0; i < 5; i++) log.Append(i);
        Assert.Equal(0, log.CursorFor(null, fresh: 0));
        Assert.Equal(5, log.CursorFor("", fresh: log.LastSeq));
        Assert.Equal(3, log.CursorFor("3", fresh: 0));
        Assert.Equal(3, log.CursorFor(" 3 ", fresh: 0));
        foreach (var bad in new[] { "6", "-1", "abc", "1.5", "+2", "99999999999999999999" })
            Assert.Equal(400, Assert.Throws<ApiError>(() => log.CursorFor(bad, 0)).Status);
    }

    [Fact]
    public async Task Followers_ThatLeaveAndResume_GetEveryEventOnceInOrder()
    {
        const int total = 3000;
        var log = new EventLog<int>(capacity: total); // holds everything: nothing may be missed
        var producer = Task.Run(async () =>
        {
            var rng = new Random(1);
            for (int i = 1; i <= total; i++)
            {
                log.Append(i * 10);
                if (rng.Next(50) == 0) await Task.Delay(1);
            }
            log.Complete();
        });
        async Task<List<long>> Follower(int seed)
        {
            var rng = new Random(seed);
            var seen = new List<long>();
            long cursor = 0;
            while (true)
            {
                // A client that drops its connection now and then and comes back with Last-Event-ID.
                using var drop = new CancellationTokenSource(TimeSpan.FromMilliseconds(rng.Next(1, 30)));
                int budget = rng.Next(1, 400);
                bool ended = true;
                try
                {
                    await foreach (var batch in log.Follow(log.CursorFor(cursor == 0 ? null : cursor.ToString(), 0), maxBatch: rng.Next(1, 64), drop.Token))
                    {
                        Assert.Equal(0, batch.Missed);
                        foreach (var e in batch.Events)
                        {
                            Assert.Equal(e.Seq * 10, e.Item);
                            seen.Add(e.Seq);
                            cursor = e.Seq;
                            if (--budget == 0) break;
                        }
                        if (budget <= 0) { ended = false; break; }
                    }
                }
                catch (OperationCanceledException) { ended = false; }
                if (ended) return seen;
            }
        }
        var followers = Enumerable.Range(0, 4).Select(i => Task.Run(() => Follower(100 + i))).ToArray();
        await producer;
        foreach (var f in followers)
            Assert.Equal(Enumerable.Range(1, total).Select(i => (long)i), await f.WaitAsync(TimeSpan.FromMinutes(1)));
    }

    [Fact]
    public async Task ASlowFollower_IsToldExactlyWhatRetentionDropped()
    {
        var log = new EventLog<int>(capacity: 16);
        long delivered = 0, missed = 0, last = 0;
        var follower = Task.Run(async () =>
        {
            await foreach (var batch in log.Follow(0, maxBatch: 4))
            {
                missed += batch.Missed;
                foreach (var e in batch.Events)
                {
                    Assert.True(e.Seq > last, "an event came twice or out of order");
                    Assert.Equal(last + 1 + batch.Missed * (e.Seq == batch.Events[0].Seq ? 1 : 0), e.Seq);
                    last = e.Seq;
                    delivered++;
                }
                await Task.Delay(2); // slower than the producer
            }
        });
        for (int i = 0; i < 2000; i++) log.Append(i);
        log.Complete();
        await follower.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(2000, delivered + missed);
        Assert.True(missed > 0, "the follower was never behind; the test did not exercise retention");
        Assert.Equal(2000, last);
    }

    [Fact]
    public async Task AFollowerWaitsForNewEvents_AndEndsWhenTheLogDoes()
    {
        var log = new EventLog<string>(4);
        var got = new List<string>();
        var follower = Task.Run(async () => { await foreach (var b in log.Follow(0)) got.AddRange(b.Events.Select(e => e.Item)); });
        await Task.Delay(100);
        Assert.False(follower.IsCompleted);
        log.Append("x");
        log.Append("y");
        log.Complete();
        await follower.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(["x", "y"], got);
        Assert.Throws<InvalidOperationException>(() => log.Append("z"));
    }

    /// <summary>A client's parse of an event stream (WHATWG HTML §9.2.6): the dispatched events and the last event id.</summary>
    static List<(string Type, string Data, string LastId)> ParseStream(string stream)
    {
        var events = new List<(string, string, string)>();
        string type = "", lastId = "";
        var data = new StringBuilder();
        foreach (var line in stream.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n'))
        {
            if (line.Length == 0)
            {
                if (data.Length > 0) events.Add((type.Length > 0 ? type : "message", data.ToString(0, data.Length - 1), lastId));
                data.Clear(); type = "";
                continue;
            }
            if (line[0] == ':') continue;
            int colon = line.IndexOf(':');
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? "" : line[(colon + 1)..];
            if (value.StartsWith(' ')) value = value[1..];
            switch (field)
            {
                case "data": data.Append(value).Append('\n'); break;
                case "event": type = value; break;
                case "id": if (!value.Contains('\0')) lastId = value; break;
            }
        }
        return events;
    }

    [Fact]
    public async Task SseWriter_RoundTripsAnyText_ThroughAStandardParser()
    {
        var rng = new Random(11);
        var pieces = new[] { "a", " ", "  ", ":", "data: x", "\n", "\r", "\r\n", "\n\n", "é", "🙂", "{\"k\": 1}", "id: 9", "\t" };
        var sent = new List<(string Type, string Data, string Id)>();
        using var body = new MemoryStream();
        var writer = new SseWriter(body);
        for (int i = 0; i < 300; i++)
        {
            var data = string.Concat(Enumerable.Range(0, rng.Next(0, 8)).Select(_ => pieces[rng.Next(pieces.Length)]));
            var type = rng.Next(3) == 0 ? "segment" : null;
            var id = (i + 1).ToString();
            if (rng.Next(5) == 0) await writer.WriteCommentAsync("keep-alive", default);
            await writer.WriteAsync(new SseEvent(data, type, id), default);
            sent.Add((type ?? "message", data.Replace("\r\n", "\n").Replace('\r', '\n'), id));
        }
        var parsed = ParseStream(Encoding.UTF8.GetString(body.ToArray()));
        Assert.Equal(sent, parsed);
    }

    [Fact]
    public void SseWriter_RefusesFieldsThatWouldBreakTheFraming()
    {
        Assert.Equal("data: [DONE]\n\n", Encoding.UTF8.GetString(SseWriter.Format(new SseEvent("[DONE]"))));
        Assert.Equal("event: e\nid: 7\nretry: 1000\ndata: a\ndata: b\n\n", Encoding.UTF8.GetString(SseWriter.Format(new SseEvent("a\nb", "e", "7", 1000))));
        Assert.Throws<ArgumentException>(() => SseWriter.Format(new SseEvent("x", Id: "1\n2")));
        Assert.Throws<ArgumentException>(() => SseWriter.Format(new SseEvent("x", Event: "a\rb")));
        Assert.Throws<ArgumentException>(() => SseWriter.Format(new SseEvent("x", Id: "a\0")));
    }
}
