using Orleans.Placement;

namespace RealtimeAssistant.Cluster.Grains;

[GenerateSerializer, Alias("ra.DirectoryState")]
public sealed class DirectoryState
{
    [Id(0)] public HashSet<string> Streams { get; set; } = new();
}

/// <summary>See <see cref="IStreamDirectoryGrain"/>. Kept alive (its placement counts live in memory); its stream list is persisted.</summary>
[KeepAlive, PreferLocalPlacement]
public sealed class StreamDirectoryGrain([PersistentState("directory", ClusterStorage.Name)] IPersistentState<DirectoryState> state)
    : Grain, IStreamDirectoryGrain
{
    readonly Dictionary<string, SiloAddress> _where = new();
    readonly HashSet<SiloAddress> _draining = new();
    readonly Random _random = new();

    public async Task<bool> Add(string stream, int limit)
    {
        if (state.State.Streams.Contains(stream)) return true;
        if (state.State.Streams.Count >= limit) return false;
        state.State.Streams.Add(stream);
        await state.WriteStateAsync();
        return true;
    }

    public async Task Remove(string stream)
    {
        _where.Remove(stream);
        if (state.State.Streams.Remove(stream)) await state.WriteStateAsync();
    }

    public Task<string[]> List() => Task.FromResult(state.State.Streams.Order(StringComparer.Ordinal).ToArray());

    public Task<SiloAddress> Pick(string stream, SiloAddress[] candidates)
    {
        if (candidates.Length == 0) throw new InvalidOperationException("no candidate silo to place a stream on");
        var open = candidates.Where(c => !_draining.Contains(c)).ToArray();
        if (open.Length == 0) open = candidates;
        var counts = open.ToDictionary(c => c, _ => 0);
        foreach (var (s, silo) in _where)
            if (s != stream && counts.ContainsKey(silo)) counts[silo]++;
        int min = counts.Values.Min();
        var least = counts.Where(kv => kv.Value == min).Select(kv => kv.Key).ToArray();
        var chosen = least[_random.Next(least.Length)];
        _where[stream] = chosen; // counted at once, so a burst of new streams spreads before any reports back
        return Task.FromResult(chosen);
    }

    public Task Placed(string stream, SiloAddress silo)
    {
        if (state.State.Streams.Contains(stream)) _where[stream] = silo;
        return Task.CompletedTask;
    }

    public Task Left(string stream, SiloAddress silo)
    {
        if (_where.TryGetValue(stream, out var at) && at.Equals(silo)) _where.Remove(stream);
        return Task.CompletedTask;
    }

    public Task<Dictionary<SiloAddress, string[]>> Assignments() => Task.FromResult(
        _where.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).Order(StringComparer.Ordinal).ToArray()));

    public Task<string[]> SiloDied(SiloAddress silo)
    {
        var held = _where.Where(kv => kv.Value.Equals(silo)).Select(kv => kv.Key).ToArray();
        foreach (var s in held) _where.Remove(s);
        _draining.Remove(silo);
        return Task.FromResult(held);
    }

    public Task SetDraining(SiloAddress silo, bool draining)
    {
        if (draining) _draining.Add(silo); else _draining.Remove(silo);
        return Task.CompletedTask;
    }

    public Task<SiloAddress[]> Draining() => Task.FromResult(_draining.ToArray());
}

/// <summary>The grain storage provider's name (Redis in a cluster, memory in the in-process tests).</summary>
public static class ClusterStorage
{
    public const string Name = "ra";
}
