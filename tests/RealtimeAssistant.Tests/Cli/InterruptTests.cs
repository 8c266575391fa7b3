using System.Diagnostics;
using System.Runtime.InteropServices;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Cli;

/// <summary>
/// Ctrl+C in a terminal signals the whole foreground process group, not ra alone. ra's ffmpeg
/// children must not quit with it: ra finishes its outputs after the signal, and an encoder that
/// had already gone would make that an error (exit 2) and cut the video short.
/// </summary>
public class InterruptTests(ITestOutputHelper log)
{
    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);
    const int SIGINT = 2;

    /// <summary>
    /// `ra ARGS` as a shell's foreground job: setsid makes ra the leader of a group of its own. A
    /// test run started in the background ignores SIGINT, and its children inherit that (as under
    /// nohup, where ra rightly ignores it too): env --default-signal gives ra a terminal's.
    /// </summary>
    static (Process Process, Task<string> Stdout, Task<string> Stderr) AsAForegroundJob(string setsid, params string[] args)
    {
        var info = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["--default-signal=INT", setsid, "dotnet", CliProcess.RaDll, .. args]) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        info.Environment.Remove("DISPLAY");
        var p = Process.Start(info)!;
        return (p, p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync());
    }

    [Fact]
    public void CtrlCToTheProcessGroup_DuringAnnotate_Exits130_WithTheWholeVideoWritten()
    {
        if (Executables.Find("ffmpeg") is null) Assert.Skip("no ffmpeg on PATH: the H.264 writer is the child a terminal's Ctrl+C reached");
        var setsid = Executables.Find("setsid") ?? "";
        if (setsid.Length == 0) Assert.Skip("no setsid (util-linux) to give the run a process group of its own");
        // Long enough (about 5 s here) that the signal comes mid-file.
        var input = TestMedia.WriteClip(TestMedia.TempDir("sigint-in"), frames: 3000, fps: 30, width: 320, height: 240);
        var dir = Path.Combine(TestMedia.TempDir("sigint-out"), "out");

        var (p, stdout, stderr) = AsAForegroundJob(setsid, "annotate", input, "-o", dir);
        using var _ = p;
        try
        {
            // Under way: the encoder has started writing the video.
            var video = Path.Combine(dir, OutputFolder.VideoName);
            var wait = Stopwatch.StartNew();
            while (!p.HasExited && wait.Elapsed < TimeSpan.FromSeconds(60) && !(File.Exists(video) && new FileInfo(video).Length > 0)) Thread.Sleep(20);
            if (p.HasExited) Assert.Fail($"the run ended before it could be interrupted: {stderr.Result}");
            Assert.True(kill(-p.Id, SIGINT) == 0, $"kill: errno {Marshal.GetLastPInvokeError()}"); // the group, as a terminal's Ctrl+C
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "no exit within 60 s of Ctrl+C");
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
        p.WaitForExit();
        var errors = stderr.Result;
        var said = errors + stdout.Result;
        log.WriteLine(said);
        Assert.Equal(130, p.ExitCode);
        Assert.Contains("interrupting", errors);
        Assert.DoesNotContain("error", said);

        // What the summary says was written is what the files hold.
        var summary = System.Text.RegularExpressions.Regex.Match(said, @"partial outputs are valid: (\d+) frames, (\d+) captions");
        Assert.True(summary.Success, said);
        int frames = int.Parse(summary.Groups[1].Value), captions = int.Parse(summary.Groups[2].Value);
        Assert.InRange(frames, 1, 2999);
        Assert.Equal((frames, new OpenCvSharp.Size(320, 240)), TestMedia.ReadBack(Path.Combine(dir, OutputFolder.VideoName)));
        Assert.Equal(captions, SubtitleParser.ParseSrt(File.ReadAllText(Path.Combine(dir, OutputFolder.SrtName))).Count);
        Assert.Equal(captions, CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName)).Count);
    }

    /// <summary>
    /// `ra annotate FIFO` whose writer sent its frames and then went quiet with the pipe still open
    /// (a capture program paused): OpenCV's read waits in the kernel for good. Ctrl+C still ends the
    /// run within seconds, with its outputs valid: a read stuck on the pipe is waited for once, briefly.
    /// </summary>
    [Fact]
    public void CtrlC_WhileAPipesWriterIsQuiet_EndsTheRunWithinSeconds()
    {
        var ffmpeg = Executables.Find("ffmpeg");
        var setsid = Executables.Find("setsid");
        if (ffmpeg is null || setsid is null) Assert.Skip("no ffmpeg and setsid on PATH");
        var fifo = TestMedia.Fifo("sigint-quiet", "camera.nut");
        var dir = Path.Combine(TestMedia.TempDir("sigint-quiet-out"), "out");
        var writerInfo = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in new[] { "-c", "exec > \"$1\"; \"$0\" -hide_banner -loglevel error -f lavfi -i testsrc=size=160x120:rate=10:duration=2 -f nut -; exec sleep 120", ffmpeg, fifo })
            writerInfo.ArgumentList.Add(a);
        using var writer = Process.Start(writerInfo)!;
        var (p, stdout, stderr) = AsAForegroundJob(setsid, "annotate", fifo, "-o", dir);
        using var _ = p;
        TimeSpan ended;
        try
        {
            // The writer's 20 frames are in and captioned: the run now waits on the quiet pipe.
            var jsonl = Path.Combine(dir, OutputFolder.JsonlName);
            var wait = Stopwatch.StartNew();
            while (!p.HasExited && wait.Elapsed < TimeSpan.FromSeconds(60) && !(File.Exists(jsonl) && new FileInfo(jsonl).Length > 0)) Thread.Sleep(50);
            if (p.HasExited) Assert.Fail($"the run ended before it could be interrupted: {stderr.Result}");
            Thread.Sleep(2000);
            Assert.True(kill(-p.Id, SIGINT) == 0, $"kill: errno {Marshal.GetLastPInvokeError()}");
            var sw = Stopwatch.StartNew();
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "no exit within 60 s of Ctrl+C");
            ended = sw.Elapsed;
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            writer.Kill(entireProcessTree: true);
        }
        p.WaitForExit();
        var said = stderr.Result + stdout.Result;
        log.WriteLine($"exit {p.ExitCode} {ended.TotalSeconds:0.0} s after Ctrl+C\n{said}");
        Assert.Equal(130, p.ExitCode);
        Assert.True(ended < TimeSpan.FromSeconds(10), $"exited {ended.TotalSeconds:0.0} s after Ctrl+C");
        var summary = System.Text.RegularExpressions.Regex.Match(said, @"partial outputs are valid: (\d+) frames, (\d+) captions");
        Assert.True(summary.Success, said);
        Assert.Equal(int.Parse(summary.Groups[1].Value), TestMedia.ReadBack(Path.Combine(dir, OutputFolder.VideoName)).Count);
        Assert.Equal(int.Parse(summary.Groups[2].Value), CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName)).Count);
    }
}
