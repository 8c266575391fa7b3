using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cluster.Grains;

namespace RealtimeAssistant.Cluster.Supervision;

/// <summary>
/// Watches cluster membership on every silo. When a silo is declared dead, the supervisor of the
/// oldest live silo (the lowest address: one acts, the rest stand by, and another takes over if it
/// dies) tells the directory, then calls every stream: a call to a stream whose silo is gone
/// activates it again, placed on a surviving inference silo, where it rebuilds its session from the
/// newest frames and continues its log after the last segment that reached it. A sweep every
/// <see cref="SweepInterval"/> catches anything a membership change missed; a reminder per stream
/// is the last resort.
/// </summary>
public sealed class StreamSupervisor(IClusterMembershipService membership, ILocalSiloDetails local, IGrainFactory grains, ILogger<StreamSupervisor> logger)
    : ILifecycleParticipant<ISiloLifecycle>
{
    readonly CancellationTokenSource _stop = new();
    Task? _watch, _sweep;

    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Recoveries done by this silo: when, which silo died, how many streams were called and how long that took.</summary>
    public List<(DateTimeOffset At, SiloAddress Dead, int Streams, TimeSpan Took)> Recoveries { get; } = new();

    public void Participate(ISiloLifecycle lifecycle) => lifecycle.Subscribe(nameof(StreamSupervisor), ServiceLifecycleStage.Active,
        _ =>
        {
            _watch = Task.Run(Watch);
            _sweep = Task.Run(Sweep);
            return Task.CompletedTask;
        },
        async _ =>
        {
            _stop.Cancel();
            foreach (var t in new[] { _watch, _sweep }) if (t is not null) await t.ContinueWith(_ => { });
        });

    bool IsLeader(ClusterMembershipSnapshot snapshot) =>
        snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).Order().FirstOrDefault() is { } first
        && first.Equals(local.SiloAddress);

    async Task Watch()
    {
        ClusterMembershipSnapshot? previous = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(_stop.Token))
            {
                var dead = previous is null ? [] : snapshot.CreateUpdate(previous).Changes
                    .Where(c => c.Status == SiloStatus.Dead && previous.Members.TryGetValue(c.SiloAddress, out var was) && was.Status != SiloStatus.Dead)
                    .Select(c => c.SiloAddress).ToArray();
                previous = snapshot;
                if (dead.Length == 0 || !IsLeader(snapshot)) continue;
                foreach (var silo in dead) await Recover(silo);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
        catch (Exception e) { logger.LogError(e, "supervisor: membership watch failed"); }
    }

    async Task Recover(SiloAddress dead)
    {
        var sw = Stopwatch.StartNew();
        var directory = grains.GetGrain<IStreamDirectoryGrain>(0);
        string[] streams;
        try
        {
            var held = await directory.SiloDied(dead);
            streams = await directory.List();
            logger.LogWarning("supervisor: silo {Silo} died holding {Held} streams; reactivating", dead, held.Length);
        }
        catch (Exception e)
        {
            logger.LogError("supervisor: the directory did not answer after {Silo} died ({Message}); the sweep will retry", dead, e.Message);
            return;
        }
        int ok = await EnsureAll(streams);
        Recoveries.Add((DateTimeOffset.UtcNow, dead, ok, sw.Elapsed));
        logger.LogWarning("supervisor: {Count} streams running after {Silo} died ({Ms:0} ms)", ok, dead, sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>Calls every stream (each call activates a stream that is not running), a few at a time, retrying failures.</summary>
    Task<int> EnsureAll(string[] streams) =>
        EnsureEach(streams, id => grains.GetGrain<IStreamGrain>(id).Ensure(), TimeProvider.System,
            (id, message) => logger.LogDebug("supervisor: stream {Stream} not reactivated yet ({Message})", id, message), _stop.Token);

    /// <summary>
    /// How long one <c>Ensure</c> call may take before it is sent again. A call made just after a
    /// death can go to the dead silo's cached address and would only fail at the response timeout;
    /// the call is idempotent, so a resend after a short wait reaches the stream's new activation sooner.
    /// </summary>
    internal static readonly TimeSpan EnsureCallWait = TimeSpan.FromSeconds(3);
    internal const int EnsureAttempts = 8;

    /// <summary>Calls <paramref name="ensure"/> for every id until one call answers: each call waits at most
    /// <see cref="EnsureCallWait"/>, then after a short pause is sent again, <see cref="EnsureAttempts"/> times at most. Returns how many answered.</summary>
    internal static async Task<int> EnsureEach(IEnumerable<string> ids, Func<string, Task> ensure, TimeProvider time, Action<string, string> notYet, CancellationToken stop)
    {
        int ok = 0;
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = stop }, async (id, ct) =>
        {
            for (int attempt = 0; attempt < EnsureAttempts && !ct.IsCancellationRequested; attempt++)
            {
                try
                {
                    await ensure(id).WaitAsync(EnsureCallWait, time, ct);
                    Interlocked.Increment(ref ok);
                    return;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    notYet(id, e.Message);
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(250 * (attempt + 1), 1000)), time, ct);
                }
            }
        });
        return ok;
    }

    async Task Sweep()
    {
        using var timer = new PeriodicTimer(SweepInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                if (!IsLeader(membership.CurrentSnapshot)) continue;
                try { await EnsureAll(await grains.GetGrain<IStreamDirectoryGrain>(0).List()); }
                catch (Exception e) when (e is not OperationCanceledException) { logger.LogDebug("supervisor: sweep failed: {Message}", e.Message); }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
    }
}
