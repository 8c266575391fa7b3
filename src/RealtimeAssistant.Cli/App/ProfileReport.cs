using RealtimeAssistant.Pipeline;
using ScottPlot;
using Spectre.Console;

namespace RealtimeAssistant.Cli.App;

/// <summary>
/// The latency report of a live run: a table of every stage (p50/p95/p99), PNG plots of the
/// per-stage time distributions and of latency and frame time over the run, and report.json.
/// </summary>
public static class ProfileReport
{
    public static readonly string[] Stages =
        [Profiler.Capture, Profiler.Preprocess, Profiler.Vision, Profiler.Prefill, Profiler.Decode, CaptionStages.CaptionTotal, Profiler.Render, Profiler.CaptionReady, Profiler.GlassToCaption, Profiler.GlassToFirstWord];

    public static void PrintTable(LiveStats s)
    {
        var table = new Table().Title("per-stage time (ms)").AddColumns("stage", "n", "mean", "p50", "p95", "p99", "max");
        foreach (var name in Stages)
            if (s.Profile.Stage(name) is { Count: > 0 } st)
                table.AddRow(name, st.Count.ToString(), F(st.Mean), F(st.P50), F(st.P95), F(st.P99), F(st.Max));
        table.AddRow("frame (render loop)", s.FrameTimesMs.Count.ToString(), F(s.FrameTimesMs.DefaultIfEmpty(0).Average()), F(s.FrameMsP50),
            F(LiveApp.Pct(s.FrameTimesMs.Order().ToArray(), 0.95)), F(s.FrameMsP99), F(s.FrameMsMax));
        AnsiConsole.Write(table);
        var counters = new Table().AddColumns("metric", "value");
        counters.AddRow("render fps", s.RenderFps.ToString("0.0"));
        counters.AddRow("captions/s", s.CaptionHz.ToString("0.00"));
        counters.AddRow("words/s", s.WordsHz.ToString("0.0"));
        counters.AddRow("frames captured", s.FramesCaptured.ToString());
        counters.AddRow("dropped for inference", s.DroppedForInference.ToString());
        counters.AddRow("dropped for display", s.DroppedForDisplay.ToString());
        if (s.Stream.Drafted > 0) counters.AddRow("drafted caption tokens taken", $"{s.Stream.DraftsTaken} of {s.Stream.Drafted} ({(double)s.Stream.DraftsTaken / s.Stream.Drafted:P0})");
        counters.AddRow("RSS start → end (MB)", $"{s.RssStartMb:0} → {s.RssEndMb:0} (max {s.RssMaxMb:0})");
        AnsiConsole.Write(counters);
        LiveApp.PrintColdStart(s);
        if (s.Profile.Stage(Profiler.GlassToCaption) is { Count: > 0 } l)
            AnsiConsole.MarkupLine($"glass-to-caption latency: p50 {l.P50:0.0} ms, p95 {l.P95:0.0} ms, p99 {l.P99:0.0} ms");
        if (s.Profile.Stage(Profiler.GlassToFirstWord) is { Count: > 0 } w)
            AnsiConsole.MarkupLine($"glass to the caption's first word on screen: p50 {w.P50:0.0} ms, p95 {w.P95:0.0} ms");
    }

    static string F(double v) => v.ToString("0.00");

    /// <summary>Writes stages.png, timeline.png and report.json into <paramref name="dir"/>; returns their paths.</summary>
    public static IReadOnlyList<string> Write(LiveStats s, string dir)
    {
        Directory.CreateDirectory(dir);
        var written = new List<string>();

        // Distributions: one empirical CDF per stage (x = ms, y = percentile), log-scaled x so 1 ms and 500 ms both read.
        var dist = new Plot();
        foreach (var name in Stages)
        {
            var values = s.Profiler.Series(name).Select(p => p.Ms).Where(v => v > 0).Order().ToArray();
            if (values.Length < 2) continue;
            var xs = values.Select(Math.Log10).ToArray();
            var ys = Enumerable.Range(0, values.Length).Select(i => 100.0 * i / (values.Length - 1)).ToArray();
            var line = dist.Add.Scatter(xs, ys);
            line.MarkerSize = 0;
            line.LineWidth = 2;
            line.LegendText = name;
        }
        dist.Title("Per-stage time distribution (CDF)");
        dist.XLabel("milliseconds (log scale)");
        dist.YLabel("percentile");
        dist.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [-1, 0, 1, 2, 3, 4], ["0.1", "1", "10", "100", "1000", "10000"]);
        dist.ShowLegend(Alignment.LowerRight);
        var stagesPng = Path.Combine(dir, "stages.png");
        dist.SavePng(stagesPng, 1000, 600);
        written.Add(stagesPng);

        // Over time: glass-to-caption latency of each caption and the render loop's frame times.
        var time = new Plot();
        var lat = s.Profiler.Series(Profiler.GlassToCaption);
        if (lat.Count > 0)
        {
            var sc = time.Add.Scatter(lat.Select(p => p.Seconds).ToArray(), lat.Select(p => p.Ms).ToArray());
            sc.LegendText = "glass-to-caption (ms)";
        }
        var render = s.Profiler.Series(Profiler.Render);
        if (render.Count > 0)
        {
            var sc = time.Add.Scatter(render.Select(p => p.Seconds).ToArray(), render.Select(p => p.Ms).ToArray());
            sc.LegendText = "render (ms per frame)";
            sc.MarkerSize = 2;
            sc.LineWidth = 0;
        }
        time.Title("Latency over the run");
        time.XLabel("seconds since start");
        time.YLabel("milliseconds");
        time.ShowLegend(Alignment.UpperRight);
        var timePng = Path.Combine(dir, "timeline.png");
        time.SavePng(timePng, 1000, 500);
        written.Add(timePng);

        var json = Path.Combine(dir, "report.json");
        File.WriteAllText(json, System.Text.Json.JsonSerializer.Serialize(Summary(s), Cli.JsonOptions));
        written.Add(json);
        return written;
    }

    public static Dictionary<string, object?> Summary(LiveStats s)
    {
        var stages = new Dictionary<string, object>();
        foreach (var name in Stages)
            if (s.Profile.Stage(name) is { Count: > 0 } st)
                stages[name] = new { n = st.Count, mean = R(st.Mean), p50 = R(st.P50), p95 = R(st.P95), p99 = R(st.P99), max = R(st.Max) };
        double? Latency(double v) => s.Latencies.Count > 0 ? R(v) : null; // null: no caption in the record, not 0 ms
        return new Dictionary<string, object?>
        {
            ["source"] = s.Source,
            ["context"] = s.Context,
            ["seconds"] = R(s.Measured.TotalSeconds),
            ["render_fps"] = R(s.RenderFps),
            ["frame_ms_p50"] = R(s.FrameMsP50),
            ["frame_ms_p99"] = R(s.FrameMsP99),
            ["frame_ms_max"] = R(s.FrameMsMax),
            ["captions"] = s.Captions,
            ["caption_hz"] = R(s.CaptionHz),
            ["words_hz"] = R(s.WordsHz),
            ["latency_ms_p50"] = Latency(s.LatencyP50),
            ["latency_ms_p95"] = Latency(s.LatencyP95),
            ["latency_ms_p99"] = Latency(s.LatencyP99),
            ["frames_captured"] = s.FramesCaptured,
            ["dropped_frames"] = s.DroppedForInference,
            ["dropped_for_display"] = s.DroppedForDisplay,
            ["rss_start_mb"] = R(s.RssStartMb),
            ["rss_end_mb"] = R(s.RssEndMb),
            ["rss_max_mb"] = R(s.RssMaxMb),
            // The cold start, outside the measured record: when the first caption was on screen and its glass-to-caption.
            ["first_caption_s"] = s.FirstCaption is { } f ? R(f.AtSeconds) : null,
            ["first_caption_latency_ms"] = s.FirstCaption is { } g ? R(g.LatencyMs) : null,
            // Captions kept out of the record; 0 with warmup_ended false: the run ended during its warm-up, and the record is the whole run.
            ["warmup_captions"] = s.WarmupCaptions,
            ["warmup_ended"] = s.WarmupUnfinished is null,
            ["stages_ms"] = stages,
        };
    }

    static double R(double v) => Math.Round(v, 2);
}
