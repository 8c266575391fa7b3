using System.Diagnostics;
using System.Net;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Placement;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>Which silos placement balances over while members' metadata is still arriving.</summary>
public class InferencePlacementTests
{
    static SiloAddress Silo(int port) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), 1);
    static readonly SiloAddress Gateway = Silo(11111), First = Silo(11112), Second = Silo(11113);

    [Fact]
    public async Task AMemberWhoseMetadataArrivesLate_IsWaitedFor_NotLeftOut()
    {
        var clock = Stopwatch.StartNew();
        var silos = await InferencePlacementDirector.InferenceSilos(() =>
        [
            (Gateway, SiloRole.Gateway),
            (First, SiloRole.Inference),
            (Second, clock.ElapsedMilliseconds > 300 ? SiloRole.Inference : null),
        ], forMetadata: TimeSpan.FromSeconds(5), forInference: TimeSpan.FromSeconds(10));
        Assert.Equal([First, Second], silos);
        Assert.True(clock.ElapsedMilliseconds >= 300);
    }

    [Fact]
    public async Task AMemberThatNeverPublishesARole_HoldsPlacementOnlyForTheMetadataWait()
    {
        var clock = Stopwatch.StartNew();
        var silos = await InferencePlacementDirector.InferenceSilos(() =>
            [(First, SiloRole.Both), (Second, null)], forMetadata: TimeSpan.FromMilliseconds(200), forInference: TimeSpan.FromSeconds(30));
        Assert.Equal([First], silos);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.2, 20);
    }

    [Fact]
    public async Task WithEveryRoleKnown_PlacementDoesNotWait_AndGatewaysAreLeftOut()
    {
        int asked = 0;
        var silos = await InferencePlacementDirector.InferenceSilos(() =>
        {
            asked++;
            return [(Gateway, SiloRole.Gateway), (First, SiloRole.Inference), (Second, SiloRole.Both)];
        });
        Assert.Equal([First, Second], silos);
        Assert.Equal(1, asked);
    }

    [Fact]
    public async Task WithNoInferenceSilo_ItGivesUpAfterTheInferenceWait()
    {
        var silos = await InferencePlacementDirector.InferenceSilos(() => [(Gateway, SiloRole.Gateway)],
            forMetadata: TimeSpan.FromMilliseconds(50), forInference: TimeSpan.FromMilliseconds(200));
        Assert.Empty(silos);
    }
}
