using System.Diagnostics;
using System.Text;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>`ra serve --cluster …` as a user starts it: the built CLI in its own process; killed with SIGKILL, as a machine dies.</summary>
internal sealed class SiloProcess : IAsyncDisposable
{
    readonly Process _process;
    readonly StringBuilder _stderr = new();
    public string Name { get; }
    /// <summary>The silo's address as the cluster knows it (host:port@generation).</summary>
    public string Address { get; }
    /// <summary>The HTTP API's base address of a gateway (or both) silo; null on an inference silo.</summary>
    public Uri? Api { get; }
    /// <summary>An inference silo's probes (/health, /metrics) with --metrics-port; else null.</summary>
    public Uri? Probes { get; init; }
    public int Pid => _process.Id;
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    SiloProcess(Process p, string name, string address, Uri? api) { _process = p; Name = name; Address = address; Api = api; }

    /// <summary>The command line; a silo that serves HTTP (gateway, both) takes a free port unless <paramref name="extra"/> gives one.</summary>
    public static string[] Args(string redisUrl, string clusterId, string role, string name, params string[] extra) =>
        [ServerTestSupport.RaDll, "serve", "--cluster", redisUrl, "--cluster-id", clusterId, "--role", role, "--silo-name", name,
         .. role != "inference" && !extra.Contains("--port") ? ["--port", "0"] : Array.Empty<string>(), .. extra];

    public static async Task<SiloProcess> Start(string redisUrl, string clusterId, string role, string name, params string[] extra)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = ServerTestSupport.RepoRoot };
        foreach (var a in Args(redisUrl, clusterId, role, name, extra)) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var stderr = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        // "ra serve: silo NAME (ROLE, MODEL) joined cluster 'ID' at ADDRESS (gateway …)[; API on URL (…)]"
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            while (true)
            {
                var line = await p.StandardOutput.ReadLineAsync(cts.Token)
                    ?? throw new InvalidOperationException($"silo {name} exited ({(p.WaitForExit(5000) ? p.ExitCode : -1)}) before joining: {stderr}");
                const string at = " at ", apiOn = "; API on ", probesOn = "; probes on ";
                if (line.StartsWith($"ra serve: silo {name} ") && line.Contains("joined cluster"))
                {
                    var address = line[(line.LastIndexOf(at, StringComparison.Ordinal) + at.Length)..].Split(' ')[0];
                    int api = line.IndexOf(apiOn, StringComparison.Ordinal);
                    int probes = line.IndexOf(probesOn, StringComparison.Ordinal);
                    var silo = new SiloProcess(p, name, address, api < 0 ? null : new Uri(line[(api + apiOn.Length)..].Split(' ')[0]))
                    {
                        Probes = probes < 0 ? null : new Uri(new Uri(line[(probes + probesOn.Length)..].Split(' ')[0]), "/"),
                    };
                    lock (silo._stderr) silo._stderr.Append(stderr);
                    p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (silo._stderr) silo._stderr.AppendLine(e.Data); };
                    return silo;
                }
            }
        }
        catch
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.Dispose();
            throw;
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL: no goodbye to the cluster, no flush, no deactivation.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    public async ValueTask DisposeAsync()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
