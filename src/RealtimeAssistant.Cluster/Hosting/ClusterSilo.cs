using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime.MembershipService.SiloMetadata;
using RealtimeAssistant.Cluster.Placement;
using RealtimeAssistant.Cluster.Supervision;

namespace RealtimeAssistant.Cluster;

/// <summary>
/// What every silo of ours has, whatever hosts it (a `ra serve` process or the in-process test
/// cluster): its role and model in its metadata, the inference placement, the supervisor, and
/// failure detection tuned so a dead silo's streams move within seconds.
/// </summary>
public static class ClusterSilo
{
    public static ISiloBuilder Configure(ISiloBuilder silo, SiloRole role, string? modelVersion, ClusterSettings? settings = null)
    {
        var metadata = new Dictionary<string, string> { [SiloRoles.RoleKey] = SiloRoles.Name(role) };
        if (modelVersion is not null) metadata[SiloRoles.ModelKey] = modelVersion;
        silo.UseSiloMetadata(metadata);
        silo.Services.AddPlacementDirector<InferencePlacement, InferencePlacementDirector>();
        silo.Services.AddSingleton<StreamSupervisor>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<StreamSupervisor>());
        var probe = settings?.ProbeTimeout ?? TimeSpan.FromSeconds(2);
        int missed = settings?.MissedProbesLimit ?? 2;
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            // Orleans' defaults (5 s probes, 3 missed, 2 votes) take ~15–30 s to declare a silo dead.
            // A killed process refuses connections at once, so a short probe loses nothing real.
            o.ProbeTimeout = probe;
            o.NumMissedProbesLimit = missed;
            o.NumVotesForDeathDeclaration = 1;
            o.TableRefreshTimeout = TimeSpan.FromSeconds(5);
            o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(5);
            o.DeathVoteExpirationTimeout = TimeSpan.FromSeconds(30);
        });
        return silo;
    }
}
