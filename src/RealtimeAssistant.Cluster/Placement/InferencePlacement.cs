using Microsoft.Extensions.Logging;
using Orleans.Placement;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;
using RealtimeAssistant.Cluster.Grains;

namespace RealtimeAssistant.Cluster.Placement;

/// <summary>Places a grain on an inference silo only, balanced by how many streams each holds.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("ra.InferencePlacement")]
public sealed class InferencePlacement : PlacementStrategy
{
    public static readonly InferencePlacement Instance = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class InferencePlacementAttribute() : PlacementAttribute(InferencePlacement.Instance);

/// <summary>What a silo is, as its metadata says (every silo publishes its role and model).</summary>
public static class SiloRoles
{
    public const string RoleKey = "ra.role", ModelKey = "ra.model";

    public static bool RunsStreams(SiloRole role) => role is SiloRole.Inference or SiloRole.Both;
    public static bool ServesHttp(SiloRole role) => role is SiloRole.Gateway or SiloRole.Both;

    public static SiloRole? Of(SiloMetadata metadata) =>
        metadata.Metadata.TryGetValue(RoleKey, out var r) && Enum.TryParse<SiloRole>(r, ignoreCase: true, out var role) ? role : null;

    public static string Name(SiloRole role) => role.ToString().ToLowerInvariant();
}

/// <summary>
/// Chooses, among the silos compatible with the grain, those whose metadata says they run streams
/// (inference or both), and asks the stream directory for the one holding the fewest streams (a
/// draining silo only when nothing else is left). A placement hint (a drain naming its target) wins.
/// A silo that has just joined is eligible once its metadata has reached this silo's cache (a
/// moment; see <see cref="InferenceSilos"/>).
/// </summary>
public sealed class InferencePlacementDirector(ISiloMetadataCache metadata, IGrainFactory grains, ILogger<InferencePlacementDirector> logger)
    : IPlacementDirector
{
    public async Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var inference = await InferenceSilos(() => context.GetCompatibleSilos(target).Select(s => (s, SiloRoles.Of(metadata.GetSiloMetadata(s)))));
        if (inference.Length == 0)
            throw new OrleansException($"no inference silo in the cluster to run {target.GrainIdentity} (start one with ra serve --cluster … --role inference)");
        if (IPlacementDirector.GetPlacementHint(target.RequestContextData, inference) is { } hint) return hint;
        if (inference.Length == 1) return inference[0];
        try
        {
            return await grains.GetGrain<IStreamDirectoryGrain>(0).Pick(target.GrainIdentity.Key.ToString()!, inference);
        }
        catch (Exception e)
        {
            logger.LogWarning("placement: the stream directory did not answer ({Message}); placing {Grain} at random", e.Message, target.GrainIdentity);
            return inference[Random.Shared.Next(inference.Length)];
        }
    }

    /// <summary>
    /// The silos that run streams among those <paramref name="members"/> lists with their roles (null
    /// while a member's metadata has not reached this silo's cache). Right after a cluster starts,
    /// metadata can lag membership, and balancing over the silos known so far would pile every
    /// stream onto the first one: so this waits up to <paramref name="forMetadata"/> (2 s) for
    /// unknown members once an inference silo is known, and up to <paramref name="forInference"/>
    /// (10 s) for one when none is.
    /// </summary>
    internal static async Task<SiloAddress[]> InferenceSilos(Func<IEnumerable<(SiloAddress Silo, SiloRole? Role)>> members,
        TimeSpan? forMetadata = null, TimeSpan? forInference = null)
    {
        var metadataWait = forMetadata ?? TimeSpan.FromSeconds(2);
        var inferenceWait = forInference ?? TimeSpan.FromSeconds(10);
        var start = DateTime.UtcNow;
        while (true)
        {
            var roles = members().ToArray();
            var inference = roles.Where(r => r.Role is { } role && SiloRoles.RunsStreams(role)).Select(r => r.Silo).ToArray();
            var waited = DateTime.UtcNow - start;
            if (inference.Length > 0 && (roles.All(r => r.Role is not null) || waited > metadataWait)) return inference;
            if (waited > inferenceWait) return inference;
            await Task.Delay(50);
        }
    }
}
