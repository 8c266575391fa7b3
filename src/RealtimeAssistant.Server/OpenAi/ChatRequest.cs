using OpenCvSharp;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>One part of a message's content: text, an image already decoded to BGR pixels, or an image still at a remote URL.</summary>
public abstract record ContentPart;
public sealed record TextPart(string Text) : ContentPart;
public sealed record ImagePart(Mat Image) : ContentPart;
/// <summary>A video_url part: the file's bytes (a data: URI) or where to fetch it; <see cref="RemoteImages"/> turns it into its frames' <see cref="ImagePart"/>s (<see cref="VideoFrames"/>).</summary>
public sealed record VideoPart(byte[]? File, Uri? Url, string Param) : ContentPart;
/// <summary>An http(s) image_url the server may fetch (<see cref="RemoteImages"/> turns it into an <see cref="ImagePart"/> before the prompt is built); Param names it in errors.</summary>
public sealed record ImageUrlPart(Uri Url, string Param) : ContentPart;

/// <summary>A chat message: role (system, developer, user, assistant or tool) and its parts in order.</summary>
public sealed record ChatMessage(string Role, IReadOnlyList<ContentPart> Content)
{
    public IEnumerable<Mat> Images => Content.OfType<ImagePart>().Select(p => p.Image);
    /// <summary>The message's text parts joined by a space (OpenAI sends a string as one text part).</summary>
    public string Text => string.Join(" ", Content.OfType<TextPart>().Select(p => p.Text));
}

/// <summary>A validated POST /v1/chat/completions body. Owns its decoded images.</summary>
public sealed record ChatRequest : IDisposable
{
    public required string Model { get; init; }
    public required IReadOnlyList<ChatMessage> Messages { get; init; }
    public bool Stream { get; init; }
    /// <summary>stream_options.include_usage: a last chunk with usage and no choices.</summary>
    public bool IncludeUsage { get; init; }
    /// <summary>max_completion_tokens, else max_tokens; null = up to the context length.</summary>
    public int? MaxTokens { get; init; }
    /// <summary>OpenAI's default is 1; 0 is greedy.</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public long? Seed { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>logprobs: true gives each completion token's log-probability with this many alternatives (top_logprobs, 0 by default); null: logprobs off.</summary>
    public int? TopLogProbs { get; init; }

    public void Dispose()
    {
        foreach (var m in Messages)
            foreach (var img in m.Images) img.Dispose();
    }
}
