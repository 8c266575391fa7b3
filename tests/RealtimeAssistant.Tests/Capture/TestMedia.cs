using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>Clips for the capture and output tests: made here, or real ones from Debian's opencv-doc.</summary>
public static class TestMedia
{
    /// <summary>
    /// OpenCV's sample videos (vtest.avi, Megamind.avi, Megamind_bugy.avi, tree.avi). `./ra test`
    /// takes them from Debian's opencv-doc .deb into .ra/samples (slim images drop /usr/share/doc)
    /// and passes the folder as RA_SAMPLES; a test run without it looks for .ra/samples above the tests.
    /// </summary>
    public static string Sample(string name)
    {
        var dir = Environment.GetEnvironmentVariable("RA_SAMPLES") is { Length: > 0 } env ? env
            : RealtimeAssistant.Cli.Cli.FindRepoPath(".ra/samples");
        var path = dir is null ? null : Path.Combine(dir, name);
        if (path is null || !File.Exists(path))
            Assert.Skip($"OpenCV sample clip {name} not found{(dir is null ? "" : $" in {dir}")}: `./ra test` fetches them from Debian's opencv-doc package into .ra/samples");
        return path;
    }

    public static string? Ffmpeg => Executables.Find("ffmpeg");

    /// <summary>This test run's scratch folder, removed when the test process exits.</summary>
    static readonly Lazy<string> Root = new(() =>
    {
        var parent = Path.Combine(Path.GetTempPath(), "ra-tests");
        var root = Path.Combine(parent, Environment.ProcessId.ToString());
        // The test host may be killed before ProcessExit finishes: sweep up after runs that are gone.
        if (OperatingSystem.IsLinux() && Directory.Exists(parent))
            foreach (var old in Directory.EnumerateDirectories(parent))
                if (!int.TryParse(Path.GetFileName(old), out var pid) || !Directory.Exists($"/proc/{pid}"))
                    try { Directory.Delete(old, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return root;
    });

    public static string TempDir(string name)
    {
        var dir = Path.Combine(Root.Value, $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A frame whose content encodes its index (a bright bar that moves), so order can be checked.</summary>
    public static Mat Pattern(long i, int width = 160, int height = 120)
    {
        var m = new Mat(height, width, MatType.CV_8UC3, new Scalar(30, 60, 90));
        var x = (int)(i * 7 % width);
        Cv2.Rectangle(m, new Rect(x, 0, Math.Min(8, width - x), height), Scalar.White, -1);
        return m;
    }

    /// <summary>Writes an mp4v clip with OpenCV (the codec this build can both write and read).</summary>
    public static string WriteClip(string dir, int frames = 30, double fps = 15, int width = 160, int height = 120, string name = "clip.mp4")
    {
        var path = Path.Combine(dir, name);
        using var writer = new VideoWriter(path, FourCC.MP4V, fps, new Size(width, height));
        Assert.True(writer.IsOpened(), "OpenCV could not open an mp4v writer");
        for (int i = 0; i < frames; i++)
        {
            using var m = Pattern(i, width, height);
            writer.Write(m);
        }
        return path;
    }

    /// <summary>
    /// An AV1 clip of ffmpeg's test pattern, 160×120 at 10 fps, <paramref name="frames"/> frames
    /// (a codec OpenCV's FFmpeg cannot decode); skips the test where this ffmpeg cannot make one.
    /// </summary>
    public static string Av1Clip(string dir, int frames, ITestOutputHelper log)
    {
        var ffmpeg = Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to make an AV1 clip (apt-get install ffmpeg)");
        var path = Path.Combine(dir, "clip.mp4");
        foreach (var (encoder, extra) in new[] { ("libsvtav1", new[] { "-preset", "12" }), ("libaom-av1", new[] { "-cpu-used", "8" }) })
        {
            var (code, errors) = Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
                "-frames:v", frames.ToString(System.Globalization.CultureInfo.InvariantCulture), "-c:v", encoder, .. extra, "-pix_fmt", "yuv420p", path], TimeSpan.FromSeconds(60));
            if (code == 0 && File.Exists(path)) return path;
            log.WriteLine($"{encoder}: exit {code}: {errors}");
        }
        Assert.Skip("this ffmpeg has no working AV1 encoder (libsvtav1, libaom-av1)");
        return path;
    }

    /// <summary>
    /// A recording whose rate changes, as a phone's in low light or a browser's: 160×120 H.264,
    /// 30 frames at 30 fps then 30 at 10 fps (4 s); frame n is shown at <see cref="VariableRateTime"/>.
    /// Skips the test without ffmpeg.
    /// </summary>
    public static string VariableRateClip(string dir)
    {
        var ffmpeg = Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to make a variable-rate clip");
        var clip = Path.Combine(dir, "vfr.mp4");
        var (code, errors) = Run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30",
            "-frames:v", "60", "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", clip],
            TimeSpan.FromSeconds(60));
        Assert.True(code == 0, errors);
        return clip;
    }

    /// <summary>When <see cref="VariableRateClip"/> shows frame <paramref name="n"/>, in seconds.</summary>
    public static double VariableRateTime(int n) => n < 30 ? n / 30.0 : 1 + (n - 30) / 10.0;

    /// <summary>A new FIFO named <paramref name="name"/> in a fresh temp folder <paramref name="dirName"/>.</summary>
    public static string Fifo(string dirName, string name)
    {
        var path = Path.Combine(TempDir(dirName), name);
        var (code, errors) = Run("mkfifo", [path], TimeSpan.FromSeconds(5));
        Assert.True(code == 0, $"mkfifo failed: {errors}");
        return path;
    }

    /// <summary>Runs a tool and kills it if it outlives the timeout, so a test never hangs on it.</summary>
    public static (int Code, string Errors) Run(string exe, IEnumerable<string> args, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var err = p.StandardError.ReadToEndAsync();
        _ = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, $"killed after {timeout.TotalSeconds} s");
        }
        return (p.ExitCode, err.Result);
    }

    /// <summary>Reads every frame of a video back with OpenCV: (count, size of the first).</summary>
    public static (int Count, Size Size) ReadBack(string path)
    {
        using var cap = new VideoCapture(path, VideoCaptureAPIs.FFMPEG);
        Assert.True(cap.IsOpened(), $"OpenCV could not open {path}");
        using var m = new Mat();
        int n = 0;
        Size size = default;
        while (cap.Read(m) && !m.Empty())
        {
            if (n == 0) size = m.Size();
            n++;
        }
        return (n, size);
    }
}
