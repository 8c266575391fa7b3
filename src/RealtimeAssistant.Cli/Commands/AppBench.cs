using System.CommandLine;
using RealtimeAssistant.Cli.App;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench app`: the whole app under load — the demo video looped in real time, the model
/// captioning as fast as it can, the overlay rendered headless at display rate — measured over
/// --seconds after a warm-up: render fps and p99 frame time, caption rate, glass-to-caption
/// latency, dropped frames, and RSS at the start and end (flat means no leak).
/// </summary>
public static class AppBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var seconds = new Option<double>("--seconds") { Description = "measured time (the target is a 10-minute run: 600)", DefaultValueFactory = _ => 60 };
        var warmup = new Option<double>("--warmup") { Description = "seconds before measuring: RSS climbs for about the first 90 s (allocator and caches), then stays flat", DefaultValueFactory = _ => 60 };
        var source = new Option<string?>("--source") { Description = "video source (default: the bundled media/demo.mp4, looped in real time)" };
        var fps = new Option<double>("--display-fps") { Description = "render rate", DefaultValueFactory = _ => 60 };
        var threads = new Option<int?>("--threads") { Description = "torch threads for the model (default: all cores)" };
        var model = AppModel.ModelOption();
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("app", "The app end to end: render fps and p99 frame time while captioning, caption updates/s, glass-to-caption p50/p95, dropped frames, RSS start/end.")
            { json, seconds, warmup, source, fps, threads, model, device, dtype, weights };
        return cmd.WithAction(async (pr, ct) =>
        {
            // Off the invoking thread at once: System.CommandLine installs its Ctrl+C handler only once the
            // action has returned a task, so a body that ran synchronously would die on Ctrl+C mid-write.
            await Task.Yield();
            using var interrupt = new Interrupt(ct);
            ct = interrupt.Token;
            var spec = pr.GetValue(source) ?? Cli.FindRepoPath(DemoCommand.DemoVideo) ?? throw new UserError($"{DemoCommand.DemoVideo} not found; pass --source");
            double measure = pr.GetValue(seconds), warm = pr.GetValue(warmup);
            if (measure <= 0 || warm < 0) throw new UserError("--seconds must be > 0 and --warmup ≥ 0");
            using var captioner = AppModel.Load(pr.GetValue(model), Cli.EngineOptions(pr, device, dtype, weights) with { Threads = pr.GetValue(threads) });
            Console.Error.WriteLine($"bench app: {spec} looped in real time, {warm:0} s warm-up + {measure:0} s measured…");
            var stats = LiveApp.Run(null, new LiveAppOptions
            {
                Source = spec, Loop = true, Realtime = true, DisplayFps = pr.GetValue(fps), ShowHud = true,
                Duration = TimeSpan.FromSeconds(warm + measure), WarmupSeconds = warm, ProfileWindow = 1 << 15,
            }, captioner, ct);
            if (stats.Error is not null) throw new UserError(stats.Error);
            var result = new Dictionary<string, object>
            {
                ["render_fps"] = Math.Round(stats.RenderFps, 2),
                ["frame_ms_p99"] = Math.Round(stats.FrameMsP99, 2),
                ["caption_hz"] = Math.Round(stats.CaptionHz, 2),
                ["latency_ms_p50"] = Math.Round(stats.LatencyP50, 1),
                ["latency_ms_p95"] = Math.Round(stats.LatencyP95, 1),
                ["rss_start_mb"] = Math.Round(stats.RssStartMb, 1),
                ["rss_end_mb"] = Math.Round(stats.RssEndMb, 1),
                ["rss_drift_pct"] = Math.Round(100 * (stats.RssEndMb - stats.RssStartMb) / Math.Max(1, stats.RssStartMb), 2),
                ["dropped_frames"] = stats.DroppedForInference,
                ["dropped_for_display"] = stats.DroppedForDisplay,
                ["frames_captured"] = stats.FramesCaptured,
                ["frame_ms_p50"] = Math.Round(stats.FrameMsP50, 2),
                ["words_hz"] = Math.Round(stats.WordsHz, 2),
                ["captions"] = stats.Captions,
                ["seconds"] = Math.Round(stats.Measured.TotalSeconds, 1),
                ["display_fps_target"] = pr.GetValue(fps),
                ["source"] = stats.Source,
                ["context"] = stats.Context,
                // One RSS sample every 30 s from the start (warm-up included), to see a trend rather than two points.
                ["rss_mb_every_30s"] = stats.Rss.Where((_, i) => i % 30 == 0).Select(r => Math.Round(r.Mb)).ToArray(),
                ["cores"] = Environment.ProcessorCount,
                ["torch_threads"] = TorchSharp.torch.get_num_threads(),
            };
            var table = new Table().AddColumns("metric", "value", "target");
            string T(string k) => k switch
            {
                "render_fps" => "≥ 30", "frame_ms_p99" => "≤ 50", "caption_hz" => "≥ 5", "rss_drift_pct" => "±5", _ => "",
            };
            foreach (var (k, v) in result) table.AddRow(k, Markup.Escape(v is double[] a ? string.Join(" ", a) : v.ToString() ?? ""), T(k));
            AnsiConsole.Write(table);
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return 0;
        });
    }
}
