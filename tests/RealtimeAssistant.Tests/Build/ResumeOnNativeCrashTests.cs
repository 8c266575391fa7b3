using System.Diagnostics;
using Xunit;

namespace RealtimeAssistant.Tests.Build;

/// <summary>
/// ./ra train re-runs a run that died in native code (it resumes from its checkpoint), and
/// nothing else. Driven through the sourced script with stand-in commands.
/// </summary>
public class ResumeOnNativeCrashTests
{
    static string Script()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var f = Path.Combine(d.FullName, "build", "resume-on-native-crash.sh");
            if (File.Exists(f)) return f;
        }
        throw new FileNotFoundException("build/resume-on-native-crash.sh not found above the test binaries");
    }

    /// <summary>Runs `run_resuming bash -c BODY` with the count of runs kept in a file.</summary>
    static (int Rc, int Runs, string Err) Run(string body)
    {
        using var dir = new TempDir();
        var count = dir.File("runs");
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"set -e; source '{Script()}'; RA_NATIVE_RETRIES=3 run_resuming bash -c 'echo x >> \"{count}\"; n=$(wc -l < \"{count}\"); {body}'");
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), "the wrapper hung");
        return (p.ExitCode, File.Exists(count) ? File.ReadAllLines(count).Length : 0, err);
    }

    [Theory]
    [InlineData("kill -ABRT $$")]
    [InlineData("exit 75")] // ra train's exit for the known transient fault (TrainCommand.TransientNativeFault)
    public void ANativeFault_IsRunAgain_AndASuccessEndsIt(string fault)
    {
        var (rc, runs, err) = Run($"if [ $n -lt 3 ]; then {fault}; fi; exit 0");
        Assert.Equal(0, rc);
        Assert.Equal(3, runs);
        Assert.Contains("retry 2 of 3", err);
        Assert.Equal(75, RealtimeAssistant.Cli.Commands.TrainCommand.TransientNativeFault);
    }

    [Theory]
    [InlineData(2)]   // a user error
    [InlineData(1)]   // a failure
    [InlineData(130)] // Ctrl-C
    public void OtherExits_AreNotRetried(int code)
    {
        var (rc, runs, err) = Run($"exit {code}");
        Assert.Equal(code, rc);
        Assert.Equal(1, runs);
        Assert.DoesNotContain("again", err);
    }

    [Fact]
    public void ACrashEveryTime_GivesUpAfterTheRetries()
    {
        var (rc, runs, err) = Run("kill -SEGV $$");
        Assert.Equal(139, rc);
        Assert.Equal(4, runs);
        Assert.Contains("giving up", err);
    }
}
