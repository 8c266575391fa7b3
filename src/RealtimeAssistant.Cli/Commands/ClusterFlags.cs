using System.CommandLine;
using RealtimeAssistant.Cluster;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>How a process reaches a cluster: the flags `ra serve --cluster` and `ra cluster …` share.</summary>
public sealed class ClusterFlags(bool required)
{
    public readonly Option<string?> Cluster = new("--cluster")
    {
        Description = "join the cluster whose Redis is at redis://HOST:PORT[/DB] (membership, grain state, reminders, caption logs); password in $RA_REDIS_PASSWORD",
        Required = required,
    };
    public readonly Option<string> ClusterId = new("--cluster-id") { Description = "the cluster's name in that Redis (several may share one)", DefaultValueFactory = _ => "ra" };
    public readonly Option<bool> Tls = new("--cluster-tls") { Description = "TLS on silo-to-silo and client connections (needed for a non-loopback --cluster-host)" };
    public readonly Option<string?> Cert = new("--cluster-cert") { Description = "a PKCS#12 certificate every silo shares; peers must present it (password in $RA_CLUSTER_CERT_PASSWORD). Without it --cluster-tls makes a self-signed one: encryption without peer authentication" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Cluster, ClusterId, Tls, Cert }) c.Options.Add(o);
    }

    public ClusterSettings Settings(ParseResult pr) => new()
    {
        Redis = pr.GetValue(Cluster) ?? throw new UserError("--cluster redis://HOST:PORT is required"),
        ClusterId = pr.GetValue(ClusterId)!,
        Tls = pr.GetValue(Tls),
        Certificate = pr.GetValue(Cert),
        CertificatePassword = Environment.GetEnvironmentVariable("RA_CLUSTER_CERT_PASSWORD"),
    };
}
