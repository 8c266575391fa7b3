using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Pruning;

/// <summary>
/// A pruner's decisions as a plan for the decoder's one forward (see <see cref="PrunedPrefill"/>):
/// the shallow stage's split attention, the pruner's probe and cut at each layer, each layer's
/// frame-band skip, and the accounting (path taken, analytic FLOPs, what was kept). Host-side
/// bookkeeping only: which block rows are still present and which frame each belongs to.
/// </summary>
public sealed class PrunePlan : ILayerPlan
{
    readonly TextConfig _c;
    readonly ITokenPruner _pruner;
    readonly long[]? _skip;
    readonly int[] _frameOf;
    readonly PruneReport _report;
    readonly long _probeRow; // the block row the pruner's probe reads
    readonly int? _outputRows; // the rows the caller reads (DecoderStep.OutputRows): all the last layer's o_proj and MLP run on
    long[] _rows; // block index of each current row
    int _version, _shallowVersion = -1;
    long _shallowPrior = -1;
    PrunedPrefill.ShallowPlan? _shallow;
    Tensor? _visualRows; // the current rows' visual ones (local indices) on the device, for every scored layer until the rows change
    int _visualRowsVersion = -1;

    /// <param name="probeRow">The block row the pruner reads (default: the last). The rows behind it must be
    /// text after every image: they attend what each layer kept and never change what it keeps.</param>
    /// <param name="outputRows">The last rows the caller reads (<see cref="DecoderStep.OutputRows"/>; null: all), for the last layer's account.</param>
    public PrunePlan(TextConfig c, int blockLength, IReadOnlyList<VisualSpan> spans, ITokenPruner pruner, long[]? sourceSkip = null, int? probeRow = null, int? outputRows = null)
    {
        foreach (var s in spans)
            if (s.Start < 0 || s.Start + s.Length > blockLength) throw new ArgumentException($"visual span {s} outside the {blockLength}-token block");
        if (probeRow is { } pr && (pr < 0 || pr >= blockLength || spans.Any(s => s.Start + s.Length > pr)))
            throw new ArgumentException($"probe row {pr} must be in the {blockLength}-token block, after every image");
        _probeRow = probeRow ?? blockLength - 1;
        _outputRows = outputRows;
        _c = c; _pruner = pruner; _skip = sourceSkip;
        pruner.Reset();
        _frameOf = new int[blockLength];
        Array.Fill(_frameOf, -1);
        foreach (var s in spans) for (int i = s.Start; i < s.Start + s.Length; i++) _frameOf[i] = s.Frame;
        _rows = Enumerable.Range(0, blockLength).Select(i => (long)i).ToArray();
        _report = new PruneReport { Method = pruner.Name, Spans = spans, KeptVisual = _rows.Where(r => _frameOf[r] >= 0).ToArray() };
    }

    /// <summary>The current rows' visual ones, as local indices on the device: uploaded once per row set, not once per scored layer.</summary>
    Tensor VisualRows(Device dev)
    {
        if (_visualRowsVersion != _version || _visualRows is null)
        {
            _visualRows?.Dispose();
            _visualRows = torch.tensor(Enumerable.Range(0, _rows.Length).Where(i => _frameOf[_rows[i]] >= 0).Select(i => (long)i).ToArray(), device: dev).DetachFromDisposeScope();
            _visualRowsVersion = _version;
        }
        return _visualRows;
    }

    /// <summary>Block indices of the rows that reached the last layer.</summary>
    public long[] Rows => _rows;

    /// <summary>The report, once the forward is done.</summary>
    public PruneReport Finish()
    {
        _report.ExitLayer = _pruner.ExitLayer;
        _report.HeadFlops = _outputRows == 0 ? 0 : 2.0 * _c.HiddenSize * _c.VocabSize;
        return _report;
    }

    public long Skip(int layer) => _skip?[layer] ?? 0;

    public long[]? Enter()
    {
        if (_report.KeptVisual.Length == 0 || _pruner.BeforeFirstLayer(PrunedPrefill.ListProbe(-1, _rows, _frameOf)) is not { } keep0) return null;
        _report.KeptVisual = keep0;
        _report.FilterLayer = -1; // before layer 0
        var stay = Staying(keep0);
        if (stay is not null) Cut(stay);
        return stay;
    }

    public LayerAttention Attend(in AttentionInput a)
    {
        int li = a.Layer;
        var attn = a.Attention;
        int n = _rows.Length;
        int nVis = _rows.Count(r => _frameOf[r] >= 0);
        long prior = a.Prior; // the earlier entries this block attends
        var (K, V) = a.Attended;
        bool shallow = li < _pruner.ShallowLayers && nVis > 0 && nVis < n;
        double flops = PrunedPrefill.QkvFlops(_c, n);
        var dev = a.Q.device;

        // The pruner decides here, before the layer is finished: its probe reads only this layer's
        // queries, keys and values. Rows it drops after this layer then need their keys and values
        // (the kept rows attend them) but no attention output, o_proj or MLP.
        var need = nVis > 0 ? _pruner.Need(li) : ProbeNeed.None;
        long[]? keep = null;
        if (need != ProbeNeed.None)
        {
            var probe = need == ProbeNeed.List ? PrunedPrefill.ListProbe(li, _rows, _frameOf)
                : PrunedPrefill.ScoreProbe(attn, li, _rows, _frameOf, VisualRows(dev), a.Q, K, V, prior, _pruner is AnalysisPruner { Measuring: true }, Array.IndexOf(_rows, _probeRow));
            if (need == ProbeNeed.Scores) flops += PrunedPrefill.AttnFlops(_c, prior + n);
            _report.Probes.Add(probe);
            keep = _pruner.After(li, probe);
        }
        var stay = keep is null ? null : Staying(keep);
        var stayIdx = stay is null ? null : torch.tensor(stay, device: dev);

        Tensor? o = null;
        if (shallow)
        {
            // Rebuilt when the rows change, and when the prior cache does: in a stream, earlier
            // frames pruned or exited at different depths leave each layer its own prior length.
            if (_shallowVersion != _version || _shallowPrior != prior || _shallow is null)
            {
                _shallow?.Dispose();
                _shallow = PrunedPrefill.ShallowPlan.Build(_rows, _frameOf, prior, _pruner.Sink, dev);
                _shallowVersion = _version;
                _shallowPrior = prior;
            }
            (o, var pairs) = PrunedPrefill.ShallowAttend(attn, _shallow, a.Q, a.BlockK, a.BlockV, K, V, prior, li == 0);
            flops += PrunedPrefill.AttnFlops(_c, pairs);
            if (stayIdx is not null) o = o.index_select(2, stayIdx);
        }
        else if (stay is null)
        {
            o = attn.Attend(a.Q, K, V, null);
            flops += PrunedPrefill.AttnFlops(_c, prior == 0 ? (double)n * (n + 1) / 2 : (double)n * (prior + n));
        }
        else if (stay.Length > 0)
        {
            // Only the staying rows query: row i (block order) sees the prior cache and the block up to itself.
            // Made on the device from the index it already holds: no mask crosses from the host.
            var allowed = Rooted.Arange(prior + n, dev).unsqueeze(0) <= stayIdx!.PlusNumber(prior).unsqueeze(1);
            o = attn.Attend(a.Q.index_select(2, stayIdx!), K, V, allowed);
            flops += PrunedPrefill.AttnFlops(_c, stay.Sum(i => prior + i + 1));
        }
        if (o is not null) flops += PrunedPrefill.OutMlpFlops(_c, li == _c.NumHiddenLayers - 1 && _outputRows is { } read ? Math.Min(read, stay?.Length ?? n) : stay?.Length ?? n);

        _report.Layers.Add(new LayerAccount(li, shallow ? "shallow" : li <= (_report.FilterLayer ?? int.MaxValue) ? "full" : "pruned",
            n, nVis, a.Before + n, flops, _rows.Where(r => _frameOf[r] >= 0).ToArray()));
        if (keep is not null)
        {
            if (_pruner.FilterLayer == li) { _report.FilterLayer = li; _report.KeptVisual = keep; }
            else if (_report.FilterLayer is null && (keep.Length == 0 || _pruner.ExitLayer == li)) _report.KeptVisual = keep; // exit before any filter (what it spared, if anything)
            if (stay is not null) Cut(stay);
        }
        return new LayerAttention(o, stay, stayIdx);
    }

    /// <summary>Once every visual token has left, the remaining layers only carry the text rows: plain causal attention, nothing to decide.</summary>
    public bool PlainFrom(int layer) => !_rows.Any(r => _frameOf[r] >= 0);

    /// <summary>The account <see cref="Attend"/> would give a layer with no visual row.</summary>
    public void Passed(int layer, long before, int rows)
    {
        if (!PlainFrom(layer) || rows != _rows.Length) throw new InvalidOperationException($"layer {layer}: {rows} rows passed where the plan holds {_rows.Length} (visual ones among them: not plain)");
        long prior = before - Skip(layer);
        double flops = PrunedPrefill.QkvFlops(_c, rows)
            + PrunedPrefill.AttnFlops(_c, prior == 0 ? (double)rows * (rows + 1) / 2 : (double)rows * (prior + rows))
            + PrunedPrefill.OutMlpFlops(_c, layer == _c.NumHiddenLayers - 1 && _outputRows is { } read ? Math.Min(read, rows) : rows);
        _report.Layers.Add(new LayerAccount(layer, layer <= (_report.FilterLayer ?? int.MaxValue) ? "full" : "pruned", rows, 0, before + rows, flops, []));
    }

    /// <summary>The current rows (local indices) that stay when only these visual tokens are kept; null: all stay.</summary>
    long[]? Staying(long[] keepVisual)
    {
        var keepSet = keepVisual.ToHashSet();
        var local = new List<long>();
        for (int i = 0; i < _rows.Length; i++)
            if (_frameOf[_rows[i]] < 0 || keepSet.Contains(_rows[i])) local.Add(i);
        return local.Count == _rows.Length ? null : local.ToArray();
    }

    void Cut(long[] local)
    {
        _rows = local.Select(i => _rows[i]).ToArray();
        _version++;
    }
}
