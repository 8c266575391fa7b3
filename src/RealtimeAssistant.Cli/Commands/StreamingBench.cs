using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench streaming`: GPE against re-encoding and interleaved positions, in one process, on the
/// demo model, at frames 10, 100 and 1000 with a W-frame window: the update latency (a new frame
/// arrives → the model's state holds it and the first caption token is out) and the whole
/// caption's latency; and caption F1 on held-out clips.
/// </summary>
public static class StreamingBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write results as JSON (methods[].method, update_ms_at, f1)");
        var model = AppModel.ModelOption();
        var window = new Option<int>("--window") { DefaultValueFactory = _ => 32, Description = "frames kept for the latency run" };
        var qualityWindow = new Option<int>("--quality-window") { DefaultValueFactory = _ => 2, Description = "frames kept for the F1 run (the demo model trains on windows of 1–4 frames)" };
        var at = new Option<int[]>("--at") { DefaultValueFactory = _ => new[] { 10, 100, 1000 }, AllowMultipleArgumentsPerToken = true };
        // 12 clips moved F1 by ±0.03 between runs of the same model (v15 at W 4: −0.027 on 12, −0.002 on 48).
        var clips = new Option<int>("--clips") { DefaultValueFactory = _ => 48, Description = "held-out clips for F1" };
        var tokens = new Option<int>("--caption-tokens") { DefaultValueFactory = _ => 16, Description = "tokens per caption in the latency run" };
        var frameBand = Cli.FrameBandOption();
        var longClips = new Option<int>("--long-clips") { DefaultValueFactory = _ => 8, Description = "held-out clips long enough to fill --window, for F1 at the window the latency is measured at (0: skip)" };
        var prune = new Option<string?>("--prune-config") { Description = "GPE prunes each frame as it enters with these settings (JSON, as `ra analyze` writes)" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var family = BenchModels.Option();
        var windows = new Option<int[]>("--windows") { DefaultValueFactory = _ => new[] { 2, 4, 8 }, AllowMultipleArgumentsPerToken = true, Description = "with --family: the window sizes (frames) the update latency is measured at, each once the window is full" };
        var frameSize = new Option<int>("--frame-size") { DefaultValueFactory = _ => 224, Description = "with --family: the stream's frames are this many pixels a side" };
        var cmd = new Command("streaming", "Streaming with group positions vs re-encoding vs interleaved: update latency and caption F1.")
            { json, model, window, qualityWindow, at, clips, tokens, prune, frameBand, longClips, device, dtype, weights, family, windows, frameSize };
        return cmd.WithAction((pr, ct) =>
        {
            var checkpoints = pr.GetValue(at)!.Distinct().OrderBy(x => x).ToArray();
            if (checkpoints.Length == 0 || checkpoints[0] < 1) throw new UserError("--at takes frame numbers ≥ 1");
            if (pr.GetValue(clips) is < 1 or > 10_000) throw new UserError($"--clips must be 1..10000, got {pr.GetValue(clips)}");
            // A clip is 6 s at 15 fps, read every 5th frame: past 16 frames no caption has a full window.
            if (pr.GetValue(qualityWindow) is < 1 or > 16) throw new UserError($"--quality-window must be 1..16 frames, got {pr.GetValue(qualityWindow)}");
            if (pr.GetValue(window) is < 1 or > 4096) throw new UserError($"--window must be 1..4096 frames, got {pr.GetValue(window)}");
            if (pr.GetValue(family) is { } fam)
            {
                if (pr.GetValue(model) is not null) throw new UserError("bench streaming: give --model or --family, not both");
                var ws = pr.GetValue(windows)!.Distinct().OrderBy(x => x).ToArray();
                if (ws.Length == 0 || ws[0] < 1 || ws[^1] > 256) throw new UserError("--windows takes window sizes of 1..256 frames");
                if (pr.GetValue(frameSize) is < 16 or > 2048) throw new UserError($"--frame-size must be 16..2048 pixels, got {pr.GetValue(frameSize)}");
                var dir = BenchModels.Resolve(fam, Console.Error.WriteLine);
                using var fe = Engine.Load(dir, Cli.EngineOptions(pr, device, dtype, weights));
                return Task.FromResult(FamilyLatency(fe, fam, ws, pr.GetValue(frameSize), pr.GetValue(tokens), pr.GetValue(json), ct));
            }
            foreach (var o in new Option[] { windows, frameSize })
                if (Cli.IsExplicit(pr, o)) throw new UserError($"{o.Name} applies with --family (the update latency at a real checkpoint's shapes); without it, use --window and --at");
            if (pr.GetValue(longClips) is < 0 or > 10_000) throw new UserError($"--long-clips must be 0..10000, got {pr.GetValue(longClips)}");
            int? band = Cli.FrameBand(pr.GetValue(frameBand), pr.GetValue(window));
            int? qualityBand = Cli.FrameBand(pr.GetValue(frameBand), pr.GetValue(qualityWindow)) is { } qb ? Math.Min(qb, pr.GetValue(qualityWindow)) : null;
            using var engine = Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights));
            var results = new List<Dictionary<string, object>>();
            var pruning = pr.GetValue(prune) is { } pf ? PruningConfig.Load(pf) : null;
            Dictionary<string, object> Ms(Dictionary<int, (double Update, double Caption)> lat, bool full) =>
                lat.ToDictionary(kv => kv.Key.ToString(), kv => (object)Math.Round(full ? kv.Value.Caption : kv.Value.Update, 2));
            var methods = new[] { "gpe", "re-encoding", "interleaved" };
            int gpeBand;
            using (var resolved = new GpeSession(engine, new StreamingOptions { WindowFrames = pr.GetValue(window), FrameBand = band, Pruning = pruning }))
                gpeBand = resolved.FrameBand; // the band the GPE runs use: the model's unless --frame-band says
            // Every method and checkpoint takes turns, one update each in a fresh shuffled order per
            // round, so a slow spell of this shared machine lands on all of them alike.
            var latency = Latency(engine, methods, pr.GetValue(window), checkpoints, pr.GetValue(tokens), pruning, band, ct);
            var perClip = new Dictionary<string, double[]>();
            var perLongClip = new Dictionary<string, double[]>();
            int W = pr.GetValue(window), nLong = pr.GetValue(longClips);
            foreach (var method in methods)
            {
                ct.ThrowIfCancellationRequested();
                var lat = latency[method];
                var (f1, clipF1) = Quality(engine, method, pr.GetValue(qualityWindow), pr.GetValue(clips), 6, method == "gpe" ? pruning : null,
                    method == "gpe" ? qualityBand : null, ct);
                perClip[method] = clipF1;
                var row = new Dictionary<string, object> { ["method"] = method, ["update_ms_at"] = Ms(lat, false), ["caption_ms_at"] = Ms(lat, true), ["f1"] = Math.Round(f1, 4) };
                if (nLong > 0)
                {
                    // F1 at the window the latency is measured at: clips long enough to fill it (a frame every 5 video frames at 15 fps).
                    var (f1w, longF1) = Quality(engine, method, W, nLong, Math.Max(12, W / 3.0 + 6), method == "gpe" ? pruning : null, method == "gpe" ? band : null, ct);
                    perLongClip[method] = longF1;
                    row["f1_at_window"] = Math.Round(f1w, 4);
                }
                results.Add(row);
            }
            // The F1 gap's noise: the standard error of the per-clip differences (same clips for both).
            double se = BenchStats.PairedSe(perClip["gpe"], perClip["re-encoding"]);
            var table = new Table().AddColumn("method");
            foreach (var c in checkpoints) table.AddColumn($"update ms @ {c}");
            foreach (var c in checkpoints) table.AddColumn($"+caption ms @ {c}");
            table.AddColumn($"F1 (window {pr.GetValue(qualityWindow)})");
            if (nLong > 0) table.AddColumn($"F1 (window {W})");
            foreach (var r in results)
            {
                var u = (Dictionary<string, object>)r["update_ms_at"];
                var c = (Dictionary<string, object>)r["caption_ms_at"];
                table.AddRow(new[] { (string)r["method"] }.Concat(checkpoints.Select(x => u[x.ToString()].ToString()!))
                    .Concat(checkpoints.Select(x => c[x.ToString()].ToString()!)).Append(r["f1"].ToString()!)
                    .Concat(nLong > 0 ? new[] { r["f1_at_window"].ToString()! } : Array.Empty<string>()).ToArray());
            }
            AnsiConsole.Write(table);
            double G(int method, string key, int f) => Convert.ToDouble(((Dictionary<string, object>)results[method][key])[f.ToString()]);
            int last = checkpoints[^1], firstAt = checkpoints[0];
            // Until frame W the window is still filling and every update attends fewer frames; from
            // then on an update's cost must not move. Both growths are reported, so neither hides the other.
            int? firstFull = checkpoints.Where(c => c >= pr.GetValue(window)).Cast<int?>().FirstOrDefault();
            var summary = new Dictionary<string, object>
            {
                ["window"] = pr.GetValue(window),
                ["caption_tokens"] = pr.GetValue(tokens),
                ["gpe_pruning"] = pruning is null ? "off" : pruning.ToJson().ReplaceLineEndings(" "),
                ["gpe_frame_band"] = gpeBand,
                ["quality_window"] = pr.GetValue(qualityWindow),
                ["clips"] = pr.GetValue(clips),
                ["gpe_growth_last_over_first"] = Math.Round(G(0, "update_ms_at", last) / G(0, "update_ms_at", firstAt), 3),
                ["gpe_growth_last_over_first_full_window"] = firstFull is { } ff && ff < last
                    ? Math.Round(G(0, "update_ms_at", last) / G(0, "update_ms_at", ff), 3) : "n/a",
                ["reencoding_over_gpe_at_last"] = Math.Round(G(1, "update_ms_at", last) / G(0, "update_ms_at", last), 2),
                ["gpe_caption_growth_last_over_first"] = Math.Round(G(0, "caption_ms_at", last) / G(0, "caption_ms_at", firstAt), 3),
                ["reencoding_over_gpe_caption_at_last"] = Math.Round(G(1, "caption_ms_at", last) / G(0, "caption_ms_at", last), 2),
                ["f1_gpe_minus_reencoding"] = Math.Round(Convert.ToDouble(results[0]["f1"]) - Convert.ToDouble(results[1]["f1"]), 4),
                ["f1_gpe_minus_reencoding_se"] = double.IsNaN(se) ? "n/a (one clip)" : Math.Round(se, 4),
                ["long_clips"] = nLong,
            };
            if (nLong > 0)
            {
                summary["f1_at_window_gpe_minus_reencoding"] = Math.Round(Convert.ToDouble(results[0]["f1_at_window"]) - Convert.ToDouble(results[1]["f1_at_window"]), 4);
                var seW = BenchStats.PairedSe(perLongClip["gpe"], perLongClip["re-encoding"]);
                summary["f1_at_window_gpe_minus_reencoding_se"] = double.IsNaN(seW) ? "n/a (one clip)" : Math.Round(seW, 4);
            }
            foreach (var (k, v) in summary) AnsiConsole.MarkupLine($"[grey]{k}[/] = {Markup.Escape(v.ToString()!)}");
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { methods = results, summary });
            return Task.FromResult(0);
        });
    }

    /// <summary>
    /// --family: GPE against re-encoding at each window size, on random weights at a real
    /// checkpoint's shapes. F1 is not measured: random weights caption nothing.
    /// </summary>
    static int FamilyLatency(Engine e, string family, int[] windows, int frameSize, int captionTokens, string? json, CancellationToken ct)
    {
        var methods = new[] { "gpe", "re-encoding" };
        var rows = new List<Dictionary<string, object>>();
        var table = new Table().AddColumns("window (frames)", "tokens / frame", "gpe update ms", "re-encoding update ms", "re-encoding / gpe", "gpe +caption ms", "re-encoding +caption ms");
        int perFrame;
        using (var probe = new OpenCvSharp.Mat(frameSize, frameSize, OpenCvSharp.MatType.CV_8UC3))
            perFrame = e.Model.RunLength(probe, ImageUse.VideoFrame);
        // One untimed round first, so the first window measured does not pay the warm-up.
        Latency(e, methods, windows[0], new[] { windows[0] + 1 }, captionTokens, null, null, ct, frameSize, pool: 1, samples: 1);
        foreach (var w in windows)
        {
            var lat = Latency(e, methods, w, new[] { w + 1 }, captionTokens, null, null, ct, frameSize, pool: 4, samples: 5);
            var (g, r) = (lat["gpe"][w + 1], lat["re-encoding"][w + 1]);
            rows.Add(new Dictionary<string, object>
            {
                ["window"] = w, ["gpe_update_ms"] = Math.Round(g.Update, 1), ["reencoding_update_ms"] = Math.Round(r.Update, 1),
                ["reencoding_over_gpe"] = Math.Round(r.Update / g.Update, 2),
                ["gpe_caption_ms"] = Math.Round(g.Caption, 1), ["reencoding_caption_ms"] = Math.Round(r.Caption, 1),
            });
            table.AddRow(w.ToString(), perFrame.ToString(), g.Update.ToString("0.#"), r.Update.ToString("0.#"), (r.Update / g.Update).ToString("0.00"),
                g.Caption.ToString("0.#"), r.Caption.ToString("0.#"));
        }
        AnsiConsole.Write(table);
        var summary = new Dictionary<string, object>
        {
            ["family"] = family, ["model"] = $"{e.Model.ModelType}, {e.Text.NumHiddenLayers} layers, hidden {e.Text.HiddenSize}",
            ["weights"] = e.WeightsName, ["frame_size"] = frameSize, ["tokens_per_frame"] = perFrame, ["caption_tokens"] = captionTokens,
            ["f1"] = "n/a: random weights (F1 needs a trained model; see `ra bench streaming --model`)",
        };
        foreach (var (k, v) in summary) AnsiConsole.MarkupLine($"[grey]{k}[/] = {Markup.Escape(v.ToString()!)}");
        if (json is { } path) Cli.WriteJson(path, new { windows = rows, summary });
        return 0;
    }

    static ICaptionSession Make(Engine e, string method, StreamingOptions o) => method switch
    {
        "gpe" => new GpeSession(e, o),
        "re-encoding" => new ReEncodingSession(e, o),
        _ => new InterleavedSession(e, o),
    };

    /// <summary>
    /// At each checkpoint frame, for each method, the median over a few updates of: a new frame
    /// arrives → the first caption token is out (the state update plus the first decode step), and
    /// → the whole caption is out. One session per method and checkpoint is first read up to its
    /// frame; then all of them take turns, one update each in a fresh shuffled order per round, so
    /// a slow spell of this shared machine lands on every method and checkpoint alike (a method
    /// timed alone, or always after the same neighbour, moved by 10–20% between runs).
    /// </summary>
    static Dictionary<string, Dictionary<int, (double Update, double Caption)>> Latency(Engine e, string[] methods, int window, int[] at, int captionTokens,
        PruningConfig? pruning, int? frameBand, CancellationToken ct, int frameSize = 64, int pool = 16, int samples = 9)
    {
        using var _ = torch.inference_mode();
        var clip = ClipGenerator.Generate(7, 8, 15);
        // A pool of real encoded frames, reused in turn: content does not change the cost.
        var encoded = Enumerable.Range(0, pool).Select(i =>
        {
            using var img = clip.Render(i * 5 % clip.FrameCount, frameSize, frameSize);
            return e.Model.EncodeOne(img, ImageUse.VideoFrame);
        }).ToArray();
        StreamingOptions Options(string method) => new()
        {
            WindowFrames = window, Pruning = method == "gpe" ? pruning : null, FrameBand = method == "gpe" ? frameBand : null,
            Generation = new GenerationOptions { MaxNewTokens = captionTokens, StopTokens = Array.Empty<int>() },
        };
        var runs = methods.SelectMany(m => at.Select(c => (Method: m, At: c))).ToArray();
        var sessions = runs.Select(r => Make(e, r.Method, Options(r.Method))).ToArray();
        try
        {
            var frame = new long[runs.Length];
            for (int i = 0; i < runs.Length; i++)
                for (; frame[i] < runs[i].At - 1; frame[i]++)
                {
                    ct.ThrowIfCancellationRequested();
                    sessions[i].Read(encoded[frame[i] % encoded.Length].Clone());
                }
            var update = runs.Select(_ => new List<double>()).ToArray();
            var caption = runs.Select(_ => new List<double>()).ToArray();
            var rng = new Random(17);
            for (int j = 0; j < samples; j++)
                foreach (int i in Enumerable.Range(0, runs.Length).OrderBy(_ => rng.Next()).ToArray())
                {
                    ct.ThrowIfCancellationRequested();
                    var features = encoded[frame[i]++ % encoded.Length].Clone();
                    var sw = Stopwatch.StartNew();
                    double first = double.NaN;
                    foreach (var ev in sessions[i].ReadAndWrite(features))
                        if (double.IsNaN(first) && ev.Id >= 0) first = sw.Elapsed.TotalMilliseconds;
                    update[i].Add(first);
                    caption[i].Add(sw.Elapsed.TotalMilliseconds);
                }
            return methods.ToDictionary(m => m, m => Enumerable.Range(0, runs.Length).Where(i => runs[i].Method == m)
                .ToDictionary(i => runs[i].At, i => (Median(update[i]), Median(caption[i]))));
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
            foreach (var t in encoded) t.Dispose();
        }
    }

    static double Median(List<double> v) { var s = v.OrderBy(x => x).ToList(); return s[s.Count / 2]; }

    /// <summary>Caption attribute F1 (as `ra eval` scores) on held-out clips: frames every 5 video frames, a caption once a second, scored against the scene.</summary>
    /// <returns>F1 over all captions, and each clip's own.</returns>
    static (double F1, double[] PerClip) Quality(Engine e, string method, int window, int clips, double seconds, PruningConfig? pruning, int? frameBand, CancellationToken ct)
    {
        using var _ = torch.inference_mode();
        FactScore total = default;
        var perClip = new double[clips];
        for (int c = 0; c < clips; c++)
        {
            FactScore clipScore = default;
            var clip = ClipGenerator.Generate(ClipGenerator.HeldOutSeed + 2 * c, seconds, 15);
            using var s = Make(e, method, new StreamingOptions { WindowFrames = window, Pruning = pruning, FrameBand = frameBand });
            for (int f = 0; f + 5 < clip.FrameCount; f += 5)
            {
                ct.ThrowIfCancellationRequested();
                using (var img = clip.Render(f, 64, 64))
                    s.Read(e.Model.EncodeOne(img, ImageUse.VideoFrame));
                if (f < 5 * (window - 1) || f % 15 != 0) continue; // a caption once per second, once the window is full
                var text = string.Concat(s.Write().Select(ev => ev.Text));
                clipScore += AttributeScorer.ScoreByAttribute(text, CaptionGrammar.Canonical(clip.SceneAt(f), withMotion: window > 1));
            }
            total += clipScore;
            perClip[c] = clipScore.F1;
        }
        return (total.F1, perClip);
    }
}
