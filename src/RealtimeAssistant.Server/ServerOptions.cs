using System.Net;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Server;

/// <summary>Where `ra serve` listens and what it lets a client send.</summary>
public sealed record ServerOptions
{
    /// <summary>An IP address, or localhost. Loopback unless an API key is set.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0: any free port (the server reports the one it got).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>When set, every /v1 request must carry Authorization: Bearer KEY.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Admission limit of the live-streams API (429 past it).</summary>
    public int MaxStreams { get; init; } = 4;
    public long MaxRequestBytes { get; init; } = 32L * 1024 * 1024;
    /// <summary>Web origins whose pages may call the API from a browser (CORS), or "*" for any; none: same-origin only.</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    public ImageLimits Images { get; init; } = new();
    /// <summary>The live streams' sources and limits.</summary>
    public StreamLimits Streams { get; init; } = new();

    /// <summary>The address to bind, after checking the options (a one-line UserError for each mistake).</summary>
    public IPAddress Validate()
    {
        if (Port is < 0 or > 65535) throw new UserError($"--port must be 0..65535 (0 = any free port), got {Port}");
        if (MaxStreams < 1) throw new UserError($"--max-streams must be at least 1, got {MaxStreams}");
        if (ApiKey is { } key && (key.Length == 0 || key.Any(char.IsWhiteSpace)))
            throw new UserError("--api-key must be a non-empty token without spaces");
        if (MaxRequestBytes < 1024) throw new UserError($"the request size limit must be at least 1 KiB, got {MaxRequestBytes}");
        foreach (var origin in CorsOrigins)
            if (origin != "*" && !(Uri.TryCreate(origin, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" && u.PathAndQuery == "/" && !origin.EndsWith('/') && u.UserInfo.Length == 0))
                throw new UserError($"--cors-origins takes origins such as https://app.example.com or http://localhost:3000 (scheme, host and port, no path), or *; got '{origin}'");
        Streams.Validate();
        IPAddress address;
        if (Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) address = IPAddress.Loopback;
        else if (!IPAddress.TryParse(Host.Trim('[', ']'), out address!))
            throw new UserError($"--host must be an IP address (127.0.0.1, ::1, 0.0.0.0, …) or localhost, got '{Host}'");
        if (!IPAddress.IsLoopback(address) && ApiKey is null)
            throw new UserError($"--host {Host} is reachable from other machines: set --api-key KEY too (or serve on 127.0.0.1)");
        return address;
    }
}

/// <summary>What a client may open as a live stream, and what one stream may use.</summary>
public sealed record StreamLimits
{
    /// <summary>The allow-list folder: file sources are paths inside it (symlinks resolved); null refuses file sources.</summary>
    public string? MediaFolder { get; init; }
    /// <summary>Kinds of source a client may open: file, url, camera, push.</summary>
    public IReadOnlySet<string> Sources { get; init; } = new HashSet<string>(Kinds);
    /// <summary>A stream no client has followed for this long is freed (a push stream: no WebSocket for this long).</summary>
    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Frames a push stream takes per second; more are dropped and counted.</summary>
    public double MaxPushFps { get; init; } = 30;
    /// <summary>Bytes in one pushed frame (a WebSocket message); a larger one closes the socket (1009).</summary>
    public int MaxFrameBytes { get; init; } = 4 * 1024 * 1024;
    /// <summary>The JSON bodies of the streams API (open a stream, ask a question).</summary>
    public int MaxJsonBytes { get; init; } = 64 * 1024;
    /// <summary>Events each stream holds for Last-Event-ID resume.</summary>
    public int EventRetention { get; init; } = 4096;
    /// <summary>Questions that may wait for their answer in one stream (429 past it).</summary>
    public int MaxPendingQuestions { get; init; } = 8;
    /// <summary>Frames per second of the MJPEG video.</summary>
    public double VideoFps { get; init; } = 15;
    /// <summary>Caption tokens a stream drafts from its last caption and checks in one pass (<see cref="Model.GenerationOptions.DraftTokens"/>); 0: one token a pass.</summary>
    public int DraftTokens { get; init; }

    public static readonly string[] Kinds = ["file", "url", "camera", "push"];

    public void Validate()
    {
        foreach (var k in Sources)
            if (!Kinds.Contains(k)) throw new UserError($"--sources: '{k}' is not one of {string.Join(", ", Kinds)}");
        if (Grace <= TimeSpan.Zero) throw new UserError($"--stream-grace must be positive, got {Grace.TotalSeconds} s");
        if (MaxPushFps is not (> 0 and <= 240)) throw new UserError($"--max-push-fps must be in (0, 240], got {MaxPushFps}");
        if (MaxFrameBytes < 1024) throw new UserError($"the push frame size limit must be at least 1 KiB, got {MaxFrameBytes}");
        if (EventRetention < 16) throw new UserError($"a stream holds at least 16 events, got {EventRetention}");
        if (VideoFps is not (> 0 and <= 60)) throw new UserError($"the video rate must be in (0, 60] fps, got {VideoFps}");
        if (MaxPendingQuestions < 1) throw new UserError($"at least one question may wait, got {MaxPendingQuestions}");
    }
}
