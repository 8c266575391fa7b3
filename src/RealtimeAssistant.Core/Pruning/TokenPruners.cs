namespace RealtimeAssistant.Pruning;

/// <summary>What a pruner needs measured at a layer, on the last prompt token's attention.</summary>
public enum ProbeNeed { None, List, Scores }

/// <summary>
/// The last prompt token's view of the visual tokens still present at one layer (host arrays,
/// one device→host copy per probed layer). Indices are positions in the prefill block.
/// </summary>
public sealed class Probe
{
    public required int Layer { get; init; }
    public required long[] Visual { get; init; }
    /// <summary>The frame (0-based, in prompt order) each visual token belongs to.</summary>
    public required int[] Frame { get; init; }
    /// <summary>cos(o − contrib_j, o): how little removing token j turns the attention output.</summary>
    public float[] Cos { get; init; } = Array.Empty<float>();
    /// <summary>‖contrib_j‖₂ with contrib_j = the heads' P_h[q,j]·V_h[j] concatenated (before o_proj).</summary>
    public float[] Norm { get; init; } = Array.Empty<float>();
    /// <summary>The last token's attention on j, averaged over heads (FastV's score).</summary>
    public float[] Mass { get; init; } = Array.Empty<float>();
    /// <summary>Mean over text queries after the first image of their attention mass on visual keys (analysis only; NaN if not measured).</summary>
    public double TextMass { get; init; } = double.NaN;
    public float MinCos => Cos.Length == 0 ? 1f : Cos.Min();
}

/// <summary>
/// A pruning strategy, driven by <see cref="PrunedPrefill"/>'s layer loop. After each layer it may
/// return the visual tokens to keep from the next layer on (block indices, a subset of those
/// present); null keeps all. Instances hold per-prefill state: <see cref="Reset"/> starts over.
/// </summary>
public interface ITokenPruner
{
    string Name { get; }
    /// <summary>Layers 0..s−1 run the shallow stage (text never scores visual keys).</summary>
    int ShallowLayers { get; }
    bool Sink { get; }
    void Reset();
    /// <summary>Visual tokens to keep before layer 0 (null = all).</summary>
    long[]? BeforeFirstLayer(Probe visual) => null;
    ProbeNeed Need(int layer);
    long[]? After(int layer, Probe probe);
    /// <summary>The layer whose decision filtered the visual tokens (L_f), if any.</summary>
    int? FilterLayer { get; }
    /// <summary>The layer after which every visual token was dropped, if any.</summary>
    int? ExitLayer { get; }
}

public abstract class PrunerBase : ITokenPruner
{
    public abstract string Name { get; }
    public virtual int ShallowLayers => 0;
    public virtual bool Sink => false;
    public int? FilterLayer { get; protected set; }
    public int? ExitLayer { get; protected set; }
    public virtual void Reset() { FilterLayer = null; ExitLayer = null; }
    public virtual long[]? BeforeFirstLayer(Probe visual) => null;
    public abstract ProbeNeed Need(int layer);
    public abstract long[]? After(int layer, Probe probe);

    /// <summary>The top <paramref name="k"/> of each frame by <paramref name="score"/>, in block order.</summary>
    public static long[] TopPerFrame(Probe p, float[] score, int k)
    {
        var keep = new List<long>();
        foreach (var g in Enumerable.Range(0, p.Visual.Length).GroupBy(i => p.Frame[i]))
            keep.AddRange(g.OrderByDescending(i => score[i]).ThenBy(i => i).Take(k).Select(i => p.Visual[i]));
        keep.Sort();
        return keep.ToArray();
    }
}

/// <summary>No pruning: the engine's own computation.</summary>
public sealed class NonePruner : PrunerBase
{
    public override string Name => "none";
    public override ProbeNeed Need(int layer) => ProbeNeed.None;
    public override long[]? After(int layer, Probe probe) => null;
}

/// <summary>FastV: after layer K keep the top fraction of visual tokens by the last token's (head-mean) attention.</summary>
public sealed class FastVPruner(int k, double keep) : PrunerBase
{
    public override string Name => $"fastv(K={k},keep={keep:0.##})";
    public override ProbeNeed Need(int layer) => layer == k ? ProbeNeed.Scores : ProbeNeed.None;
    public override long[]? After(int layer, Probe p)
    {
        if (layer != k) return null;
        FilterLayer = layer;
        int n = (int)Math.Ceiling(keep * p.Visual.Length);
        var order = Enumerable.Range(0, p.Visual.Length).OrderByDescending(i => p.Mass[i]).ThenBy(i => i).Take(n).Select(i => p.Visual[i]).ToList();
        order.Sort();
        return order.ToArray();
    }
}

/// <summary>Random baseline: after layer K keep <c>keep</c> random visual tokens per frame.</summary>
public sealed class RandomPruner(int k, int keep, int seed) : PrunerBase
{
    public override string Name => $"random(K={k},k={keep})";
    public override ProbeNeed Need(int layer) => layer == k ? ProbeNeed.List : ProbeNeed.None;
    public override long[]? After(int layer, Probe p)
    {
        if (layer != k) return null;
        FilterLayer = layer;
        var rng = new Random(seed);
        var score = p.Visual.Select(_ => (float)rng.NextDouble()).ToArray();
        return TopPerFrame(p, score, keep);
    }
}

/// <summary>
/// VisiPruner's three stages. Shallow: layers 0..s−1 (text never scores visual keys, one sink per
/// frame). Middle: from <see cref="PruningConfig.FirstTestLayer"/> the filtering test on the last
/// prompt token; at L_f keep ‖contrib‖ &gt; tokens_threshold (budget mode: top-k per frame, forced
/// at the deadline). Deep: the exit test over the kept tokens; after exit_passes passes every
/// visual token is dropped.
/// </summary>
public sealed class VisiPruner : PrunerBase
{
    readonly PruningConfig _c;
    readonly int _layers;
    int _passes;
    int _newest = -1; // the newest frame when it is spared (KeepNewestFrame with several frames), else −1
    public VisiPruner(PruningConfig config, int layers) { _c = config.Validate(layers); _layers = layers; }
    public PruningConfig Config => _c;
    public override string Name => _c.Budget is { } k ? $"visipruner-budget(k={k})" : "visipruner";
    public override int ShallowLayers => _c.ShallowLayers;
    public override bool Sink => _c.Sink;
    public override void Reset() { base.Reset(); _passes = 0; _newest = -1; }

    public override long[]? BeforeFirstLayer(Probe visual)
    {
        if (_c.KeepNewestFrame && visual.Frame.Distinct().Count() > 1) _newest = visual.Frame.Max();
        return null;
    }

    /// <summary>The fixed exit for this prompt: the older frames' when the newest is spared.</summary>
    int? Exit => _newest >= 0 ? _c.OlderFramesExitLayer ?? _c.ExitLayer : _c.ExitLayer;

    public override ProbeNeed Need(int layer)
    {
        if (ExitLayer != null || layer >= _layers - 1) return ProbeNeed.None;
        if (Exit is { } x && layer == x - 1) return ProbeNeed.List;
        return layer >= _c.FirstTestLayer ? ProbeNeed.Scores : ProbeNeed.None;
    }

    public override long[]? After(int layer, Probe p)
    {
        if (ExitLayer != null) return null;
        if (Exit is { } x && layer >= x - 1) return ExitAt(layer, p);
        if (layer < _c.FirstTestLayer || p.Cos.Length == 0 && p.Visual.Length > 0) return null;
        // The spared frame takes no part in either test: it is neither cut nor counted.
        var older = Enumerable.Range(0, p.Visual.Length).Where(i => p.Frame[i] != _newest).ToArray();
        if (FilterLayer is null)
        {
            bool fire = older.Any(i => p.Cos[i] < _c.LayerThreshold);
            bool forced = _c.Budget is not null && layer >= _c.Deadline(_layers);
            if (!fire && !forced) return null;
            FilterLayer = layer;
            var keep = _c.Budget is { } k ? TopPerFrame(p, p.Norm, k) : older.Where(i => p.Norm[i] > _c.TokensThreshold).Select(i => p.Visual[i]).ToArray();
            return Spared(p).Union(keep).Order().ToArray();
        }
        if (older.All(i => p.Cos[i] >= _c.ExitThreshold)) _passes++;
        if (_passes < _c.ExitPasses) return null;
        return ExitAt(layer, p);
    }

    long[] ExitAt(int layer, Probe p)
    {
        ExitLayer = layer;
        return Spared(p);
    }

    /// <summary>The visual tokens of the spared newest frame still present (none when no frame is spared).</summary>
    long[] Spared(Probe p) => _newest < 0 ? Array.Empty<long>() : p.Visual.Where((_, i) => p.Frame[i] == _newest).ToArray();
}

/// <summary>Analysis: measures every layer, optionally drops all visual tokens from layer L on, or bars text from vision in layers 0..s−1.</summary>
public sealed class AnalysisPruner(int? knockoutFrom = null, int shallow = 0, bool sink = true, bool measure = false) : PrunerBase
{
    public override string Name => knockoutFrom is { } l ? $"knockout(L={l})" : shallow > 0 ? $"shallow(s={shallow})" : "analysis";
    public override int ShallowLayers => shallow;
    public override bool Sink => sink;
    public List<Probe> Probes { get; } = new();
    public bool Measuring => measure;
    public override void Reset() { base.Reset(); Probes.Clear(); }
    public override long[]? BeforeFirstLayer(Probe visual) => knockoutFrom == 0 ? Array.Empty<long>() : null;
    public override ProbeNeed Need(int layer) =>
        measure ? ProbeNeed.Scores : knockoutFrom is { } l && layer == l - 1 ? ProbeNeed.List : ProbeNeed.None;
    public override long[]? After(int layer, Probe p)
    {
        if (measure) Probes.Add(p);
        if (knockoutFrom is { } l && layer == l - 1) { ExitLayer = layer; return Array.Empty<long>(); }
        return null;
    }
}

/// <summary>
/// Keeps given patch-grid cells of every frame (e.g. the patches the scene graph says objects
/// cover) after layer K (K = −1: before layer 0). A measuring tool, not a method: it tells how
/// well a selector could do, since real pruners cannot see the scene graph.
/// </summary>
public sealed class OraclePruner(IReadOnlySet<int> patches, int k) : PrunerBase
{
    public override string Name => $"oracle(K={k},cells={patches.Count})";
    public override long[]? BeforeFirstLayer(Probe visual) => k < 0 ? Keep(visual) : null;
    public override ProbeNeed Need(int layer) => layer == k ? ProbeNeed.List : ProbeNeed.None;
    public override long[]? After(int layer, Probe p) => layer == k ? Keep(p) : null;

    long[] Keep(Probe p)
    {
        FilterLayer = k;
        var keep = new List<long>();
        foreach (var g in Enumerable.Range(0, p.Visual.Length).GroupBy(i => p.Frame[i]))
        {
            var inFrame = g.ToList(); // the frame's visual tokens in patch order
            keep.AddRange(inFrame.Where((_, cell) => patches.Contains(cell)).Select(i => p.Visual[i]));
        }
        keep.Sort();
        return keep.ToArray();
    }
}
