using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra profile IN`: the live loop on a file paced as if live; a latency report with plots.</summary>
public static class ProfileCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "video file (or FIFO, image folder, 'synthetic')" };
        var output = Cli.WritesTo(new Option<string?>("--output", "-o") { Description = "report folder (default: runs/profile-TIMESTAMP)" }, folder: true);
        var fps = Cli.DisplayFpsOption();
        var seconds = Cli.Seconds(new Option<double?>("--seconds") { Description = "stop after this many seconds (default: the whole file)" }, max: 7 * 86400);
        var warmup = new Option<int>("--warmup-captions")
        {
            Description = "captions that warm the model up before the report's record starts: their one-time costs (JIT, allocation) are the cold start, reported on its own line (0: record from the start)",
            DefaultValueFactory = _ => 1,
        };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var rt = new RealtimeFlags("finished", questions: false);
        var cmd = new Command("profile", "Run the live loop on a file as if it were live (realtime pacing, headless render) and write a latency report: table, PNG plots, report.json. " +
            "GPE session with the governor on by default (--mode reencode, --prune-method none).")
            { input, output, fps, seconds, warmup, model, device, dtype, weights, maxPixels };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            var spec = pr.GetValue(input)!;
            rt.Check(pr);
            if (pr.GetValue(warmup) is < 0 or > 1000) throw new UserError($"--warmup-captions must be 0..1000, got {pr.GetValue(warmup)}");
            double sourceFps = Capture.FrameSources.Check(spec, AppSources.Options()) ?? 30;   // a bad file fails before the model loads
            var dir = pr.GetValue(output) ?? Path.Combine("runs", $"profile-{DateTime.Now:yyyyMMdd-HHmmss}");
            using var engine = Model.Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights, maxPixels));
            var run = rt.Resolve(pr, engine, sourceFps, Pacing.Live);
            Console.Error.WriteLine($"profile: playing {spec} in real time (headless render at {pr.GetValue(fps):0} fps): {run.Header}…");
            using var session = SessionModes.Create(run.Mode, engine, run.Streaming);
            var stats = LiveApp.Run(null, new LiveAppOptions
            {
                Source = spec, Realtime = true, DisplayFps = pr.GetValue(fps), ProfileWindow = 1 << 17, WarmupCaptions = pr.GetValue(warmup),
                Duration = pr.GetValue(seconds) is { } s ? TimeSpan.FromSeconds(s) : null,
            }, session, run.Loop, ct);
            ProfileReport.PrintTable(stats);
            if (stats.Stream.ReadsByLevelLine is { } levels) Console.WriteLine(levels);
            RealtimeFlags.ReportBudget(stats.Stream, ct.IsCancellationRequested, "profile");
            foreach (var path in ProfileReport.Write(stats, dir)) AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(path)}[/]");
            if (stats.Error is not null) throw new UserError(stats.Error);
            return 0;
        });
    }
}
