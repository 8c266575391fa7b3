using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;
using RealtimeAssistant.Cluster.Grains;
using StackExchange.Redis;

namespace RealtimeAssistant.Cluster;

/// <summary>A silo as the membership table lists it, with the streams it holds.</summary>
public sealed record SiloView(string Name, string Address, string Status, string[] Streams, bool Draining);

/// <summary>One stream moved by a drain: from where to where, and the log's top before and after.</summary>
public sealed record MovedStream(string Stream, string From, string To, long SeqBefore, long SeqAfter, double Seconds);

/// <summary>`ra cluster status` and `ra cluster drain SILO`, over an Orleans client connected through the cluster's Redis.</summary>
public sealed class ClusterAdmin : IAsyncDisposable
{
    readonly IHost _host;
    readonly IConnectionMultiplexer _redis;

    ClusterAdmin(IHost host, IConnectionMultiplexer redis, ClusterSettings settings)
    {
        _host = host;
        _redis = redis;
        Log = new Log.CaptionLog(redis, settings.ClusterId, settings.LogRetention);
        Streams = new ClusterStreamHost(Client, Log);
    }

    public IClusterClient Client => _host.Services.GetRequiredService<IClusterClient>();
    public Log.CaptionLog Log { get; }
    /// <summary>The streams API over this client (what a gateway's endpoints call).</summary>
    public ClusterStreamHost Streams { get; }

    public static async Task<ClusterAdmin> ConnectAsync(ClusterSettings s, CancellationToken ct = default)
    {
        s.Validate();
        var (redis, config) = await RedisConnection.ConnectAsync(s, $"ra-cluster-client-{Environment.ProcessId}");
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ApplicationName = "ra-cluster-client" });
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(c =>
        {
            c.Configure<ClusterOptions>(o => { o.ClusterId = s.ClusterId; o.ServiceId = "ra-" + s.ClusterId; });
            c.UseRedisClustering(o => { o.ConfigurationOptions = config; o.CreateMultiplexer = _ => Task.FromResult<(IConnectionMultiplexer, bool)>((redis, true)); });
            if (s.Tls)
            {
                var cert = ClusterTls.Certificate(s);
                c.UseTls(cert, o => ClusterTls.Configure(o, cert, shared: s.Certificate is not null));
            }
            c.UseConnectionRetryFilter(new RetryFor(s.ConnectPatience));
        });
        var host = builder.Build();
        try { await host.StartAsync(ct); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            await redis.DisposeAsync();
            throw new UserError($"cannot connect to cluster '{s.ClusterId}' through {s.Redis} within {s.ConnectPatience.TotalSeconds:0} s: {e.GetBaseException().Message} " +
                (s.Tls ? "(is a silo of it running?)" : "(is a silo of it running? a cluster started with --cluster-tls needs --cluster-tls here too)"));
        }
        return new ClusterAdmin(host, redis, s);
    }

    /// <summary>Retries what Orleans' default retries (a refused or dropped connection, no gateway yet), a second apart, until <paramref name="patience"/> has passed since the first try.</summary>
    sealed class RetryFor(TimeSpan patience) : IClientConnectionRetryFilter
    {
        readonly Stopwatch _since = Stopwatch.StartNew();

        public async Task<bool> ShouldRetryConnectionAttempt(Exception exception, CancellationToken ct)
        {
            if (ct.IsCancellationRequested || _since.Elapsed >= patience) return false;
            if (exception is not (OrleansMessageRejectionException or Orleans.Runtime.Messaging.ConnectionFailedException)) return false;
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            return true;
        }
    }

    public static async Task<IReadOnlyList<SiloView>> StatusAsync(IGrainFactory grains)
    {
        var hosts = await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false);
        var directory = grains.GetGrain<IStreamDirectoryGrain>(0);
        var where = await directory.Assignments();
        var draining = (await directory.Draining()).ToHashSet();
        return hosts.OrderBy(h => h.SiloName, StringComparer.Ordinal)
            .Select(h => new SiloView(h.SiloName, h.SiloAddress.ToParsableString(), h.Status.ToString(),
                where.TryGetValue(h.SiloAddress, out var s) ? s : [], draining.Contains(h.SiloAddress)))
            .ToArray();
    }

    /// <summary>The active silo named (its silo name, or its address as status prints it).</summary>
    public static async Task<SiloAddress> FindSiloAsync(IGrainFactory grains, string silo)
    {
        var hosts = await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: true);
        var match = hosts.Where(h => h.SiloName == silo || h.SiloAddress.ToParsableString() == silo || h.SiloAddress.Endpoint.ToString() == silo).ToArray();
        return match.Length switch
        {
            1 => match[0].SiloAddress,
            0 => throw new UserError($"no active silo '{silo}' in the cluster (active: {string.Join(", ", hosts.Select(h => h.SiloName))})"),
            _ => throw new UserError($"'{silo}' names {match.Length} silos; give its address (ra cluster status lists them)"),
        };
    }

    /// <summary>
    /// Moves every stream off <paramref name="silo"/> by grain migration: the silo is marked
    /// draining (placement skips it from now on), each stream's activation is asked to migrate,
    /// flushes its log and hands its position to the new activation. Returns once each stream runs
    /// elsewhere, or throws after <paramref name="timeout"/> naming those that did not move.
    /// </summary>
    public static async Task<IReadOnlyList<MovedStream>> DrainAsync(IGrainFactory grains, SiloAddress silo, TimeSpan timeout, CancellationToken ct = default)
    {
        var directory = grains.GetGrain<IStreamDirectoryGrain>(0);
        await directory.SetDraining(silo, true);
        var here = silo.ToParsableString();
        var ids = new List<string>();
        foreach (var id in await directory.List())
            if (await grains.GetGrain<IStreamGrain>(id).Info() is { Silo: { } at } && at == here) ids.Add(id);
        var sw = Stopwatch.StartNew();
        var moved = new List<MovedStream>();
        var pending = new Dictionary<string, long>();
        foreach (var id in ids)
        {
            var info = await grains.GetGrain<IStreamGrain>(id).Info();
            pending[id] = info?.LastSeq ?? 0;
            await grains.GetGrain<IStreamGrain>(id).Migrate();
        }
        while (pending.Count > 0)
        {
            if (sw.Elapsed > timeout)
                throw new UserError($"drain: {pending.Count} stream(s) did not leave {here} within {timeout.TotalSeconds:0} s ({string.Join(", ", pending.Keys)}); is there another inference silo?");
            await Task.Delay(200, ct);
            foreach (var id in pending.Keys.ToArray())
            {
                var info = await grains.GetGrain<IStreamGrain>(id).Info();
                if (info is { Silo: { } at } && at != here)
                {
                    moved.Add(new MovedStream(id, here, at, pending[id], info.LastSeq, sw.Elapsed.TotalSeconds));
                    pending.Remove(id);
                }
                else if (info is null || info.State == "closed") pending.Remove(id);
            }
        }
        return moved;
    }

    public async ValueTask DisposeAsync()
    {
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            try { await _host.StopAsync(timeout.Token); } catch (OperationCanceledException) { }
        }
        _host.Dispose();
        await Log.DisposeAsync();
        await _redis.DisposeAsync();
    }
}
