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
    public ImageLimits Images { get; init; } = new();

    /// <summary>The address to bind, after checking the options (a one-line UserError for each mistake).</summary>
    public IPAddress Validate()
    {
        if (Port is < 0 or > 65535) throw new UserError($"--port must be 0..65535 (0 = any free port), got {Port}");
        if (MaxStreams < 1) throw new UserError($"--max-streams must be at least 1, got {MaxStreams}");
        if (ApiKey is { } key && (key.Length == 0 || key.Any(char.IsWhiteSpace)))
            throw new UserError("--api-key must be a non-empty token without spaces");
        if (MaxRequestBytes < 1024) throw new UserError($"the request size limit must be at least 1 KiB, got {MaxRequestBytes}");
        IPAddress address;
        if (Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) address = IPAddress.Loopback;
        else if (!IPAddress.TryParse(Host.Trim('[', ']'), out address!))
            throw new UserError($"--host must be an IP address (127.0.0.1, ::1, 0.0.0.0, …) or localhost, got '{Host}'");
        if (!IPAddress.IsLoopback(address) && ApiKey is null)
            throw new UserError($"--host {Host} is reachable from other machines: set --api-key KEY too (or serve on 127.0.0.1)");
        return address;
    }
}
