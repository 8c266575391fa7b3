using System.Diagnostics;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Cli;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// annotate and stream read a FIFO, or "-" (standard input), as a file: every frame in order,
/// however fast the writer, ending when the writer closes. A writer faster than the model is held
/// back by the pipe, not dropped from (as a camera's frames are in `live`).
/// </summary>
public class PipeAsFileTests(ITestOutputHelper log)
{
    static string TestPattern(int frames) =>
        $"testsrc=size=160x120:rate=10:duration={frames / 10.0}".Replace(',', '.');

    [Fact]
    public async Task AFifoFromAWriterFasterThanRealTime_GivesEveryFrameInOrder_ThenEnds()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to write into the FIFO");
        var fifo = TestMedia.Fifo("pipe-file", "clip.nut");
        // No -re: ffmpeg writes as fast as the pipe takes it.
        var writer = Task.Run(() => TestMedia.Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", TestPattern(40), "-f", "nut", fifo], TimeSpan.FromSeconds(60)));

        using var source = FrameSources.Open(fifo, new FrameSourceOptions { PipesAsFiles = true });
        Assert.False(source.IsLive);
        Assert.Null(source.FrameCount);
        Assert.Equal(10, source.Fps, 3);
        Assert.StartsWith("fifo clip.nut (160x120, 10 fps", source.Description);
        var indices = new List<long>();
        while (source.Read() is { } f)
            using (f)
            {
                indices.Add(f.Index);
                Thread.Sleep(5); // a reader slower than the writer loses nothing
            }
        Assert.Equal(Enumerable.Range(0, 40).Select(i => (long)i), indices);
        var (code, errors) = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(code == 0, errors);
    }

    [Fact]
    public void AFifoNobodyWritesInto_IsAUserError_AfterTheWait()
    {
        var fifo = TestMedia.Fifo("pipe-none", "nobody");
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<UserError>(() => FrameSources.Open(fifo, new FrameSourceOptions { PipesAsFiles = true, StreamOpenTimeout = TimeSpan.FromSeconds(1) }));
        Assert.Contains("nothing is writing into it", e.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed}");
    }

    /// <summary>`ffmpeg … | ra stream -`: every 5th of 40 frames read, a caption each, and the run ends with the pipe.</summary>
    [Fact]
    public void StreamDash_ReadsAVideoPipedIntoStdin_ToItsEnd()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to pipe a video");
        var run = Shell("set -o pipefail; \"$0\" -hide_banner -loglevel error -f lavfi -i \"$1\" -f nut - | dotnet \"$2\" stream - --gate 0 --policy every:1 --jsonl -",
            ffmpeg, TestPattern(40), CliProcess.RaDll);
        log.WriteLine(run.Stderr);
        Assert.True(run.Code == 0, run.Stderr);
        var frames = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("frame").GetInt64()).ToList();
        Assert.Equal(new long[] { 0, 5, 10, 15, 20, 25, 30, 35 }, frames);
        Assert.Contains("pipe stdin (160x120, 10 fps", run.Stderr);
    }

    static (int Code, string Stdout, string Stderr) Shell(string script, params string[] args)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(120))) { p.Kill(entireProcessTree: true); Assert.Fail($"no end within 120 s: {script}"); }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>`curl … | ra caption --image -`: the image piped in is captioned as the same file is.</summary>
    [Fact]
    public void CaptionDash_CaptionsAnImagePipedIntoStdin_AsTheFile()
    {
        var png = Path.Combine(TestMedia.TempDir("caption-stdin"), "frame.png");
        using (var m = TestMedia.Pattern(3, 96, 96)) OpenCvSharp.Cv2.ImWrite(png, m);
        var piped = Shell("exec dotnet \"$0\" caption --image - --max-new-tokens 8 --json < \"$1\"", CliProcess.RaDll, png);
        Assert.True(piped.Code == 0, piped.Stderr);
        var named = Shell("exec dotnet \"$0\" caption --image \"$1\" --max-new-tokens 8 --json", CliProcess.RaDll, png);
        Assert.True(named.Code == 0, named.Stderr);
        string Text(string json) => System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("text").GetString()!;
        Assert.Equal(Text(named.Stdout), Text(piped.Stdout));
        Assert.NotEmpty(Text(piped.Stdout));

        var empty = Shell("exec dotnet \"$0\" caption --image - < /dev/null", CliProcess.RaDll);
        Assert.Equal(2, empty.Code);
        Assert.Equal("error: no image came from standard input", Assert.Single(empty.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public void StreamDash_WithNothingPipedIn_IsOneLineExit2()
    {
        var run = Shell("exec dotnet \"$0\" stream - < /dev/null", CliProcess.RaDll);
        Assert.Equal(2, run.Code);
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("'-' reads a video piped into standard input", lines[0]);
    }
}
