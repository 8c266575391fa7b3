using System.Diagnostics;
using System.Text.Json;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Build;

/// <summary>
/// `./ra publish`: a self-contained single-file `ra` that runs with no SDK, carries its native
/// libraries (GLIBCXX fix applied) and finds its shaders, model and video beside it. And the
/// -p:Torch=cuda switch that picks the CUDA libtorch.
/// </summary>
public class PublishTests(ITestOutputHelper log)
{
    static string RepoRoot => Path.GetDirectoryName(RealtimeAssistant.Cli.Cli.FindRepoPath("RealtimeAssistant.sln")
        ?? throw new InvalidOperationException("not run from a checkout"))!;

    static (int Code, string Output) Run(string exe, IEnumerable<string> args, string cwd, TimeSpan timeout, IDictionary<string, string>? env = null)
    {
        var info = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = cwd };
        foreach (var a in args) info.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); p.WaitForExit(); return (-1, $"killed after {timeout}\n{stdout.Result}\n{stderr.Result}"); }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Fact]
    public void PublishedRa_RunsWithoutTheSdk_HelpAndACaption_WithEverythingBesideIt()
    {
        // Published into the checkout's ignored .ra/ (reused: publishing again copies only what changed).
        var dist = Path.Combine(RepoRoot, ".ra", "publish-test");
        var (code, output) = Run("bash", [Path.Combine(RepoRoot, "ra"), "publish", "-o", dist], RepoRoot, TimeSpan.FromMinutes(9));
        log.WriteLine(output);
        Assert.True(code == 0, $"./ra publish failed: {output}");

        var ra = Path.Combine(dist, "ra");
        Assert.True(File.Exists(ra));
        Assert.False(File.Exists(Path.Combine(dist, "ra.dll")), "not a single file");
        Assert.False(File.Exists(Path.Combine(dist, "ra.runtimeconfig.json")), "framework-dependent: it would need a .NET runtime");
        foreach (var native in new[] { "libtorch_cpu.so", "libLibTorchSharp.so", "libOpenCvSharpExtern.so", "libSkiaSharp.so" })
            Assert.True(File.Exists(Path.Combine(dist, native)), $"{native} not shipped");
        var provided = GlibcxxFix.SystemVersions();
        foreach (var (name, weak) in GlibcxxFix.ReadNeeds(File.ReadAllBytes(Path.Combine(dist, "libLibTorchSharp.so"))))
            if (name.StartsWith("GLIBCXX_") && !provided.Contains(name)) Assert.True(weak, $"the published shim still needs {name}");
        Assert.True(File.Exists(Path.Combine(dist, "shaders", "video.frag")));
        Assert.True(File.Exists(Path.Combine(dist, "media", "demo-model", "config.json")));
        Assert.True(File.Exists(Path.Combine(dist, "media", "demo.mp4")));

        // Far from the checkout, with no dotnet on PATH and no runtime to find.
        var away = TestMedia.TempDir("published");
        var noSdk = new Dictionary<string, string> { ["PATH"] = "/usr/local/sbin:/usr/sbin:/sbin:/bin:/nonexistent", ["DOTNET_ROOT"] = "/nonexistent", ["NO_COLOR"] = "1" };
        (code, output) = Run(ra, ["--help"], away, TimeSpan.FromSeconds(60), noSdk);
        Assert.True(code == 0, output);
        Assert.Contains("caption", output);

        // One caption: the same words the engine gives in this process.
        var image = Path.Combine(away, "frame.png");
        string expected;
        using (var sample = new RealtimeAssistant.Demo.DemoDataset(RealtimeAssistant.Demo.DemoSplit.Eval).CaptionSample(3, RealtimeAssistant.Training.DemoModelSpec.ImageSize))
        {
            OpenCvSharp.Cv2.ImWrite(image, sample.Image);
            using var engine = RealtimeAssistant.Model.Engine.Load(Path.Combine(dist, "media", "demo-model"));
            var captioner = new RealtimeAssistant.Model.Captioner(engine);
            expected = string.Concat(captioner.Caption(sample.Image, null, new RealtimeAssistant.Model.GenerationOptions { MaxNewTokens = 64 }, new RealtimeAssistant.Model.CaptionTimings()).Select(e => e.Text)).Trim();
        }
        (code, output) = Run(ra, ["caption", "-m", Path.Combine(dist, "media", "demo-model"), "-i", image], away, TimeSpan.FromSeconds(120), noSdk);
        log.WriteLine(output);
        Assert.True(code == 0, output);
        Assert.NotEmpty(expected);
        Assert.Equal(expected, output.Trim());

        // The shaders are found beside the binary: a short headless live run renders with them.
        (code, output) = Run(ra, ["live", "synthetic", "--headless", "--seconds", "2"], away, TimeSpan.FromSeconds(120), noSdk);
        Assert.True(code == 0, output);
    }

    static List<(string Id, string? Version)> Items(string property, string item)
    {
        var core = Path.Combine(RepoRoot, "src", "RealtimeAssistant.Core", "RealtimeAssistant.Core.csproj");
        var args = new List<string> { "msbuild", core, $"-getItem:{item}", "-nologo" };
        if (property.Length > 0) args.Add($"-p:Torch={property}");
        var (code, output) = Run("dotnet", args, RepoRoot, TimeSpan.FromMinutes(2));
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output);
        return doc.RootElement.GetProperty("Items").GetProperty(item).EnumerateArray()
            .Select(e => (e.GetProperty("Identity").GetString()!, e.TryGetProperty("Version", out var v) ? v.GetString() : null)).ToList();
    }

    [Fact]
    public void TorchCuda_ReferencesTheCudaLibtorch_InsteadOfTheCpuOne()
    {
        var cpu = Items("", "PackageReference").Select(i => i.Id).ToList();
        Assert.Contains("libtorch-cpu-linux-x64", cpu);
        Assert.DoesNotContain("libtorch-cuda-12.8-linux-x64", cpu);

        var cuda = Items("cuda", "PackageReference").Select(i => i.Id).ToList();
        Assert.Contains("libtorch-cuda-12.8-linux-x64", cuda);
        Assert.DoesNotContain("libtorch-cpu-linux-x64", cuda);
        Assert.Contains("TorchSharp", cuda);
        Assert.Contains(("libtorch-cuda-12.8-linux-x64", (string?)"2.10.0"), Items("cuda", "PackageVersion"));
    }

    [Fact]
    public void AnUnknownTorchFlavour_FailsTheBuild()
    {
        var core = Path.Combine(RepoRoot, "src", "RealtimeAssistant.Core", "RealtimeAssistant.Core.csproj");
        var (code, output) = Run("dotnet", ["msbuild", core, "-t:CheckTorchFlavour", "-p:Torch=rocm", "-nologo", "-v:q"], RepoRoot, TimeSpan.FromMinutes(2));
        Assert.NotEqual(0, code);
        Assert.Contains("Torch must be cpu or cuda, got 'rocm'", output);
    }
}
