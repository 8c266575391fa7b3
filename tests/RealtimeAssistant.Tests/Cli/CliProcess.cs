using System.Diagnostics;

namespace RealtimeAssistant.Tests.Cli;

/// <summary>Runs the built `ra` (ra.dll beside the tests) as a user would, under a timeout.</summary>
internal static class CliProcess
{
    public static string RaDll => Path.Combine(AppContext.BaseDirectory, "ra.dll");

    public sealed record Result(int Code, string Stdout, string Stderr, bool TimedOut)
    {
        public string[] Lines => (Stdout + "\n" + Stderr).Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Trim().Length > 0).ToArray();
        public override string ToString() => $"exit {Code}{(TimedOut ? " (killed: timed out)" : "")}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    public static Result Run(IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string?>? env = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        info.ArgumentList.Add(RaDll);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        info.Environment.Remove("DISPLAY"); // headless unless a test says otherwise
        if (env is not null) foreach (var (k, v) in env) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return new Result(-1, stdout.Result, stderr.Result, true);
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, false);
    }
}
