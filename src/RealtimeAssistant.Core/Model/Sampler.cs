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

    public void Validate()
    {
        if (MaxNewTokens < 1 || MaxNewTokens > 100_000) throw new UserError($"max new tokens must be 1..100000, got {MaxNewTokens}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new UserError($"temperature must be ≥ 0, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new UserError($"top-p must be in (0, 1], got {TopP}");
        if (DraftTokens < 0 || DraftTokens > MaxDraftTokens) throw new UserError($"draft tokens must be 0..{MaxDraftTokens}, got {DraftTokens}");
    }
}

/// <summary>Greedy or temperature/top-p sampling with a seeded generator; runs on the logits' device.</summary>
public sealed class Sampler : IDisposable
{
    readonly GenerationOptions _o;
    torch.Generator? _gen;

    public Sampler(GenerationOptions options) => _o = options;

    /// <summary>Whether every pick is the argmax (no generator draws).</summary>
    public bool Greedy => _o.Temperature <= 0;

    /// <summary>logits [V] (float32) → next token id.</summary>
    public int Next(Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
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
