using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

[Collection("GL")]
public sealed class WindowTests(ITestOutputHelper output)
{
    [Fact]
    public void Without_a_display_the_factory_falls_back_to_headless_and_says_why()
    {
        string? saved = Environment.GetEnvironmentVariable("DISPLAY");
        ProcessEnv.Set("DISPLAY", null);
        try
        {
            using IGlContext ctx = GlContextFactory.Create(preferWindow: true, 320, 240, out string? reason);
            Assert.IsType<EglHeadlessContext>(ctx);
            Assert.NotNull(reason);
            Assert.Contains("no display", reason);
            Assert.DoesNotContain('\n', reason);
            output.WriteLine(reason);

            var e = Assert.Throws<UserError>(() => new GlfwWindowContext(320, 240));
            Assert.Contains("DISPLAY", e.Message);
        }
        finally
        {
            ProcessEnv.Set("DISPLAY", saved);
        }
    }

    [Fact]
    public void An_unreachable_display_also_falls_back_with_glfws_reason()
    {
        string? saved = Environment.GetEnvironmentVariable("DISPLAY");
        ProcessEnv.Set("DISPLAY", ":987");   // no server there (checked below)
        try
        {
            Assert.False(File.Exists("/tmp/.X11-unix/X987"));
            using IGlContext ctx = GlContextFactory.Create(preferWindow: true, 320, 240, out string? reason);
            Assert.False(ctx.IsWindow);
            Assert.NotNull(reason);
            Assert.Contains("DISPLAY=:987", reason);
            output.WriteLine(reason);
        }
        finally
        {
            ProcessEnv.Set("DISPLAY", saved);
        }
    }

    [Fact]
    public void Headless_is_chosen_without_a_reason_when_no_window_is_wanted()
    {
        using IGlContext ctx = GlContextFactory.Create(preferWindow: false, 320, 240, out string? reason);
        Assert.False(ctx.IsWindow);
        Assert.Null(reason);
    }

    [Fact]
    public void Window_under_Xvfb_renders_swaps_and_reads_back()
    {
        using var xvfb = Xvfb.TryStart(out string? why);
        if (xvfb is null)
        {
            // Skipped only where Xvfb is absent (./ra installs it); installed but broken fails.
            Assert.False(Xvfb.IsInstalled, $"Xvfb is installed but did not start: {why}");
            Assert.Skip($"{why}");
        }

        string? saved = Environment.GetEnvironmentVariable("DISPLAY");
        ProcessEnv.Set("DISPLAY", xvfb.Display);
        try
        {
            using IGlContext ctx = GlContextFactory.Create(preferWindow: true, 640, 480, out string? reason, "ra-test");
            Assert.Null(reason);
            Assert.True(ctx.IsWindow);
            Assert.Equal(0u, ctx.Framebuffer);
            Assert.Equal((640, 480), (ctx.Width, ctx.Height));
            output.WriteLine(ctx.Description);

            int keys = 0;
            ctx.Key += _ => keys++;
            using var renderer = new OverlayRenderer(ctx);
            using Mat video = GlTestSupport.Pattern(640, 480);
            renderer.Render(new OverlayState { Video = video, Caption = "hello from the window", ShowHud = true, Hud = GlTestSupport.SampleHud() });
            using Mat frame = renderer.ReadPixels();
            ctx.SwapBuffers();
            ctx.PollEvents();

            Rect band = GlTestSupport.ToRect(renderer.LastLayout.CaptionBand);
            Assert.True(GlTestSupport.CountWhiteish(frame, band) > 100, "caption text missing in the window's frame");
            var clear = new Rect(400, 200, 200, 100);
            Assert.True(GlTestSupport.MeanAbsDiff(frame, video, clear) < 1.0);

            Assert.False(ctx.ShouldClose);
            ctx.RequestClose();
            Assert.True(ctx.ShouldClose);
        }
        finally
        {
            ProcessEnv.Set("DISPLAY", saved);
        }
    }
}

/// <summary>A private X server for one test, on a display number nobody else is using.</summary>
internal sealed class Xvfb : IDisposable
{
    private readonly Process _process;
    public string Display { get; }

    private Xvfb(Process process, string display) { _process = process; Display = display; }

    public static bool IsInstalled => FindOnPath("Xvfb") is not null;

    public static Xvfb? TryStart(out string? why)
    {
        string? exe = FindOnPath("Xvfb");
        if (exe is null) { why = "Xvfb is not installed (Debian package xvfb)"; return null; }

        int n = 99 + Random.Shared.Next(0, 400);
        while (File.Exists($"/tmp/.X11-unix/X{n}") || File.Exists($"/tmp/.X{n}-lock")) n++;
        var psi = new ProcessStartInfo(exe, $":{n} -screen 0 1024x768x24 -nolisten tcp")
        {
            RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false,
        };
        var p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();

        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(10))
        {
            if (File.Exists($"/tmp/.X11-unix/X{n}")) { why = null; return new Xvfb(p, $":{n}"); }
            if (p.HasExited) { why = $"Xvfb :{n} exited with code {p.ExitCode}"; return null; }
            Thread.Sleep(50);
        }
        p.Kill();
        why = $"Xvfb :{n} did not create its socket within 10 s";
        return null;
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':')
        .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    public void Dispose()
    {
        // SIGTERM, not Kill(): Xvfb removes its socket and lock file only on a clean exit.
        if (!_process.HasExited) SendSignal(_process.Id, 15);
        if (!_process.WaitForExit(5000)) _process.Kill();
        _process.Dispose();
    }
}
