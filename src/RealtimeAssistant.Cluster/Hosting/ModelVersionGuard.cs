using StackExchange.Redis;

namespace RealtimeAssistant.Cluster;

/// <summary>
/// Keeps the inference silos of a cluster on one model: each live inference silo keeps a key
/// <c>ra:CLUSTER:model:SILO</c> = its model's identity (a 30 s lease, renewed every 10 s), and a
/// silo whose model differs from a live one's refuses to join before it joins, with both named.
/// </summary>
public sealed class ModelVersionGuard : IAsyncDisposable
{
    static readonly TimeSpan Lease = TimeSpan.FromSeconds(30), Renew = TimeSpan.FromSeconds(10);
    readonly IConnectionMultiplexer _redis;
    readonly RedisKey _key;
    readonly string _version;
    readonly CancellationTokenSource _stop = new();
    Task? _renewer;

    ModelVersionGuard(IConnectionMultiplexer redis, RedisKey key, string version) { _redis = redis; _key = key; _version = version; }

    /// <summary>Refuses (a <see cref="UserError"/>) when a live inference silo runs another model; otherwise holds this silo's lease.</summary>
    public static async Task<ModelVersionGuard> JoinAsync(IConnectionMultiplexer redis, string clusterId, string siloName, string version, string description)
    {
        var prefix = $"ra:{clusterId}:model:";
        var db = redis.GetDatabase();
        foreach (var server in redis.GetServers())
            await foreach (var key in server.KeysAsync(db.Database, prefix + "*"))
            {
                var other = (string?)await db.StringGetAsync(key);
                var otherSilo = ((string)key!)[prefix.Length..];
                if (other is not null && other != version && otherSilo != siloName)
                    throw new UserError($"this silo's model ({description}) is not the cluster's: inference silo '{otherSilo}' runs {other}; " +
                        "start every inference silo with the same --model (or --simulate-model-ms), or use another --cluster-id");
            }
        var guard = new ModelVersionGuard(redis, prefix + siloName, version);
        await db.StringSetAsync(guard._key, version, Lease);
        guard._renewer = Task.Run(guard.RenewLoop);
        return guard;
    }

    async Task RenewLoop()
    {
        using var timer = new PeriodicTimer(Renew);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                try { await _redis.GetDatabase().StringSetAsync(_key, _version, Lease); }
                catch (Exception e) when (e is RedisException or TimeoutException) { /* Redis is away; the lease is renewed when it returns */ }
            }
        }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_renewer is not null) await _renewer.ContinueWith(_ => { });
        try { await _redis.GetDatabase().KeyDeleteAsync(_key); } catch (Exception) { }
    }
}
