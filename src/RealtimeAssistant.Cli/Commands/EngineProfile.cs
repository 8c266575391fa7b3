using System.Diagnostics;
using RealtimeAssistant.Model;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// Where a decode step's milliseconds go. On the layer path: the step taken op by op, as a
/// decoder layer runs it for one token, each op timed on its own. Fused: the fused step's own
/// stages (<see cref="StageClock"/>). Every layer's own weights and cache are used, so the
/// memory traffic is a real step's. CPU work is synchronous, so the clock around it measures it.
/// </summary>
public sealed class EngineProfile
{
    readonly Dictionary<string, double> _ms = new();
    readonly List<string> _order = new();
    double _totalMs;
    int _steps;

    void Add(string op, double ms)
    {
        if (!_ms.ContainsKey(op)) { _ms[op] = 0; _order.Add(op); }
        _ms[op] += ms;
    }

    /// <summary>
    /// Runs <paramref name="steps"/> greedy decode steps into <paramref name="group"/> of a cache
    /// that holds the prefilled prompt, the first at position <paramref name="start"/>.
    /// </summary>
    public static EngineProfile Run(LanguageModel lm, KvCache cache, long firstToken, CacheGroup group, long start, int steps)
    {
        var p = new EngineProfile();
        var clock = new Stopwatch();
        var dev = lm.model.embed_tokens.weight.device;
        long next = firstToken;
        T Time<T>(string op, Func<T> f)
        {
            clock.Restart();
            var r = f();
            p.Add(op, clock.Elapsed.TotalMilliseconds);
            return r;
        }
        for (int s = 0; s < steps; s++)
        {
            using var scope = torch.NewDisposeScope();
            long pos = start + s;
            var step = Stopwatch.StartNew();
            var h = Time("embedding", () => lm.model.embed_tokens.forward(torch.tensor(new[] { next }, device: dev).view(1, 1)));
            var (cos, sin) = Time("RoPE tables", () => lm.model.Rope.Tables(torch.tensor(new[] { pos }, device: dev), h.dtype));
            for (int i = 0; i < lm.model.layers.Count; i++)
            {
                var layer = lm.model.layers[i];
                var attn = layer.self_attn;
                var kv = cache.Layers[i];
                var a = Time("RMSNorm", () => layer.input_layernorm.forward(h));
                var (q, k, v) = Time("q/k/v projection + RoPE", () => attn.Project(a, cos, sin));
                Time("KV cache append", () => { kv[group].Append(k, v, new[] { pos }); return 0; });
                // As SelfAttention.Forward: a target query reads a large source in place, or the groups joined.
                Tensor o;
                if (group == CacheGroup.Target && !kv.Source.IsEmpty && kv.Source.Length * attn.KvHeads * attn.HeadDim > SelfAttention.JoinedSourceMaxElements)
                    o = Time("attention over both groups in place", () => attn.AttendTwoGroups(q, kv.Source.Keys, kv.Source.Values, kv.Target.Keys, kv.Target.Values));
                else
                {
                    var (keys, values) = Time("KV cache: views, or the groups joined (cat)", () => kv.KeysFor(group));
                    o = Time("attention (SDPA)", () => attn.Attend(q, keys, values, null));
                }
                o = Time("o_proj", () => attn.Output(o));
                var hh = h;
                h = Time("residual add", () => hh.Plus(o));
                var m = Time("RMSNorm", () => layer.post_attention_layernorm.forward(h));
                var g = Time("MLP gate/up projection + act·up", () => layer.mlp.Hidden(m));
                var d = Time("MLP down_proj", () => layer.mlp.down_proj.forward(g));
                h = Time("residual add", () => h.PlusInPlace(d));
            }
            var hn = Time("RMSNorm", () => lm.model.norm.forward(h));
            var logits = Time("lm_head", () => lm.Logits(hn[0, -1]));
            next = Time("argmax, read back", () => logits.argmax().item<long>());
            p._totalMs += step.Elapsed.TotalMilliseconds;
            p._steps++;
        }
        return p;
    }

    /// <summary>
    /// Decode steps as they run by default, fused (<see cref="DecoderModel.FusedDecodeEnabled"/>):
    /// the step's own stages from its clock, summed over every layer, and around them the
    /// embedding, the forward's RoPE tables and hand-off, the head and the read-back. Null where
    /// the fused step does not run this model (its steps take the layer path, profiled by <see cref="Run"/>).
    /// </summary>
    public static EngineProfile? RunFused(LanguageModel lm, KvCache cache, long firstToken, CacheGroup group, long start, int steps)
    {
        var p = new EngineProfile { Title = "decode step, fused, by stage", Fused = true };
        var clock = new StageClock();
        var dev = lm.model.embed_tokens.weight.device;
        long next = firstToken;
        var sw = new Stopwatch();
        double forwardMs = 0;
        bool wasEnabled = DecoderModel.FusedDecodeEnabled;
        DecoderModel.FusedDecodeEnabled = true;
        lm.model.FusedStepClock = clock;
        try
        {
            for (int s = 0; s < steps; s++)
            {
                using var scope = torch.NewDisposeScope();
                var step = Stopwatch.StartNew();
                sw.Restart();
                var x = lm.model.embed_tokens.forward(torch.tensor(new[] { next }, device: dev).view(1, 1));
                p.Add("embedding", sw.Elapsed.TotalMilliseconds);
                sw.Restart();
                var h = lm.model.Forward(x, new DecoderStep { Positions = new[] { start + s }, Cache = cache, Group = group });
                forwardMs += sw.Elapsed.TotalMilliseconds;
                sw.Restart();
                var logits = lm.Logits(h[0, -1]);
                p.Add("lm_head", sw.Elapsed.TotalMilliseconds);
                sw.Restart();
                next = logits.argmax().item<long>();
                p.Add("argmax, read back", sw.Elapsed.TotalMilliseconds);
                p._totalMs += step.Elapsed.TotalMilliseconds;
                p._steps++;
            }
        }
        finally
        {
            lm.model.FusedStepClock = null;
            DecoderModel.FusedDecodeEnabled = wasEnabled;
        }
        if (clock.Passes != steps) return null;
        double inside = 0;
        foreach (var (stage, ms) in clock.Stages) { p.Add(stage, ms); inside += ms; }
        p.Add("RoPE tables and hand-off (the forward outside the layers)", forwardMs - inside);
        return p;
    }

    string Title { get; init; } = "decode step, op by op";

    /// <summary>The fused step's stages (else the layer path's ops).</summary>
    public bool Fused { get; private init; }

    /// <summary>Per op: ms per token and its share of the step.</summary>
    public List<Dictionary<string, object>> Rows() => _order
        .Select(op => new Dictionary<string, object>
        {
            ["op"] = op,
            ["ms_per_token"] = Math.Round(_ms[op] / _steps, 3),
            ["share"] = Math.Round(_ms[op] / _totalMs, 3),
        })
        .Append(new Dictionary<string, object>
        {
            ["op"] = "step (with the clocks)",
            ["ms_per_token"] = Math.Round(_totalMs / _steps, 3),
            ["share"] = 1.0,
        })
        .ToList();

    public Table Table()
    {
        var t = new Table().AddColumns(Title, "ms / token", "share");
        foreach (var r in Rows()) t.AddRow(Markup.Escape((string)r["op"]), ((double)r["ms_per_token"]).ToString("0.000"), ((double)r["share"]).ToString("P1"));
        return t;
    }
}
