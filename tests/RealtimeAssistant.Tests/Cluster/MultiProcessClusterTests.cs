using System.Text.Json;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>
/// `ra serve --cluster` processes on loopback with a Redis of the fixture's, the simulated model
/// and generated clips: a silo killed with SIGKILL, a drain, and the bad inputs of a cluster.
/// </summary>
[Collection("cluster")]
public class MultiProcessClusterTests(RedisFixture redis) : IClassFixture<RedisFixture>
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

            var killedAt = DateTimeOffset.UtcNow;
            victim.Kill();

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
        }
        finally
        {
            foreach (var s in silos) await s.DisposeAsync();
        }
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
            // A client without TLS cannot talk to a TLS cluster.
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                await using var plain = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = url, ClusterId = id });
                await plain.Streams.ListAsync().WaitAsync(TimeSpan.FromSeconds(20));
            });
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }
}
