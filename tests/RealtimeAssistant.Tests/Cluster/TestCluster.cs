using Microsoft.Extensions.DependencyInjection;
using Orleans.Hosting;
using Orleans.TestingHost;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Cluster.Log;
using RealtimeAssistant.Cluster.Streams;
using RealtimeAssistant.Streaming;
using StackExchange.Redis;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>
/// Orleans' in-process test cluster with our silos: each silo's role from a list (Silo_0, Silo_1, …),
/// the simulated model on the inference silos, grain state and the caption log on a real Redis.
/// </summary>
internal sealed class TestCluster : IAsyncDisposable
{
    public InProcessTestCluster Cluster { get; }
    public IConnectionMultiplexer Redis { get; }
    public CaptionLog Log { get; }
    public ClusterStreamHost Streams { get; }
    public IClusterClient Client => Cluster.Client;

    TestCluster(InProcessTestCluster cluster, IConnectionMultiplexer redis, CaptionLog log)
    {
        Cluster = cluster;
        Redis = redis;
        Log = log;
        Streams = new ClusterStreamHost(cluster.Client, log);
    }

    public static readonly SimulatedModel Model = new(8, 1, Tokens: 6);

    public static async Task<TestCluster> StartAsync(string redisUrl, params SiloRole[] roles)
    {
        var (redis, config) = await RedisConnection.ConnectAsync(new ClusterSettings { Redis = redisUrl }, "test-cluster");
        var builder = new InProcessTestClusterBuilder((short)roles.Length);
        builder.Options.ConfigureFileLogging = false;
        var clusterId = builder.Options.ClusterId;
        var log = new CaptionLog(redis, clusterId) { PollInterval = TimeSpan.FromMilliseconds(500) };
        Task<(IConnectionMultiplexer, bool)> Shared<T>(T _) => Task.FromResult<(IConnectionMultiplexer, bool)>((redis, true));
        builder.ConfigureSilo((options, silo) =>
        {
            var role = roles[int.Parse(options.SiloName.Split('_')[1])];
            ClusterSilo.Configure(silo, role, Model.Version, new ClusterSettings { Redis = redisUrl, ProbeTimeout = TimeSpan.FromSeconds(1) });
            silo.AddRedisGrainStorage(ClusterStorage.Name, o => { o.ConfigurationOptions = config; o.CreateMultiplexer = Shared; });
            silo.UseInMemoryReminderService();
            silo.Services.AddSingleton(new CaptionLog(redis, clusterId));
            if (role != SiloRole.Gateway)
                silo.Services.AddSingleton(new StreamRuntime(null, Model, (realtime, loop) => AppSources.Options(realtime, loop)));
        });
        var cluster = builder.Build();
        // Placement asks which silos can host a grain from the cluster manifest: until every silo's
        // view holds every other's, a burst of new streams can all land on the first inference silo.
        try { await cluster.DeployAsync(); await cluster.WaitForClusterManifestToStabilizeAsync(); }
        catch
        {
            await cluster.DisposeAsync();
            await redis.DisposeAsync();
            throw;
        }
        return new TestCluster(cluster, redis, log);
    }

    public InProcessSiloHandle Silo(string name) => Cluster.Silos.Single(s => s.Name == name);

    public static StreamDefinition Synthetic(int seed) => new() { Source = $"synthetic:seed={seed},size=48,fps=10", Stride = 2, Policy = "every:1", Gate = 0 };

    /// <summary>Waits until <paramref name="done"/> holds for the stream's info, or fails after <paramref name="seconds"/>.</summary>
    public async Task<StreamStatus> WaitFor(string id, Func<StreamStatus, bool> done, double seconds, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        StreamStatus? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try { last = await Streams.GetAsync(id); }
            catch (Exception) { last = null; } // the stream is between silos
            if (last is not null && done(last)) return last;
            await Task.Delay(200);
        }
        throw new TimeoutException($"stream {id}: {what} not within {seconds} s (last: {last})");
    }

    /// <summary>Every sequence number the log holds for a stream, in order.</summary>
    public async Task<List<long>> Seqs(string id)
    {
        var page = await Log.ReadAsync(id, 0, 100_000);
        Assert.Equal(0, page.Missed);
        return page.Entries.Select(e => e.Seq).ToList();
    }

    public static void NoGapNoDuplicate(IReadOnlyList<long> seqs, string id)
    {
        Assert.True(seqs.Count > 0, $"stream {id} logged nothing");
        for (int i = 0; i < seqs.Count; i++)
            Assert.True(seqs[i] == i + 1, $"stream {id}: entry {i} has sequence number {seqs[i]}, expected {i + 1} (log: {string.Join(',', seqs)})");
    }

    public async ValueTask DisposeAsync()
    {
        try { await Cluster.StopAllSilosAsync(); } catch (Exception) { }
        await Cluster.DisposeAsync();
        await Redis.DisposeAsync();
    }
}
