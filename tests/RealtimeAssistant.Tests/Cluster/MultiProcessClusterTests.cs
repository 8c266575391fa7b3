using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>
/// `ra serve --cluster` processes on loopback with a Redis of the fixture's, the simulated model
/// and generated clips: a silo killed with SIGKILL, a drain, and the bad inputs of a cluster.
/// </summary>
[Collection("cluster")]
public class MultiProcessClusterTests(RedisFixture redis, ITestOutputHelper output) : IClassFixture<RedisFixture>
{
    const string Simulate = "8,1";
    static string NewClusterId() => "t" + Guid.NewGuid().ToString("N")[..10];

    static StreamDefinition Clip(int seed) => new() { Source = $"synthetic:seed={seed},size=48,fps=10", Stride = 2, Policy = "every:1", Gate = 0 };

    static async Task<SiloProcess[]> StartSilos(string url, string id, params (string Role, string Name)[] silos) =>
        await Task.WhenAll(silos.Select(s => SiloProcess.Start(url, id, s.Role, s.Name, "--simulate-model-ms", Simulate)));

    static async Task<StreamStatus> WaitFor(ClusterStreamHost streams, string id, Func<StreamStatus, bool> done, double seconds, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        StreamStatus? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try { last = await streams.GetAsync(id); } catch (Exception) { last = null; }
            if (last is not null && done(last)) return last;
            await Task.Delay(200);
        }
        throw new TimeoutException($"stream {id}: {what} not within {seconds} s (last: {last})");
    }

    [Fact]
    public async Task ThreeSilos_SixStreams_SigkillTheBusiest_EveryStreamGoesOnWithin10s_NoGapNoDuplicate()
    {
        var url = redis.Need();
        var id = NewClusterId();
        var silos = await StartSilos(url, id, ("both", "a"), ("both", "b"), ("both", "c"));
        try
        {
            await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = url, ClusterId = id });
            var streams = admin.Streams;
            var opened = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => streams.OpenAsync(Clip(100 + i), limit: 100)));
            foreach (var s in opened) await WaitFor(streams, s.Id, x => x.DurableSeq >= 3, 60, "three segments");
            var now = await Task.WhenAll(opened.Select(s => streams.GetAsync(s.Id)));
            var bySilo = now.GroupBy(s => s!.SiloName!).ToDictionary(g => g.Key, g => g.Select(s => s!.Id).ToArray());
            Assert.True(bySilo.Values.Max(v => v.Length) - bySilo.Values.Min(v => v.Length) <= 1 && bySilo.Count == 3,
                $"six streams on three inference silos should be 2/2/2: {string.Join(", ", bySilo.Select(kv => $"{kv.Key}={kv.Value.Length}"))}");
            var victim = silos.Single(s => s.Name == bySilo.OrderByDescending(kv => kv.Value.Length).First().Key);
            var before = now.ToDictionary(s => s!.Id, s => s!.DurableSeq);

            // Two SSE clients over real HTTP on one of the victim's streams: one on the victim's own
            // gateway (the kill cuts it; it resumes on a survivor's with Last-Event-ID), one on a survivor's all along.
            var watched = bySilo[victim.Name][0];
            var survivor = silos.First(s => s != victim);
            using var stopReading = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            // Enough: a few segments written by a survivor after the failover.
            bool Enough(IReadOnlyList<SseMessage> got) =>
                got.Count(e => e.Type == "segment" && e.Id > before[watched] && e.Data["silo"]!.GetValue<string>() != victim.Name) >= 3;
            var cut = new List<SseMessage>();
            var reading = ReadSse(victim.Api!, watched, null, cut, _ => false, stopReading.Token);
            var steady = new List<SseMessage>();
            var steadyReading = ReadSse(survivor.Api!, watched, null, steady, Enough, stopReading.Token);
            for (var wait = DateTime.UtcNow + TimeSpan.FromSeconds(30); Count(cut) < 2; await Task.Delay(50))
                Assert.True(DateTime.UtcNow < wait, $"no events on {victim.Name}'s gateway within 30 s ({victim.Api})");

            var killedAt = DateTimeOffset.UtcNow;
            victim.Kill();
            var cutBy = await reading.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(cutBy is HttpRequestException or IOException, $"the kill should cut the client on {victim.Name}'s gateway, not: {cutBy}");
            var resumedFrom = cut[^1].Id!.Value;
            var resumed = new List<SseMessage>();
            var resumedBy = await ReadSse(survivor.Api!, watched, resumedFrom.ToString(), resumed, Enough, stopReading.Token);

            // Every stream writes new segments within 10 s of the kill; the victim's streams from a survivor.
            var firstAfter = new Dictionary<string, double>();
            var deadline = killedAt + TimeSpan.FromSeconds(10);
            while (firstAfter.Count < opened.Length && DateTimeOffset.UtcNow < deadline + TimeSpan.FromSeconds(20))
            {
                foreach (var s in opened.Where(s => !firstAfter.ContainsKey(s.Id)))
                {
                    var page = await admin.Log.ReadAsync(s.Id, before[s.Id], 1000);
                    foreach (var e in page.Entries)
                    {
                        using var doc = JsonDocument.Parse(e.Data);
                        var written = DateTimeOffset.FromUnixTimeMilliseconds(doc.RootElement.GetProperty("written_at").GetInt64());
                        var at = doc.RootElement.GetProperty("silo").GetString();
                        if (written > killedAt && at != victim.Name) { firstAfter[s.Id] = (written - killedAt).TotalSeconds; break; }
                    }
                }
                await Task.Delay(100);
            }
            Assert.True(firstAfter.Count == opened.Length, $"streams with no new segment 30 s after the kill: {string.Join(", ", opened.Select(s => s.Id).Except(firstAfter.Keys))}");
            Assert.True(firstAfter.Values.Max() <= 10, $"slowest stream wrote again {firstAfter.Values.Max():0.0} s after the kill ({string.Join(", ", firstAfter.Select(kv => $"{kv.Key}: {kv.Value:0.0} s"))})");

            foreach (var moved in bySilo[victim.Name])
            {
                var info = await WaitFor(streams, moved, x => x.DurableSeq > before[moved] + 2, 30, "segments on a survivor");
                Assert.NotEqual(victim.Name, info.SiloName);
                var f = Assert.Single(info.Failovers);
                Assert.Equal(victim.Address, f.FromSilo);
                Assert.True(f.At > killedAt && f.At < killedAt + TimeSpan.FromSeconds(10), $"failed over at {f.At:O}, killed at {killedAt:O}");
            }
            foreach (var s in opened) TestCluster.NoGapNoDuplicate((await admin.Log.ReadAsync(s.Id, 0, 100_000)).Entries.Select(e => e.Seq).ToList(), s.Id);

            // Both SSE clients saw every event of the watched stream exactly once, in order, as the log holds it.
            Assert.Null(resumedBy);
            Assert.Null(await steadyReading.WaitAsync(TimeSpan.FromSeconds(60)));
            var log = (await admin.Log.ReadAsync(watched, 0, 100_000)).Entries.ToDictionary(e => e.Seq);
            foreach (var (who, got) in new[] { ($"cut by the kill, resumed after {resumedFrom}", cut.Concat(resumed).ToList()), ("on a survivor's gateway", steady) })
            {
                var ids = got.Select(e => e.Id!.Value).ToList();
                output.WriteLine($"stream {watched}, client {who}: events {ids.FirstOrDefault()}..{ids.LastOrDefault()} ({ids.Count}), the kill after {before[watched]}");
                Assert.True(ids.SequenceEqual(Enumerable.Range(1, ids.Count).Select(i => (long)i)),
                    $"the client {who} should see 1..{ids.Count} once each: {string.Join(",", ids)}");
                Assert.All(got, e => Assert.True(log[e.Id!.Value].Type == e.Type && JsonNode.DeepEquals(JsonNode.Parse(log[e.Id!.Value].Data), e.Data),
                    $"event {e} is not the log's {log[e.Id!.Value]}"));
                Assert.Contains(got, e => e.Type == "segment" && e.Data["silo"]!.GetValue<string>() == victim.Name);
                Assert.Contains(got, e => e.Type == "segment" && e.Data["silo"]!.GetValue<string>() != victim.Name && e.Id > before[watched]);
            }
        }
        finally
        {
            foreach (var s in silos) await s.DisposeAsync();
        }
    }

    static int Count<T>(List<T> list) { lock (list) return list.Count; }

    /// <summary>
    /// Reads a stream's events from a gateway into <paramref name="into"/> (an EventSource's reading,
    /// with Last-Event-ID when given) until <paramref name="enough"/> holds; returns null then, or what ended the reading.
    /// </summary>
    static Task<Exception?> ReadSse(Uri gateway, string stream, string? lastEventId, List<SseMessage> into, Func<IReadOnlyList<SseMessage>, bool> enough, CancellationToken ct) =>
        Task.Run(async () =>
        {
            using var http = new HttpClient { BaseAddress = gateway, Timeout = Timeout.InfiniteTimeSpan };
            try
            {
                await foreach (var e in StreamServer.ReadEvents(http, $"v1/streams/{stream}/events", lastEventId, ct))
                {
                    lock (into) into.Add(e);
                    if (enough(into)) return null;
                }
                return new EndOfStreamException("the event stream ended");
            }
            catch (Exception e) { return e; }
        });

    /// <summary>What a single server's segment event holds (the page and clients read these), and what a cluster adds.</summary>
    static readonly string[] SegmentKeys = ["segment", "text", "frame", "time", "tokens", "mode", "reads", "level", "k", "read_ms", "write_ms", "latency_ms",
        "kept_tokens", "visual_tokens", "kept_grid", "silo", "captured_at", "written_at"];

    [Fact]
    public async Task AGateway_ServesTheStreamsApi_PlacesStreamsOnTheInferenceSilo_AndAnswersBadRequestsWithJsonErrors()
    {
        var url = redis.Need();
        var id = NewClusterId();
        var media = Path.Combine(Path.GetTempPath(), "ra-gateway-media-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(media);
        try
        {
            var silos = await Task.WhenAll(
                SiloProcess.Start(url, id, "gateway", "gw", "--media", media, "--simulate-model-ms", Simulate),
                SiloProcess.Start(url, id, "inference", "inf", "--simulate-model-ms", Simulate, "--metrics-port", "0"));
            await using var gw = silos[0];
            await using var inf = silos[1];
            Assert.Null(inf.Api); // an inference silo serves no API: its probes alone (--metrics-port)
            using var probes = new HttpClient { BaseAddress = inf.Probes!, Timeout = TimeSpan.FromMinutes(1) };
            Assert.Equal("Healthy", await probes.GetStringAsync("health"));
            using var http = new HttpClient { BaseAddress = gw.Api!, Timeout = TimeSpan.FromMinutes(1) };

            async Task<(int Status, JsonNode Body)> Send(HttpMethod method, string path, string? body = null, string? lastEventId = null)
            {
                using var request = new HttpRequestMessage(method, path);
                if (body is not null) request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
                if (lastEventId is not null) request.Headers.Add("Last-Event-ID", lastEventId);
                using var r = await http.SendAsync(request);
                var text = await r.Content.ReadAsStringAsync();
                Assert.True(r.Content.Headers.ContentType?.MediaType == "application/json", $"{method} {path}: {(int)r.StatusCode} {r.Content.Headers.ContentType} {text}");
                return ((int)r.StatusCode, JsonNode.Parse(text)!);
            }

            async Task Refused(int status, string code, HttpMethod method, string path, string? body = null, string? lastEventId = null)
            {
                var (got, error) = await Send(method, path, body, lastEventId);
                Assert.True(got == status, $"{method} {path} {body}: {got} {error.ToJsonString()}");
                Assert.False(string.IsNullOrWhiteSpace(error["error"]!["message"]!.GetValue<string>()));
                if (code.Length > 0) Assert.Equal(code, error["error"]!["code"]?.GetValue<string>());
            }

            // Malformed and refused requests: each a 4xx (or a 5xx that says why) with OpenAI's error JSON; the gateway stays healthy.
            await Refused(400, "", HttpMethod.Post, "v1/streams", "{not json");
            await Refused(400, "unknown_parameter", HttpMethod.Post, "v1/streams", """{"source": "synthetic", "colour": "red"}""");
            await Refused(400, "", HttpMethod.Post, "v1/streams", """{"stride": 2}""");
            await Refused(403, "path_not_allowed", HttpMethod.Post, "v1/streams", """{"source": "../../etc/passwd"}""");
            await Refused(400, "source_not_found", HttpMethod.Post, "v1/streams", """{"source": "missing.mp4"}""");
            await Refused(501, "not_available_in_cluster", HttpMethod.Post, "v1/streams", """{"source": "push"}""");
            await Refused(400, "invalid_source", HttpMethod.Post, "v1/streams", """{"source": "synthetic:seed=1,colour=red"}"""); // the inference silo refuses it
            await Refused(404, "stream_not_found", HttpMethod.Get, "v1/streams/str_0000000000000000");
            await Refused(404, "stream_not_found", HttpMethod.Delete, "v1/streams/str_0000000000000000");
            await Refused(503, "no_model", HttpMethod.Post, "v1/chat/completions", """{"model": "x", "messages": [{"role": "user", "content": "hi"}]}""");
            Assert.Empty((await Send(HttpMethod.Get, "v1/models")).Body["data"]!.AsArray());
            Assert.Empty((await Send(HttpMethod.Get, "v1/streams")).Body["data"]!.AsArray());

            // A stream opened on the gateway runs on the inference silo, and GET shows it there.
            var (created, opened) = await Send(HttpMethod.Post, "v1/streams", """{"source": "synthetic:seed=11,size=48,fps=10", "policy": "every:1", "stride": 2, "window": 3, "gate": 0, "loop": true}""");
            Assert.True(created == 201, opened.ToJsonString());
            Assert.Equal(3, opened["window"]!.GetValue<int>()); // the request's settings reach the silo's definition
            Assert.Equal(0, opened["gate"]!.GetValue<double>());
            var stream = opened["id"]!.GetValue<string>();
            Assert.StartsWith("str_", stream);
            Assert.Equal("synthetic", opened["kind"]!.GetValue<string>());
            JsonNode state = opened;
            for (var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60); ; await Task.Delay(200))
            {
                state = (await Send(HttpMethod.Get, $"v1/streams/{stream}")).Body;
                if (state["state"]!.GetValue<string>() == "running" && state["events"]!["last"]!.GetValue<long>() >= 3) break;
                Assert.True(DateTime.UtcNow < deadline, $"stream {stream} not running with 3 events within 60 s: {state.ToJsonString()}");
            }
            Assert.Equal("inf", state["cluster"]!["silo"]!.GetValue<string>());
            Assert.True(state["stats"]!["captions"]!.GetValue<long>() >= 1, state.ToJsonString());
            // The silo that runs it counts it: the stream open and its captions, on its /metrics.
            Assert.Equal(1, await ServerTestSupport.Metric(probes, "ra_streams_open"));
            Assert.True(await ServerTestSupport.Metric(probes, "ra_stream_captions", "kind=\"caption\",mode=\"simulated\"") >= 1);
            Assert.Equal(HttpStatusCode.NotFound, (await probes.GetAsync("v1/streams")).StatusCode); // no streams API there
            Assert.Equal(stream, Assert.Single((await Send(HttpMethod.Get, "v1/streams")).Body["data"]!.AsArray())!["id"]!.GetValue<string>());
            await Refused(501, "not_available_in_cluster", HttpMethod.Get, $"v1/streams/{stream}/video");
            await Refused(400, "", HttpMethod.Get, $"v1/streams/{stream}/events", lastEventId: "abc");

            // Its events read as a single server's: segment events numbered by their SSE id, with the same fields.
            using var reading = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var first = new List<SseMessage>();
            await foreach (var e in StreamServer.ReadEvents(http, $"v1/streams/{stream}/events", ct: reading.Token))
            {
                first.Add(e);
                if (first.Count == 3) break;
            }
            Assert.Equal([1L, 2L, 3L], first.Select(e => e.Id!.Value));
            Assert.All(first, e =>
            {
                Assert.Equal("segment", e.Type);
                Assert.Equal(e.Id, e.Data["segment"]!.GetValue<long>());
                Assert.Equal(SegmentKeys, e.Data.AsObject().Select(kv => kv.Key));
            });

            // A question: its event and its answer's carry the id the gateway returned.
            var (accepted, asked) = await Send(HttpMethod.Post, $"v1/streams/{stream}/questions", """{"text": "what moves"}""");
            Assert.True(accepted == 202, asked.ToJsonString());
            var qid = asked["question_id"]!.GetValue<string>();
            var followers = new List<SseMessage>();
            await foreach (var e in StreamServer.ReadEvents(http, $"v1/streams/{stream}/events", "3", reading.Token))
            {
                followers.Add(e);
                if (e.Type == "answer") break;
            }
            Assert.Equal(Enumerable.Range(4, followers.Count).Select(i => (long)i), followers.Select(e => e.Id!.Value));
            Assert.Equal(qid, Assert.Single(followers, e => e.Type == "question").Data["question_id"]!.GetValue<string>());
            var answer = followers[^1].Data;
            Assert.Equal(qid, answer["question_id"]!.GetValue<string>());
            Assert.Contains("what moves", answer["text"]!.GetValue<string>());

            // Deleting it ends a follower's event stream with the single server's "end" event; then it is gone.
            var last = followers[^1].Id!.Value;
            var ending = new List<SseMessage>();
            var follow = Task.Run(async () =>
            {
                await foreach (var e in StreamServer.ReadEvents(http, $"v1/streams/{stream}/events", last.ToString(), reading.Token)) ending.Add(e);
            });
            await Task.Delay(500);
            var (deleted, gone) = await Send(HttpMethod.Delete, $"v1/streams/{stream}");
            Assert.True(deleted == 200 && gone["deleted"]!.GetValue<bool>(), gone.ToJsonString());
            await follow.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal("end", ending[^1].Type);
            Assert.Equal("deleted", ending[^1].Data["reason"]!.GetValue<string>());
            await Refused(404, "stream_not_found", HttpMethod.Get, $"v1/streams/{stream}");
            Assert.False(gw.HasExited || inf.HasExited);
        }
        finally { try { Directory.Delete(media, true); } catch (IOException) { } }
    }

    [Fact]
    public async Task RedisLostWhileRunning_SilosKeepCaptioningFromMemory_SayTheLogIsDegraded_AndCatchUp()
    {
        await using var own = await RedisServer.StartAsync(); // killed mid-test
        var id = NewClusterId();
        var silos = await StartSilos(own.Url, id, ("both", "r1"), ("both", "r2"));
        try
        {
            await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = own.Url, ClusterId = id });
            var opened = await Task.WhenAll(Enumerable.Range(0, 2).Select(i => admin.Streams.OpenAsync(Clip(300 + i), limit: 10)));
            var before = new Dictionary<string, long>();
            foreach (var s in opened) before[s.Id] = (await WaitFor(admin.Streams, s.Id, x => x.DurableSeq >= 2, 60, "two segments")).LastSeq;
            await own.KillAsync();
            var duringOutage = new Dictionary<string, long>();
            foreach (var s in opened)
            {
                var degraded = await WaitFor(admin.Streams, s.Id, x => x.Log == "degraded" && x.LastSeq >= before[s.Id] + 5, 60, "degraded, captioning from memory");
                Assert.Equal("running", degraded.State);
                Assert.Contains("unreachable", degraded.LogError);
                duringOutage[s.Id] = degraded.LastSeq;
            }
            Assert.All(silos, x => Assert.False(x.HasExited, $"silo {x.Name} died with Redis: {x.Stderr}"));
            await own.StartProcessAsync();
            foreach (var s in opened)
            {
                var healed = await WaitFor(admin.Streams, s.Id, x => x.Log == "ok" && x.DurableSeq == x.LastSeq && x.DurableSeq > before[s.Id] + 5, 90, "the log caught up");
                // Redis came back empty (no persistence): it holds what was numbered from the outage on, with no gap.
                var seqs = (await admin.Log.ReadAsync(s.Id, 0, 100_000)).Entries.Select(e => e.Seq).ToArray();
                Assert.Equal(Enumerable.Range((int)seqs[0], seqs.Length).Select(v => (long)v), seqs);
                Assert.True(seqs[0] <= duringOutage[s.Id], $"the log restarts at {seqs[0]}; {duringOutage[s.Id]} was numbered during the outage");
                Assert.True(seqs[^1] >= healed.DurableSeq, $"the log ends at {seqs[^1]}, the stream says {healed.DurableSeq} is durable");
            }
        }
        finally
        {
            foreach (var s in silos) await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task RedisUnreachableAtStart_IsAClearErrorAndExit2()
    {
        var port = RedisServer.FreePort();
        var (code, _, err) = await ServerTestSupport.Run("dotnet", SiloProcess.Args($"redis://127.0.0.1:{port}", "x", "inference", "lonely", "--simulate-model-ms", "5"), timeout: TimeSpan.FromMinutes(2));
        Assert.Equal(2, code);
        Assert.Contains($"error: cannot reach Redis at 127.0.0.1:{port}", err);
        Assert.DoesNotContain("   at ", err); // no stack trace
    }

    [Fact]
    public async Task ASiloWithAnotherModel_RefusesToJoin_NamingBoth()
    {
        var url = redis.Need();
        var id = NewClusterId();
        await using var first = await SiloProcess.Start(url, id, "inference", "first", "--simulate-model-ms", "10");
        var (code, _, err) = await ServerTestSupport.Run("dotnet", SiloProcess.Args(url, id, "inference", "second", "--simulate-model-ms", "20"), timeout: TimeSpan.FromMinutes(2));
        Assert.Equal(2, code);
        Assert.Contains("error: this silo's model (simulated read 20 ms", err);
        Assert.Contains("inference silo 'first' runs simulated read 10 ms", err);
        Assert.Single(err.Trim().Split('\n'), l => l.StartsWith("error:"));
        Assert.False(first.HasExited);
    }

    [Theory]
    [InlineData("--role", "conductor", "--role must be inference, gateway or both")]
    [InlineData("--cluster-host", "10.1.2.3", "add --cluster-tls")]
    [InlineData("--cluster-id", "a b", "--cluster-id takes letters")]
    [InlineData("--simulate-model-ms", "fast", "--simulate-model-ms takes READ[,TOKEN]")]
    [InlineData("--host", "0.0.0.0", "set --api-key KEY too")] // a gateway keeps ra serve's API key rule
    public async Task BadClusterFlags_AreOneLineErrorsAndExit2(string flag, string value, string message)
    {
        var args = new List<string> { ServerTestSupport.RaDll, "serve", "--cluster", "redis://127.0.0.1:1", flag, value };
        if (flag != "--simulate-model-ms") args.AddRange(["--simulate-model-ms", "5"]);
        var (code, _, err) = await ServerTestSupport.Run("dotnet", args, timeout: TimeSpan.FromMinutes(2));
        Assert.Equal(2, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public async Task DrainThroughTheCli_MovesEveryStreamOff_WithNoGap()
    {
        var url = redis.Need();
        var id = NewClusterId();
        var silos = await StartSilos(url, id, ("both", "d1"), ("inference", "d2"));
        try
        {
            await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = url, ClusterId = id });
            var opened = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => admin.Streams.OpenAsync(Clip(200 + i), limit: 100)));
            foreach (var s in opened) await WaitFor(admin.Streams, s.Id, x => x.DurableSeq >= 2, 60, "two segments");
            var onD2 = (await Task.WhenAll(opened.Select(s => admin.Streams.GetAsync(s.Id)))).Where(s => s!.SiloName == "d2").Select(s => s!.Id).ToArray();
            Assert.NotEmpty(onD2);
            var (code, stdout, err) = await ServerTestSupport.Run("dotnet", [ServerTestSupport.RaDll, "cluster", "drain", "d2", "--cluster", url, "--cluster-id", id], timeout: TimeSpan.FromMinutes(3));
            Assert.True(code == 0, $"drain exited {code}: {err}");
            Assert.Contains($"drained d2: {onD2.Length} stream(s) moved", stdout);
            foreach (var s in opened)
            {
                var info = await WaitFor(admin.Streams, s.Id, x => x.SiloName == "d1" && x.DurableSeq >= 4, 30, "running on d1");
                if (onD2.Contains(s.Id)) Assert.Single(info.Moves);
                Assert.Empty(info.Failovers);
            }
            foreach (var s in opened) TestCluster.NoGapNoDuplicate((await admin.Log.ReadAsync(s.Id, 0, 100_000)).Entries.Select(e => e.Seq).ToList(), s.Id);
            var (badCode, _, badErr) = await ServerTestSupport.Run("dotnet", [ServerTestSupport.RaDll, "cluster", "drain", "nobody", "--cluster", url, "--cluster-id", id], timeout: TimeSpan.FromMinutes(3));
            Assert.Equal(2, badCode);
            Assert.Contains("no active silo 'nobody'", badErr);
        }
        finally
        {
            foreach (var s in silos) await s.DisposeAsync();
        }
    }

    /// <summary>
    /// `ra cluster status` on a cluster id no silo has joined is one line and exit 2 after the
    /// client's patience (15 s), not after Orleans' default back-off of three minutes.
    /// </summary>
    [Fact]
    public void ClusterStatus_OnAClusterNoSiloJoined_IsOneLine_WithinTheClientsPatience()
    {
        var url = redis.Need();
        var id = NewClusterId();
        var r = RealtimeAssistant.Tests.Cli.CliProcess.Run(["cluster", "status", "--cluster", url, "--cluster-id", id], TimeSpan.FromSeconds(90));
        output.WriteLine(r.ToString());
        Assert.False(r.TimedOut, "it waited out Orleans' back-off");
        Assert.Equal(2, r.Code);
        var line = Assert.Single(r.Lines);
        Assert.StartsWith($"error: cannot connect to cluster '{id}'", line);
        Assert.Contains("within 15 s", line);
    }

    [Fact]
    public async Task TlsBetweenSilos_WithASharedCertificate_StreamsRunAcrossThem()
    {
        var url = redis.Need();
        var id = NewClusterId();
        var dir = Path.Combine(Path.GetTempPath(), "ra-cluster-tls-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var pfx = Path.Combine(dir, "cluster.pfx");
            using (var cert = ClusterTls.SelfSigned("CN=ra-test-cluster")) File.WriteAllBytes(pfx, cert.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12));
            string[] tls = ["--cluster-tls", "--cluster-cert", pfx, "--simulate-model-ms", Simulate];
            await using var gw = await SiloProcess.Start(url, id, "gateway", "g", tls);
            await using var inf = await SiloProcess.Start(url, id, "inference", "i", tls);
            await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = url, ClusterId = id, Tls = true, Certificate = pfx });
            var s = await admin.Streams.OpenAsync(Clip(7), limit: 10);
            var info = await WaitFor(admin.Streams, s.Id, x => x.DurableSeq >= 3, 60, "three segments");
            Assert.Equal("i", info.SiloName);
            // A client without TLS cannot talk to a TLS cluster, and says what it may be missing.
            var e = await Assert.ThrowsAsync<UserError>(() => ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = url, ClusterId = id }));
            Assert.Contains($"cannot connect to cluster '{id}'", e.Message);
            Assert.Contains("needs --cluster-tls here too", e.Message);
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }
}
