using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime.MembershipService.SiloMetadata;
using RealtimeAssistant.Cluster.Grains;
using RealtimeAssistant.Cluster.Log;
using RealtimeAssistant.Cluster.Streams;
using RealtimeAssistant.Cluster.Supervision;
using StackExchange.Redis;

namespace RealtimeAssistant.Cluster;

/// <summary>
/// One `ra serve --cluster` process's silo: Redis for membership (Orleans' Redis clustering), grain
/// state and reminders, and the caption log, all on one connection; its role and model in its
/// metadata; TLS on its connections when asked. Inference silos run streams with the runtime they
/// are given; gateways host the HTTP API (the caller starts it over <see cref="Streams"/>).
/// </summary>
public sealed class ClusterNode : IAsyncDisposable
{
    readonly IHost _host;
    readonly ModelVersionGuard? _guard;
    readonly IConnectionMultiplexer _redis;

    ClusterNode(IHost host, IConnectionMultiplexer redis, ModelVersionGuard? guard, ClusterSettings settings, string name)
    {
        _host = host;
        _redis = redis;
        _guard = guard;
        Settings = settings;
        SiloName = name;
        var details = host.Services.GetRequiredService<ILocalSiloDetails>();
        Address = details.SiloAddress;
        Gateway = details.GatewayAddress;
        Log = host.Services.GetRequiredService<CaptionLog>();
        Streams = new ClusterStreamHost(host.Services.GetRequiredService<IGrainFactory>(), Log);
    }

    public ClusterSettings Settings { get; }
    public string SiloName { get; }
    public SiloAddress Address { get; }
    public SiloAddress Gateway { get; }
    public CaptionLog Log { get; }
    /// <summary>The stream seam the HTTP API's endpoints call on a gateway.</summary>
    public ClusterStreamHost Streams { get; }
    public IServiceProvider Services => _host.Services;
    public StreamSupervisor Supervisor => _host.Services.GetRequiredService<StreamSupervisor>();

    /// <summary>Active silos that run streams (inference or both), as this silo's membership view and silo metadata say.</summary>
    public int InferenceSilos()
    {
        var membership = _host.Services.GetRequiredService<IClusterMembershipService>();
        var metadata = _host.Services.GetRequiredService<ISiloMetadataCache>();
        return membership.CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active
            && Placement.SiloRoles.Of(metadata.GetSiloMetadata(m.SiloAddress)) is { } role && Placement.SiloRoles.RunsStreams(role));
    }

    /// <summary>
    /// Starts the silo and joins the cluster. Redis unreachable, a model that differs from the live
    /// inference silos', or a bad option is a <see cref="UserError"/> (one line, exit 2) before joining.
    /// </summary>
    public static async Task<ClusterNode> StartAsync(ClusterSettings s, StreamRuntime? runtime, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        var address = s.Validate();
        if (Placement.SiloRoles.RunsStreams(s.Role) && runtime is null) throw new ArgumentException("an inference silo needs a stream runtime");
        var name = s.EffectiveSiloName;
        var (redis, config) = await RedisConnection.ConnectAsync(s, name);
        ModelVersionGuard? guard = null;
        try
        {
            if (runtime is not null && Placement.SiloRoles.RunsStreams(s.Role))
                guard = await ModelVersionGuard.JoinAsync(redis, s.ClusterId, name, runtime.ModelVersion, runtime.ModelDescription);
            var host = Build(s, runtime, logging, redis, config, address, name);
            try { await host.StartAsync(ct); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                host.Dispose();
                throw new UserError($"silo {name} could not join cluster '{s.ClusterId}' at {s.Redis}: {e.GetBaseException().Message}");
            }
            return new ClusterNode(host, redis, guard, s, name);
        }
        catch
        {
            if (guard is not null) await guard.DisposeAsync();
            await redis.DisposeAsync();
            throw;
        }
    }

    static IHost Build(ClusterSettings s, StreamRuntime? runtime, Action<ILoggingBuilder>? logging, IConnectionMultiplexer redis,
        ConfigurationOptions config, IPAddress address, string name)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ApplicationName = "ra-cluster" });
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.Services.AddSingleton<IHostLifetime, CallerLifetime>(); // signals are the CLI's
        builder.Services.AddSingleton(new CaptionLog(redis, s.ClusterId, s.LogRetention));
        if (runtime is not null && Placement.SiloRoles.RunsStreams(s.Role)) builder.Services.AddSingleton(runtime);
        Task<(IConnectionMultiplexer, bool)> Shared<T>(T _) => Task.FromResult<(IConnectionMultiplexer, bool)>((redis, true));
        int siloPort = s.SiloPort == 0 ? ClusterSettings.FreePort(address) : s.SiloPort;
        int gatewayPort = s.GatewayPort == 0 ? ClusterSettings.FreePort(address) : s.GatewayPort;
        builder.UseOrleans(silo =>
        {
            ClusterSilo.Configure(silo, s.Role, runtime?.ModelVersion, s);
            silo.Configure<ClusterOptions>(o => { o.ClusterId = s.ClusterId; o.ServiceId = "ra-" + s.ClusterId; });
            silo.Configure<SiloOptions>(o => o.SiloName = name);
            silo.ConfigureEndpoints(address, siloPort, gatewayPort);
            silo.UseRedisClustering(o => { o.ConfigurationOptions = config; o.CreateMultiplexer = Shared; });
            silo.AddRedisGrainStorage(ClusterStorage.Name, o => { o.ConfigurationOptions = config; o.CreateMultiplexer = Shared; });
            silo.UseRedisReminderService(o => { o.ConfigurationOptions = config; o.CreateMultiplexer = Shared; });
            if (s.Tls)
            {
                var cert = ClusterTls.Certificate(s);
                silo.UseTls(cert, o => ClusterTls.Configure(o, cert, shared: s.Certificate is not null));
            }
        });
        return builder.Build();
    }

    /// <summary>Leaves the cluster gracefully: streams here deactivate cleanly and the supervisor of a survivor moves them.</summary>
    public async ValueTask DisposeAsync()
    {
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            try { await _host.StopAsync(timeout.Token); } catch (OperationCanceledException) { }
        }
        _host.Dispose();
        if (_guard is not null) await _guard.DisposeAsync();
        await Log.DisposeAsync();
        await _redis.DisposeAsync();
    }

    sealed class CallerLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
    }
}

/// <summary>The one Redis connection a process shares between Orleans' providers and the caption log.</summary>
public static class RedisConnection
{
    public static async Task<(IConnectionMultiplexer Redis, ConfigurationOptions Config)> ConnectAsync(ClusterSettings s, string clientName)
    {
        var (host, port, db) = s.RedisEndpoint();
        var config = new ConfigurationOptions
        {
            EndPoints = { { host, port } }, DefaultDatabase = db, ClientName = clientName,
            // Keep reconnecting after a loss (the streams go on from memory meanwhile), but fail a command fast.
            AbortOnConnectFail = false, ConnectTimeout = 3000, ConnectRetry = 1, SyncTimeout = 3000, AsyncTimeout = 3000,
            Password = Environment.GetEnvironmentVariable("RA_REDIS_PASSWORD") is { Length: > 0 } pw ? pw : null,
        };
        var redis = await ConnectionMultiplexer.ConnectAsync(config);
        try
        {
            await redis.GetDatabase().PingAsync();
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            await redis.DisposeAsync();
            throw new UserError($"cannot reach Redis at {host}:{port} ({FirstLine(e.Message)}): start redis-server there, or give --cluster redis://HOST:PORT");
        }
        return (redis, config);
    }

    static string FirstLine(string s)
    {
        var line = s.Split('\n')[0].Trim();
        return line.Length > 160 ? line[..160] + "…" : line;
    }
}
