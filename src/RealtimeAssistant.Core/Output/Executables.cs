using System.Collections.Concurrent;
using System.Diagnostics;

namespace RealtimeAssistant.Output;

/// <summary>Finds a program on PATH, the way a shell would.</summary>
public static class Executables
{
    public static string? Find(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        var suffixes = OperatingSystem.IsWindows() ? new[] { ".exe", "" } : [""];
        foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var suffix in suffixes)
            {
                var candidate = Path.Combine(dir, name + suffix);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    static readonly Lazy<string?> Setsid = new(() => OperatingSystem.IsLinux() ? Find("setsid") : null);
    static readonly Lazy<string?> Setpriv = new(() => OperatingSystem.IsLinux() ? Find("setpriv") : null);

    /// <summary>
    /// How to start <paramref name="exe"/> in a session of its own (through util-linux's
    /// <c>setsid</c>, which execs it under the same process id: ra's children lead no group). A
    /// terminal's Ctrl+C signals the whole foreground process group: an ffmpeg in it would quit
    /// mid-file while ra was still finishing its outputs. ra stops its children itself. Add the
    /// program's arguments to <see cref="ProcessStartInfo.ArgumentList"/>.
    /// </summary>
    /// <param name="diesWithUs">the child is killed when ra dies, however it dies (util-linux's
    /// <c>setpriv --pdeathsig KILL</c>): for a child nothing else would end, as a relay's ffmpeg
    /// blocked opening a FIFO whose reader was ra. Start it with <see cref="StartTied"/>.</param>
    public static ProcessStartInfo InOwnSession(string exe, bool diesWithUs = false)
    {
        if (Setsid.Value is not { } setsid) return new ProcessStartInfo(exe) { UseShellExecute = false };
        var info = new ProcessStartInfo(setsid) { UseShellExecute = false };
        if (diesWithUs && Setpriv.Value is { } setpriv)
            foreach (var a in (string[])[setpriv, "--pdeathsig", "KILL"]) info.ArgumentList.Add(a);
        info.ArgumentList.Add(exe);
        return info;
    }

    /// <summary>
    /// Starts <paramref name="process"/> from a thread that lives as long as ra. Linux sends the
    /// parent-death signal when the thread that forked the child ends, not the process: a child
    /// started from a pool thread that retires would be killed under a running stream.
    /// </summary>
    public static void StartTied(Process process)
    {
        _ = Starter.Value;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Starts.Add((process, started));
        started.Task.GetAwaiter().GetResult();
    }

    static readonly BlockingCollection<(Process Process, TaskCompletionSource Started)> Starts = new();
    static readonly Lazy<Thread> Starter = new(() =>
    {
        var thread = new Thread(() =>
        {
            foreach (var (process, started) in Starts.GetConsumingEnumerable())
            {
                try { process.Start(); started.SetResult(); }
                catch (Exception e) { started.SetException(e); }
            }
        }) { IsBackground = true, Name = "child starter" };
        thread.Start();
        return thread;
    });
}
