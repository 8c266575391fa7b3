using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>
/// A redis-server of our own on a free loopback port, with no persistence, stopped by its PID
/// (Debian's package; ./ra test installs it). A test that cannot have one is skipped, not failed.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    Process? _process;
    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";
    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

    RedisServer(int port) => Port = port;

    public static string? Executable => new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);

    public static async Task<RedisServer> StartAsync()
    {
        if (Executable is null) Assert.Skip("redis-server is not installed (./ra test installs Debian's redis-server)");
        var server = new RedisServer(FreePort());
        await server.StartProcessAsync();
        return server;
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Starts (or restarts, on the same port) the server and waits until it answers PING.</summary>
    public async Task StartProcessAsync()
    {
        var psi = new ProcessStartInfo(Executable!) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "" })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited) throw new InvalidOperationException($"redis-server exited ({_process.ExitCode}) on port {Port}");
            if (await Pings()) return;
            await Task.Delay(50);
        }
        throw new TimeoutException($"redis-server on port {Port} did not answer within 20 s");
    }

    async Task<bool> Pings()
    {
        try
        {
            using var c = new TcpClient();
            await c.ConnectAsync(IPAddress.Loopback, Port);
            var s = c.GetStream();
            await s.WriteAsync("PING\r\n"u8.ToArray());
            var buf = new byte[16];
            int n = await s.ReadAsync(buf).AsTask().WaitAsync(TimeSpan.FromSeconds(2));
            return n >= 5 && System.Text.Encoding.ASCII.GetString(buf, 0, n).StartsWith("+PONG");
        }
        catch (Exception e) when (e is SocketException or IOException or TimeoutException) { return false; }
    }

    /// <summary>Kills the server (SIGKILL by its PID): the cluster loses Redis as when its machine dies.</summary>
    public async Task KillAsync()
    {
        if (_process is not { HasExited: false } p) return;
        p.Kill();
        await p.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
    }
}

/// <summary>One redis-server for a test class (each test uses its own cluster id, so tests never see each other's keys).</summary>
public sealed class RedisFixture : IAsyncLifetime
{
    RedisServer? _server;
    public RedisServer Server => _server ?? throw new InvalidOperationException("no redis-server");
    public string Url => Server.Url;

    public async ValueTask InitializeAsync()
    {
        if (RedisServer.Executable is null) return; // each test skips
        _server = await RedisServer.StartAsync();
    }

    public string Need()
    {
        if (_server is null) Assert.Skip("redis-server is not installed (./ra test installs Debian's redis-server)");
        return _server.Url;
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }
}

/// <summary>The cluster tests run apart from every other test: their silos keep both cores busy, and timing tests beside them would fail.</summary>
[CollectionDefinition("cluster", DisableParallelization = true)]
public class ClusterCollection;
