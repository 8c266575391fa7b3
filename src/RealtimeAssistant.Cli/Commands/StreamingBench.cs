using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench streaming`: GPE against re-encoding and interleaved positions, in one process, on the
/// demo model. Latency per update (one new frame + one caption) at frames 10, 100 and 1000 with a
/// W-frame window, and caption F1 on held-out clips.
/// </summary>
public static class StreamingBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write results as JSON (methods[].method, update_ms_at, f1)");
        var model = AppModel.ModelOption();
        var window = new Option<int>("--window") { DefaultValueFactory = _ => 32, Description = "frames kept for the latency run" };
        var qualityWindow = new Option<int>("--quality-window") { DefaultValueFactory = _ => 2, Description = "frames kept for the F1 run (the demo model was trained on 1–2 frame windows)" };
        var at = new Option<int[]>("--at") { DefaultValueFactory = _ => new[] { 10, 100, 1000 }, AllowMultipleArgumentsPerToken = true };
        var clips = new Option<int>("--clips") { DefaultValueFactory = _ => 12, Description = "held-out clips for F1" };
        var tokens = new Option<int>("--caption-tokens") { DefaultValueFactory = _ => 16, Description = "tokens per caption in the latency run" };
        var cmd = new Command("streaming", "Streaming with group positions vs re-encoding vs interleaved: update latency and caption F1.")
            { json, model, window, qualityWindow, at, clips, tokens };
        return cmd.WithAction((pr, ct) =>
        {
            var checkpoints = pr.GetValue(at)!.OrderBy(x => x).ToArray();
            if (checkpoints.Length == 0 || checkpoints[0] < 1) throw new UserError("--at takes frame numbers ≥ 1");
            using var engine = LlavaEngine.Load(AppModel.Resolve(pr.GetValue(model)));
            var results = new List<Dictionary<string, object>>();
            foreach (var method in new[] { "gpe", "re-encoding", "interleaved" })
            {
                ct.ThrowIfCancellationRequested();
                var lat = Latency(engine, method, pr.GetValue(window), checkpoints, pr.GetValue(tokens), ct);
                var f1 = Quality(engine, method, pr.GetValue(qualityWindow), pr.GetValue(clips), ct);
                results.Add(new() { ["method"] = method, ["update_ms_at"] = lat.ToDictionary(kv => kv.Key.ToString(), kv => (object)Math.Round(kv.Value, 2)), ["f1"] = Math.Round(f1, 4) });
            }
            var table = new Table().AddColumn("method");
            foreach (var c in checkpoints) table.AddColumn($"update ms @ frame {c}");
            table.AddColumn($"F1 (window {pr.GetValue(qualityWindow)})");
            foreach (var r in results)
            {
                var lat = (Dictionary<string, object>)r["update_ms_at"];
                table.AddRow(new[] { (string)r["method"] }.Concat(checkpoints.Select(c => lat[c.ToString()].ToString()!)).Append(r["f1"].ToString()!).ToArray());
            }
            AnsiConsole.Write(table);
            var gpe = (Dictionary<string, object>)results[0]["update_ms_at"];
            var re = (Dictionary<string, object>)results[1]["update_ms_at"];
            double G(Dictionary<string, object> d, int f) => Convert.ToDouble(d[f.ToString()]);
            var summary = new Dictionary<string, object>
            {
                ["gpe_growth_last_over_first"] = Math.Round(G(gpe, checkpoints[^1]) / G(gpe, checkpoints[0]), 3),
                ["reencoding_over_gpe_at_last"] = Math.Round(G(re, checkpoints[^1]) / G(gpe, checkpoints[^1]), 2),
                ["window"] = pr.GetValue(window),
                ["f1_gpe_minus_reencoding"] = Math.Round(Convert.ToDouble(results[0]["f1"]) - Convert.ToDouble(results[1]["f1"]), 4),
            };
            foreach (var (k, v) in summary) AnsiConsole.MarkupLine($"[grey]{k}[/] = {v}");
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, new { methods = results, summary });
            return Task.FromResult(0);
        });
    }

    static IStreamingCaptioner Make(LlavaEngine e, string method, StreamingOptions o) => method switch
    {
        "gpe" => new StreamingSession(e, o),
        "re-encoding" => new ReEncodingSession(e, o),
        _ => new InterleavedSession(e, o),
    };

    /// <summary>Median ms of (append one frame + write one caption) around each checkpoint frame.</summary>
    static Dictionary<int, double> Latency(LlavaEngine e, string method, int window, int[] at, int captionTokens, CancellationToken ct)
    {
        using var _ = torch.no_grad();
        var clip = ClipGenerator.Generate(7, 8, 15);
        using var pre = new ImagePreprocessor(e.Preprocessor, e.Device, e.DType);
        // A pool of real encoded frames, reused in turn: content does not change the cost.
        var pool = Enumerable.Range(0, 16).Select(i =>
        {
            using var img = clip.Render(i * 5 % clip.FrameCount, 64, 64);
            return e.Model.EncodeImages(pre.Process(img)).DetachFromDisposeScope();
        }).ToArray();
        var options = new StreamingOptions
        {
            WindowFrames = window,
            Generation = new GenerationOptions { MaxNewTokens = captionTokens, StopTokens = Array.Empty<int>() },
        };
        using var s = Make(e, method, options);
        var result = new Dictionary<int, double>();
        const int samples = 3;
        for (int frame = 1, next = 0; next < at.Length; frame++)
        {
            ct.ThrowIfCancellationRequested();
            bool measure = frame >= at[next] && frame < at[next] + samples;
            var sw = Stopwatch.StartNew();
            s.AppendFrame(pool[frame % pool.Length]);
            if (measure)
            {
                foreach (var __ in s.Write()) { }
                var ms = sw.Elapsed.TotalMilliseconds;
                result[at[next]] = result.TryGetValue(at[next], out var acc) ? acc + ms : ms;
                if (frame == at[next] + samples - 1) { result[at[next]] /= samples; next++; }
            }
        }
        foreach (var t in pool) t.Dispose();
        return result;
    }

    /// <summary>Caption F1 on held-out clips: frames every 5 video frames, a caption after each, scored against the scene.</summary>
    static double Quality(LlavaEngine e, string method, int window, int clips, CancellationToken ct)
    {
        using var _ = torch.no_grad();
        using var pre = new ImagePreprocessor(e.Preprocessor, e.Device, e.DType);
        FactScore total = default;
        for (int c = 0; c < clips; c++)
        {
            var clip = ClipGenerator.Generate(1_000_001 + 2 * c, 6, 15); // odd seeds: never trained on
            using var s = Make(e, method, new StreamingOptions { WindowFrames = window });
            for (int f = 0; f + 5 < clip.FrameCount; f += 5)
            {
                ct.ThrowIfCancellationRequested();
                using (var img = clip.Render(f, 64, 64))
                using (var feats = e.Model.EncodeImages(pre.Process(img)))
                    s.AppendFrame(feats);
                if (f < 5 * (window - 1) || f % 15 != 0) continue; // a caption once per second, once the window is full
                var text = string.Concat(s.Write().Select(ev => ev.Text));
                total += AttributeScorer.Score(text, clip.SceneAt(f), withMotion: window > 1);
            }
        }
        return total.F1;
    }
}
