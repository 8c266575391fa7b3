using System.Threading.Channels;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Server.Inference;

/// <summary>One generation: the prompt and the sampling the request asked for.</summary>
public sealed record GenerationJob
{
    public required ChatPrompt Prompt { get; init; }
    /// <summary>null: up to the context length.</summary>
    public int? MaxTokens { get; init; }
    /// <summary>0 = greedy.</summary>
    public double Temperature { get; init; }
    public double TopP { get; init; } = 1.0;
    public ulong Seed { get; init; }
    /// <summary>Each token's log-probability with this many alternatives (null: none).</summary>
    public int? TopLogProbs { get; init; }
    /// <summary>What holds the prompt's images; disposed once the job is done (or refused).</summary>
    public IDisposable? Owner { get; init; }
}

/// <summary>What a job reports, in order: accepted (or failed), text deltas, then ended (or failed).</summary>
public abstract record GenerationEvent;
public sealed record PromptAccepted(int PromptTokens) : GenerationEvent;
/// <summary>Generated text. <paramref name="IsToken"/> is false for the decoder's final flush, which is text but no token. <paramref name="LogProb"/>: the token's, when the job asked for them.</summary>
public sealed record TokenDelta(string Text, bool IsToken, TokenLogProbs? LogProb = null) : GenerationEvent;

/// <summary>One alternative at a token's step, as OpenAI's top_logprobs lists it: the token's text, its log-probability and its UTF-8 bytes.</summary>
public sealed record TopLogProb(string Token, double LogProb, byte[] Bytes);
/// <summary>A completion token's entry in OpenAI's logprobs.content: its text, log-probability, bytes, and the most likely tokens at its step.</summary>
public sealed record TokenLogProbs(string Token, double LogProb, byte[] Bytes, IReadOnlyList<TopLogProb> TopLogprobs);
/// <summary><paramref name="HitLimit"/>: stopped by the token limit, not by the model's end token.</summary>
public sealed record GenerationEnded(int CompletionTokens, bool HitLimit) : GenerationEvent;
public sealed record GenerationFailed(ApiError Error) : GenerationEvent;

/// <summary>
/// The model behind the OpenAI endpoints. The HTTP side knows only this: the chat endpoint
/// submits jobs and reads their events. Today one loaded model runs one job at a time
/// (<see cref="SerialChatModel"/>); the live-streams scheduler that batches decode steps across
/// streams will implement the same seam.
/// </summary>
public interface IChatModel : IDisposable
{
    /// <summary>The id clients name in "model" (the model folder's name).</summary>
    string Id { get; }
    DateTimeOffset Created { get; }
    PromptFormat Format { get; }
    /// <summary>Most tokens, prompt and completion together, in one request.</summary>
    int ContextLength { get; }

    /// <summary>
    /// Queues a job and returns its events. Takes ownership of <see cref="GenerationJob.Owner"/>.
    /// Cancelling <paramref name="ct"/> stops the job at its next token (or before it starts).
    /// Throws <see cref="ApiError"/> 429 when the queue is full.
    /// </summary>
    ChannelReader<GenerationEvent> Submit(GenerationJob job, CancellationToken ct);
}
