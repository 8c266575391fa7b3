namespace RealtimeAssistant.Cluster.Grains;

/// <summary>
/// One live stream, keyed by its id. Its activation lives on an inference silo (see
/// <see cref="Placement.InferencePlacementAttribute"/>) and holds the stream's definition (persisted),
/// its session and frame loop, and its caption log's position.
/// </summary>
[Alias("ra.IStreamGrain")]
public interface IStreamGrain : IGrainWithStringKey
{
    /// <summary>Starts the stream with this definition (persisted first, so any later activation runs it too).</summary>
    [Alias("Open")] Task<StreamStatus> Open(StreamDefinition definition);
    /// <summary>State and live numbers; null when no stream has this id.</summary>
    [Alias("Info")] Task<StreamStatus?> Info();
    /// <summary>Activates the stream if it is not running (the supervisor's call); true when it exists.</summary>
    [Alias("Ensure")] Task<bool> Ensure();
    /// <summary>Asks a question; returns its id, which the answer event carries.</summary>
    [Alias("Ask")] Task<string> Ask(string question);
    /// <summary>Stops the stream for good and frees it; its log ends with an "end" entry.</summary>
    [Alias("Close")] Task<bool> Close();
    /// <summary>The newest entries from this activation's memory (readers' fallback while the durable log is unreachable).</summary>
    [Alias("ReadMemory")] Task<LogPage> ReadMemory(long after, int max);
    /// <summary>Moves the activation to another inference silo once idle (drain); false when there is nothing to move.</summary>
    [Alias("Migrate")] Task<bool> Migrate();
}

/// <summary>
/// The cluster's list of streams (persisted) and where each runs now (kept in memory, rebuilt from
/// the streams' own reports), which silos are draining, and the placement choice that balances
/// streams over inference silos. One activation, key 0.
/// </summary>
[Alias("ra.IStreamDirectoryGrain")]
public interface IStreamDirectoryGrain : IGrainWithIntegerKey
{
    /// <summary>Admits a new stream; false when the cluster holds <paramref name="limit"/> streams already.</summary>
    [Alias("Add")] Task<bool> Add(string stream, int limit);
    [Alias("Remove")] Task Remove(string stream);
    [Alias("List")] Task<string[]> List();
    /// <summary>The candidate with the fewest streams (draining silos only when nothing else is left); records the choice.</summary>
    [Alias("Pick")] Task<SiloAddress> Pick(string stream, SiloAddress[] candidates);
    /// <summary>A stream's activation reports where it runs (at activation and every few seconds).</summary>
    [Alias("Placed")] Task Placed(string stream, SiloAddress silo);
    [Alias("Left")] Task Left(string stream, SiloAddress silo);
    /// <summary>Streams per silo, as last reported.</summary>
    [Alias("Assignments")] Task<Dictionary<SiloAddress, string[]>> Assignments();
    /// <summary>Forgets a dead silo's assignments; returns the streams it held.</summary>
    [Alias("SiloDied")] Task<string[]> SiloDied(SiloAddress silo);
    [Alias("SetDraining")] Task SetDraining(SiloAddress silo, bool draining);
    [Alias("Draining")] Task<SiloAddress[]> Draining();
}
