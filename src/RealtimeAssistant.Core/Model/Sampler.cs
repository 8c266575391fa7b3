using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>0 = greedy.</summary>
    public double Temperature { get; init; }
    public double TopP { get; init; } = 1.0;
    public ulong Seed { get; init; }
    /// <summary>Token ids that end generation (not emitted). Defaults to the tokenizer's EOS.</summary>
    public IReadOnlyCollection<int>? StopTokens { get; init; }
    /// <summary>
    /// The most tokens drafted from earlier text and verified in one decoder pass (prompt-lookup
    /// decoding, <see cref="DraftedDecode"/>); 0: one token a pass. Where no earlier text is
    /// given, decoding is one token a pass either way.
    /// </summary>
    public int DraftTokens { get; init; }
    public const int MaxDraftTokens = 32;
    /// <summary>
    /// Record each picked token's log-probability under the model (the log-softmax of its logits,
    /// before temperature and top-p) with this many most likely alternatives; null: none.
    /// </summary>
    public int? LogProbs { get; init; }
    public const int MaxTopLogProbs = 20;

    public void Validate()
    {
        if (MaxNewTokens < 1 || MaxNewTokens > 100_000) throw new UserError($"max new tokens must be 1..100000, got {MaxNewTokens}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new UserError($"temperature must be ≥ 0, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new UserError($"top-p must be in (0, 1], got {TopP}");
        if (DraftTokens < 0 || DraftTokens > MaxDraftTokens) throw new UserError($"draft tokens must be 0..{MaxDraftTokens}, got {DraftTokens}");
        if (LogProbs is < 0 or > MaxTopLogProbs) throw new UserError($"top log-probabilities must be 0..{MaxTopLogProbs}, got {LogProbs}");
    }
}

/// <summary>A picked token's log-probability, and the most likely tokens at its step with theirs (most likely first).</summary>
public sealed record TokenLogProb(int Id, float LogProb, IReadOnlyList<(int Id, float LogProb)> Top);

/// <summary>Greedy or temperature/top-p sampling with a seeded generator; runs on the logits' device.</summary>
public sealed class Sampler : IDisposable
{
    readonly GenerationOptions _o;
    torch.Generator? _gen;
    // Picks may run ahead of their reader (a batch thread samples, the caller takes): one entry per pick, in order.
    readonly ConcurrentQueue<TokenLogProb> _logProbs = new();

    public Sampler(GenerationOptions options) => _o = options;

    /// <summary>Whether every pick is the argmax (no generator draws).</summary>
    public bool Greedy => _o.Temperature <= 0;

    /// <summary>Whether each pick records its log-probabilities (<see cref="GenerationOptions.LogProbs"/>): callers that pick by argmax themselves must go through <see cref="Next"/> instead.</summary>
    public bool RecordsLogProbs => _o.LogProbs is not null;

    /// <summary>The log-probabilities of the oldest pick not yet taken; null when none are recorded.</summary>
    public TokenLogProb? TakeLogProb() => _logProbs.TryDequeue(out var p) ? p : null;

    /// <summary>logits [V] (float32) → next token id.</summary>
    public int Next(Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
        int id = Pick(logits);
        if (_o.LogProbs is { } top)
        {
            // One host copy of the chosen row and the top rows with their ids (exact in float32: ids
            // stay below 2^24); this runs only when a client asked for them.
            var logp = logits.to(ScalarType.Float32).log_softmax(-1);
            int k = Math.Min(top, (int)logp.size(0));
            var parts = new List<Tensor> { logp.narrow(0, id, 1) };
            if (k > 0)
            {
                var (values, indices) = logp.topk(k);
                parts.Add(values);
                parts.Add(indices.to(ScalarType.Float32));
            }
            var host = torch.cat(parts, 0).cpu().data<float>().ToArray();
            var alternatives = new List<(int, float)>(top);
            for (int j = 0; j < k; j++) alternatives.Add(((int)host[1 + k + j], host[1 + j]));
            _logProbs.Enqueue(new TokenLogProb(id, host[0], alternatives));
        }
        return id;
    }

    int Pick(Tensor logits)
    {
        if (_o.Temperature <= 0) return (int)logits.argmax().item<long>();
        _gen ??= new torch.Generator(_o.Seed, logits.device);
        using var temperature = _o.Temperature.ToScalar(); // Scalars alive across the calls: see Rooted
        using var topP = _o.TopP.ToScalar();
        var probs = torch.softmax(logits.div(temperature), -1);
        if (_o.TopP < 1)
        {
            var (sorted, order) = probs.sort(descending: true);
            var cumulative = sorted.cumsum(0);
            // Keep the smallest prefix whose mass reaches top-p (the first token always stays).
            var drop = (cumulative - sorted).gt(topP);
            sorted = sorted.masked_fill(drop, Rooted.Zero);
            var pick = torch.multinomial(sorted / sorted.sum(), 1, generator: _gen);
            return (int)order[pick].item<long>();
        }
        return (int)torch.multinomial(probs, 1, generator: _gen).item<long>();
    }

    public void Dispose() => _gen?.Dispose();
}
