using System.Net;
using System.Net.Sockets;

namespace RealtimeAssistant.Cluster;

/// <summary>What a silo does: load the model and run streams, host the HTTP API, or both.</summary>
public enum SiloRole { Inference, Gateway, Both }

/// <summary>How a process joins a cluster (`ra serve --cluster …`, `ra cluster …`).</summary>
public sealed record ClusterSettings
{
    /// <summary>redis://HOST:PORT[/DB]: membership, grain state, reminders and the caption log.</summary>
    public required string Redis { get; init; }
    /// <summary>Several clusters may share one Redis under different ids.</summary>
    public string ClusterId { get; init; } = "ra";
    public SiloRole Role { get; init; } = SiloRole.Both;
    /// <summary>A name unique in the cluster (default: role-host-pid); `ra cluster drain` takes it.</summary>
    public string? SiloName { get; init; }
    /// <summary>The address silos bind and advertise to each other (loopback unless TLS is on).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Silo-to-silo and client gateway ports; 0 takes a free port.</summary>
    public int SiloPort { get; init; }
    public int GatewayPort { get; init; }
    /// <summary>TLS on silo-to-silo (and client) connections.</summary>
    public bool Tls { get; init; }
    /// <summary>A PKCS#12 certificate every silo shares (peers must present the same one); null with TLS: a self-signed one made at start, encryption without peer authentication.</summary>
    public string? Certificate { get; init; }
    public string? CertificatePassword { get; init; }
    /// <summary>Caption log entries kept per stream.</summary>
    public int LogRetention { get; init; } = 10_000;
    /// <summary>Failure detection: a silo that misses this many probes of this timeout is voted dead.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(2);
    public int MissedProbesLimit { get; init; } = 2;
    /// <summary>
    /// How long a client (`ra cluster status`, `drain`) keeps trying to reach the cluster's silos:
    /// long enough for one that is starting to register, where Orleans' own back-off made a user
    /// who named a cluster with no silo, or left out --cluster-tls, wait three minutes.
    /// </summary>
    public TimeSpan ConnectPatience { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The Redis endpoint and database, after checking the URL (a one-line UserError otherwise).</summary>
    public (string Host, int Port, int Database) RedisEndpoint()
    {
        if (!Uri.TryCreate(Redis, UriKind.Absolute, out var uri) || uri.Scheme != "redis" || string.IsNullOrEmpty(uri.Host))
            throw new UserError($"--cluster takes redis://HOST:PORT[/DB], got '{Redis}'");
        if (!string.IsNullOrEmpty(uri.UserInfo)) throw new UserError("--cluster: give Redis credentials with RA_REDIS_PASSWORD, not in the URL (it shows in the process list)");
        int db = 0;
        var path = uri.AbsolutePath.Trim('/');
        if (path.Length > 0 && (!int.TryParse(path, out db) || db is < 0 or > 15)) throw new UserError($"--cluster: the database in '{Redis}' must be 0..15");
        if (uri.Query.Length > 0) throw new UserError($"--cluster: '{Redis}' has a query; options are flags of their own");
        return (uri.Host.Trim('[', ']'), uri.IsDefaultPort ? 6379 : uri.Port, db);
    }

    /// <summary>Checks everything that needs no network; returns the address silos bind.</summary>
    public IPAddress Validate()
    {
        RedisEndpoint();
        if (string.IsNullOrWhiteSpace(ClusterId) || ClusterId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new UserError($"--cluster-id takes letters, digits, '-', '_' and '.', got '{ClusterId}'");
        if (SiloName is { } n && (n.Length == 0 || n.Length > 100 || n.Any(char.IsWhiteSpace)))
            throw new UserError($"--silo-name must be 1..100 characters without spaces, got '{n}'");
        foreach (var (name, port) in new[] { ("--silo-port", SiloPort), ("--gateway-port", GatewayPort) })
            if (port is < 0 or > 65535) throw new UserError($"{name} must be 0..65535 (0 = any free port), got {port}");
        if (LogRetention is < 1 or > 10_000_000) throw new UserError($"--log-retention must be 1..10000000 segments, got {LogRetention}");
        if (!IPAddress.TryParse(Host.Trim('[', ']'), out var address))
        {
            if (!Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) throw new UserError($"--cluster-host must be an IP address this machine has (or localhost), got '{Host}'");
            address = IPAddress.Loopback;
        }
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
            throw new UserError("--cluster-host must be the address other silos reach this one at, not 0.0.0.0");
        if (!IPAddress.IsLoopback(address) && !Tls)
            throw new UserError($"--cluster-host {Host} is reachable from other machines: add --cluster-tls so silo traffic is encrypted (and --cluster-cert FILE so peers are authenticated)");
        if (Certificate is not null && !Tls) throw new UserError("--cluster-cert needs --cluster-tls");
        if (Certificate is not null && !File.Exists(Certificate)) throw new UserError($"--cluster-cert: file not found: {Certificate}");
        return address;
    }

    public string EffectiveSiloName => SiloName ?? $"{SiloRoleName}-{Environment.MachineName}-{Environment.ProcessId}";
    string SiloRoleName => Role.ToString().ToLowerInvariant();

    /// <summary>A free TCP port on <paramref name="address"/> (the OS's choice), for a port given as 0.</summary>
    public static int FreePort(IPAddress address)
    {
        using var l = new TcpListener(address, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
