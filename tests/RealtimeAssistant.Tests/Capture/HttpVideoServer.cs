using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// A video served over HTTP on loopback the way a user would put one up:
/// `ffmpeg -re -stream_loop -1 -i VIDEO -c copy -bsf:v dump_extra=freq=keyframe -f mpegts -listen 1 http://127.0.0.1:PORT/live.ts`
/// (the bitstream filter repeats MPEG-4 Part 2 headers in band, so a client that joins can decode).
/// It can be killed mid-stream and started again on the same port, to test reconnects.
/// </summary>
public sealed class HttpVideoServer : IDisposable
{
    readonly string _ffmpeg, _video;
    readonly StringBuilder _log = new();
    Process? _process;

    public int Port { get; }
    public string Url => $"http://127.0.0.1:{Port}/live.ts";
    public string Log { get { lock (_log) return _log.ToString(); } }
    public bool Running => _process is { HasExited: false };

    public HttpVideoServer(string ffmpeg, string video)
    {
        _ffmpeg = ffmpeg;
        _video = video;
        Port = FreePort();
    }

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Starts ffmpeg listening (it serves one client, then exits) and waits until the port takes connections.</summary>
    public void Start()
    {
        if (Running) throw new InvalidOperationException("already serving");
        var psi = new ProcessStartInfo(_ffmpeg) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", _video,
                     "-an", "-c", "copy", "-bsf:v", "dump_extra=freq=keyframe", "-f", "mpegts", "-listen", "1", Url })
            psi.ArgumentList.Add(a);
        var p = new Process { StartInfo = psi };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_log) _log.AppendLine(e.Data); };
        p.Start();
        p.BeginErrorReadLine();
        _process = p;
        // ffmpeg listens before it reads the input; poll the port without connecting (a connect would be its one client).
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(10) && !Listening() && !p.HasExited) Thread.Sleep(50);
        if (!Listening()) throw new InvalidOperationException($"ffmpeg did not listen on {Port}: {Log}");
    }

    /// <summary>Whether something listens on the port (from /proc/net/tcp: state 0A).</summary>
    bool Listening()
    {
        var hex = $":{Port:X4} ";
        return File.ReadLines("/proc/net/tcp").Skip(1).Any(l =>
        {
            var cols = l.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return cols.Length > 3 && cols[1].EndsWith(hex.TrimEnd(), StringComparison.Ordinal) && cols[3] == "0A";
        });
    }

    /// <summary>Whether a client is connected to the port (/proc/net/tcp: a connection in state 01 on it).</summary>
    public bool HasClient()
    {
        var hex = $":{Port:X4}";
        return File.ReadLines("/proc/net/tcp").Skip(1).Any(l =>
        {
            var cols = l.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return cols.Length > 3 && cols[1].EndsWith(hex, StringComparison.Ordinal) && cols[3] == "01";
        });
    }

    /// <summary>Kills ffmpeg mid-stream (as a crashed or restarted camera server).</summary>
    public void Kill()
    {
        var p = _process;
        _process = null;
        if (p is null) return;
        try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        p.WaitForExit(5000);
        p.Dispose();
    }

    public void Dispose() => Kill();
}
