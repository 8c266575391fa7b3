using System.CommandLine;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using OpenCvSharp;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench serve`: the server on loopback, driven over HTTP as clients drive it. Live streams
/// (1, 2, 4, 8 at once on the same looped clip) with batching (decode steps, reads and prompts across streams) on and off, the
/// configurations taking turns in a shuffled order on one loaded model; then a bounded chat load.
/// Reports caption rates, glass-to-caption latency, dropped frames and the process's RSS.
/// </summary>
public static class ServeBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var model = AppModel.ModelOption();
        var streams = new Option<string>("--streams") { Description = "stream counts to run, comma-separated", DefaultValueFactory = _ => "1,2,4,8" };
        var seconds = new Option<double>("--seconds") { Description = "seconds measured per configuration and round", DefaultValueFactory = _ => 20 };
        var warmup = new Option<double>("--warmup") { Description = "seconds each configuration runs before it is measured", DefaultValueFactory = _ => 6 };
        var rounds = new Option<int>("--rounds") { Description = "rounds over every configuration (each in a new shuffled order)", DefaultValueFactory = _ => 2 };
        var source = new Option<string>("--source") { Description = "the clip every stream loops (a file in media/)", DefaultValueFactory = _ => "demo.mp4" };
        var stride = new Option<int>("--stride") { Description = "each stream reads every Nth frame (1: every frame, so the model is the bottleneck)", DefaultValueFactory = _ => 1 };
        var gate = new Option<double>("--gate") { Description = "each stream's scene-change gate (0: every stride frame is read)", DefaultValueFactory = _ => 0 };
        var speed = new Option<double>("--speed") { Description = "play the clip this many times faster than its frame rate (its frames re-timed, none left out): above 1 the model, not the source, sets the pace", DefaultValueFactory = _ => 1 };
        var chats = new Option<int>("--chats") { Description = "chat completions in the chat load (0: skip it)", DefaultValueFactory = _ => 300 };
        var concurrency = new Option<int>("--concurrency") { Description = "chat completions in flight at once", DefaultValueFactory = _ => 8 };
        var drafts = new Option<int>("--draft-tokens") { Description = "also run every configuration with the streams drafting this many caption tokens a pass (0: only one token a pass)", DefaultValueFactory = _ => 0 };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("serve", "The server over loopback HTTP: live streams (1/2/4/8) with cross-stream batching on and off in shuffled turns " +
            "(caption rate per stream and in total, glass-to-caption p50/p95, dropped frames, RSS), then a chat load (p50/p95/p99, errors).")
            { json, model, streams, seconds, warmup, rounds, source, stride, gate, speed, chats, concurrency, drafts, device, dtype, weights };
        return cmd.WithAction(async (pr, ct) =>
        {
            var counts = pr.GetValue(streams)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, out var n) && n is >= 1 and <= 64 ? n : throw new UserError($"--streams takes counts from 1 to 64, got '{s}'")).Distinct().ToArray();
            if (counts.Length == 0) throw new UserError("--streams names no count");
            double measure = pr.GetValue(seconds), warm = pr.GetValue(warmup);
            if (!(measure > 0 && measure <= 3600) || !(warm >= 0 && warm <= 600)) throw new UserError("--seconds must be in (0, 3600] and --warmup in [0, 600]");
            int nRounds = pr.GetValue(rounds), nChats = pr.GetValue(chats), conc = pr.GetValue(concurrency), st = pr.GetValue(stride);
            if (nRounds is < 1 or > 20) throw new UserError($"--rounds must be 1..20, got {nRounds}");
            if (nChats is < 0 or > 100_000 || conc is < 1 or > 64) throw new UserError("--chats must be 0..100000 and --concurrency 1..64");
            if (st is < 1 or > 100) throw new UserError($"--stride must be 1..100, got {st}");
            double gt = pr.GetValue(gate);
            if (gt is not (>= 0 and <= 255)) throw new UserError($"--gate must be in [0, 255], got {gt}");
            var media = Cli.MediaFolder() ?? throw new UserError("media/ not found: the bench streams a clip from it");
            var clip = pr.GetValue(source)!;
            if (!File.Exists(Path.Combine(media, clip))) throw new UserError($"--source {clip}: no such file in {media}");
            int draftK = pr.GetValue(drafts);
            if (draftK is < 0 or > GenerationOptions.MaxDraftTokens) throw new UserError($"--draft-tokens must be 0..{GenerationOptions.MaxDraftTokens}, got {draftK}");
            double sp = pr.GetValue(speed);
            if (sp is not (>= 0.1 and <= 16)) throw new UserError($"--speed must be in [0.1, 16], got {sp}");
            using var faster = sp == 1 ? null : Retimed(media, clip, sp);
            if (faster is not null) media = faster.Folder;
            double fps;
            using (var probe = new VideoCapture(Path.Combine(media, clip))) fps = probe.Fps;

            using var engine = Model.Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights));
            var rssStart = Rss();
            var configs = counts.SelectMany(n => new[] { (n, true, 0), (n, false, 0) }.Concat(draftK > 0 ? new[] { (n, true, draftK), (n, false, draftK) } : [])).ToList();
            var runs = configs.ToDictionary(c => c, _ => new List<StreamRun>());
            var rng = new Random(23);
            var rssAfter = new List<double>();
            Console.Error.WriteLine($"bench serve: {clip} looped at {fps:0.#} fps, stride {st}, gate {gt}; streams {string.Join(",", counts)} × batching on/off{(draftK > 0 ? $" × drafts 0/{draftK}" : "")}; {nRounds} rounds of {warm:0} s warm-up + {measure:0} s each…");
            for (int r = 0; r < nRounds; r++)
                foreach (var (n, batching, d) in configs.OrderBy(_ => rng.Next()).ToList())
                {
                    ct.ThrowIfCancellationRequested();
                    var run = await RunStreams(engine, media, clip, st, gt, n, batching, d, warm, measure, ct);
                    runs[(n, batching, d)].Add(run);
                    rssAfter.Add(Rss());
                    Console.Error.WriteLine($"  round {r + 1}: {n} stream(s), batching {(batching ? "on " : "off")}, drafts {d}: {run.TotalHz:0.00} captions/s in total, " +
                        $"p95 {run.P95:0} ms, {run.Dropped} dropped, largest batch {run.LargestBatch}, RSS {rssAfter[^1]:0} MB");
                }

            var results = new List<Dictionary<string, object?>>();
            foreach (var c in configs)
            {
                var rs = runs[c];
                results.Add(new()
                {
                    ["streams"] = c.Item1, ["batching"] = c.Item2, ["draft_tokens"] = c.Item3,
                    ["caption_hz_total"] = Math.Round(rs.Average(x => x.TotalHz), 3),
                    ["caption_hz_per_stream"] = Math.Round(rs.Average(x => x.TotalHz) / c.Item1, 3),
                    ["caption_hz_per_stream_min"] = Math.Round(rs.Min(x => x.MinHz), 3),
                    ["glass_to_caption_p50_ms"] = Math.Round(rs.Average(x => x.P50), 1),
                    ["glass_to_caption_p95_ms"] = Math.Round(rs.Average(x => x.P95), 1),
                    ["dropped_frames"] = rs.Sum(x => x.Dropped),
                    ["frames_read"] = rs.Sum(x => x.Read),
                    ["mean_batch"] = Math.Round(rs.Average(x => x.MeanBatch), 2),
                    ["largest_batch"] = rs.Max(x => x.LargestBatch),
                    ["rounds_total_hz"] = rs.Select(x => Math.Round(x.TotalHz, 3)).ToArray(),
                });
            }
            double Hz(int n, bool b, int d = 0) => runs.TryGetValue((n, b, d), out var rs) ? rs.Average(x => x.TotalHz) : double.NaN;
            var result = new Dictionary<string, object?>
            {
                ["source"] = clip, ["source_fps"] = fps, ["speed"] = sp, ["stride"] = st, ["gate"] = gt, ["seconds_per_turn"] = measure, ["warmup_s"] = warm, ["rounds"] = nRounds,
                ["cores"] = Environment.ProcessorCount, ["torch_threads"] = TorchSharp.torch.get_num_threads(),
                ["configs"] = results,
            };
            int top = counts.Max();
            int four = counts.Contains(4) ? 4 : top;
            if (counts.Contains(1) && four > 1)
            {
                result[$"total_hz_{four}_over_1"] = Math.Round(Hz(four, true) / Hz(1, true), 3);
                result[$"total_hz_{four}_batching_over_off"] = Math.Round(Hz(four, true) / Hz(four, false), 3);
            }
            if (draftK > 0)
                foreach (var n in counts) result[$"total_hz_{n}_drafts_over_off"] = Math.Round(Hz(n, true, draftK) / Hz(n, true), 3);
            if (nChats > 0)
            {
                Console.Error.WriteLine($"  chat load: {nChats} completions at concurrency {conc}…");
                result["chat"] = await ChatLoad(engine, media, clip, nChats, conc, ct);
                rssAfter.Add(Rss());
            }
            result["rss_mb"] = new { start = Math.Round(rssStart), after_first = Math.Round(rssAfter[0]), end = Math.Round(rssAfter[^1]), max = Math.Round(rssAfter.Max()) };

            var table = new Table().AddColumns("streams", "batching", "drafts", "captions/s total", "per stream", "p50 ms", "p95 ms", "dropped", "mean batch");
            foreach (var row in results)
                table.AddRow($"{row["streams"]}", (bool)row["batching"]! ? "on" : "off", $"{row["draft_tokens"]}", $"{row["caption_hz_total"]:0.00}", $"{row["caption_hz_per_stream"]:0.00}",
                    $"{row["glass_to_caption_p50_ms"]:0}", $"{row["glass_to_caption_p95_ms"]:0}", $"{row["dropped_frames"]}", $"{row["mean_batch"]:0.00}");
            AnsiConsole.Write(table);
            foreach (var (k, v) in result)
                if (k.StartsWith("total_hz_") || k is "rss_mb" or "chat") Console.WriteLine($"{k}: {System.Text.Json.JsonSerializer.Serialize(v)}");
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return 0;
        });
    }

    sealed record StreamRun(double TotalHz, double MinHz, double P50, double P95, long Dropped, long Read, double MeanBatch, long LargestBatch);

    static double Rss() { using var p = Process.GetCurrentProcess(); return p.WorkingSet64 / 1e6; }

    /// <summary>A folder holding <paramref name="clip"/> with every frame kept and its rate × <paramref name="speed"/>; deleted when disposed.</summary>
    sealed class RetimedClip(string folder) : IDisposable
    {
        public string Folder { get; } = folder;
        public void Dispose() { try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } }
    }

    static RetimedClip Retimed(string media, string clip, double speed)
    {
        var folder = Directory.CreateTempSubdirectory("ra-bench-serve-").FullName;
        using var input = new VideoCapture(Path.Combine(media, clip));
        using var output = new VideoWriter(Path.Combine(folder, clip), FourCC.MP4V, input.Fps * speed, new OpenCvSharp.Size(input.FrameWidth, input.FrameHeight));
        using var frame = new Mat();
        while (input.Read(frame) && !frame.Empty()) output.Write(frame);
        return new RetimedClip(folder);
    }

    static async Task<StreamRun> RunStreams(Engine engine, string media, string clip, int stride, double gate, int n, bool batching, int drafts, double warm, double measure, CancellationToken ct)
    {
        using var scheduler = new ModelScheduler(engine, ownsEngine: false, batching: batching);
        using var chat = new SerialChatModel(scheduler);
        var options = new ServerOptions { Port = 0, MaxStreams = n, Streams = new StreamLimits { MediaFolder = media, Grace = TimeSpan.FromMinutes(10), DraftTokens = drafts } };
        await using var api = await ApiServer.StartAsync(options, chat, b => b.SetMinimumLevel(LogLevel.Warning), ct, new StreamBackend(scheduler));
        using var http = new HttpClient { BaseAddress = api.Url, Timeout = Timeout.InfiniteTimeSpan };
        var ids = new List<string>();
        for (int i = 0; i < n; i++)
        {
            var r = await http.PostAsJsonAsync("v1/streams", new { source = clip, loop = true, stride, gate }, ct);
            var body = await r.Content.ReadAsStringAsync(ct);
            if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"POST /v1/streams: {(int)r.StatusCode} {body}");
            ids.Add(JsonNode.Parse(body)!["id"]!.GetValue<string>());
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var clock = Stopwatch.StartNew();
        var segments = ids.Select(_ => new List<(double At, double LatencyMs)>()).ToArray();
        var readers = ids.Select((id, i) => Follow(http, id, segments[i], clock, stop.Token)).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(warm), ct);
        var before = await Task.WhenAll(ids.Select(id => Numbers(http, id, ct)));
        var batchBefore = scheduler.BatchCounters;
        double t0 = clock.Elapsed.TotalSeconds;
        await Task.Delay(TimeSpan.FromSeconds(measure), ct);
        double t1 = clock.Elapsed.TotalSeconds;
        var after = await Task.WhenAll(ids.Select(id => Numbers(http, id, ct)));
        var batchAfter = scheduler.BatchCounters;
        stop.Cancel();
        foreach (var id in ids) await http.DeleteAsync($"v1/streams/{id}", CancellationToken.None);
        try { await Task.WhenAll(readers); } catch (OperationCanceledException) { }

        var inWindow = segments.Select(s => { lock (s) return s.Where(x => x.At >= t0 && x.At < t1).ToList(); }).ToList();
        var rates = inWindow.Select(s => s.Count / (t1 - t0)).ToArray();
        var lat = inWindow.SelectMany(s => s.Select(x => x.LatencyMs)).Order().ToArray();
        long batches = batchAfter.Batches - batchBefore.Batches, steps = batchAfter.Steps - batchBefore.Steps;
        return new StreamRun(rates.Sum(), rates.Min(), BenchStats.Percentile(lat, 0.50), BenchStats.Percentile(lat, 0.95),
            after.Zip(before).Sum(p => p.First.Dropped - p.Second.Dropped), after.Zip(before).Sum(p => p.First.Read - p.Second.Read),
            batches == 0 ? (batching ? 0 : 1) : (double)steps / batches, batching ? batchAfter.Largest : 1);
    }

    static async Task<(long Dropped, long Read)> Numbers(HttpClient http, string id, CancellationToken ct)
    {
        var s = JsonNode.Parse(await http.GetStringAsync($"v1/streams/{id}", ct))!["stats"]!;
        return (s["dropped_frames"]!.GetValue<long>(), s["frames_read"]!.GetValue<long>());
    }

    /// <summary>Reads a stream's SSE events, keeping each segment's arrival time and its glass-to-caption latency.</summary>
    static async Task Follow(HttpClient http, string id, List<(double, double)> into, Stopwatch clock, CancellationToken ct)
    {
        using var r = await http.GetAsync($"v1/streams/{id}/events", HttpCompletionOption.ResponseHeadersRead, ct);
        r.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(ct));
        string? ev = null;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.StartsWith("event: ")) ev = line[7..];
            else if (line.StartsWith("data: ") && ev == "segment")
            {
                double latency = JsonNode.Parse(line[6..])?["latency_ms"]?.GetValue<double>() ?? double.NaN;
                lock (into) into.Add((clock.Elapsed.TotalSeconds, latency));
            }
            else if (line.Length == 0) ev = null;
        }
    }

    static async Task<object> ChatLoad(Engine engine, string media, string clip, int total, int concurrency, CancellationToken ct)
    {
        using var scheduler = new ModelScheduler(engine, ownsEngine: false);
        using var chat = new SerialChatModel(scheduler, queueCapacity: Math.Max(16, concurrency));
        await using var api = await ApiServer.StartAsync(new ServerOptions { Port = 0 }, chat, b => b.SetMinimumLevel(LogLevel.Warning), ct);
        using var http = new HttpClient { BaseAddress = api.Url, Timeout = TimeSpan.FromMinutes(5) };
        // A few different frames of the clip, as PNG data URIs.
        var images = new List<string>();
        using (var cap = new VideoCapture(Path.Combine(media, clip)))
        using (var frame = new Mat())
            for (int i = 0; i < 40 && cap.Read(frame) && !frame.Empty(); i++)
                if (i % 10 == 0) images.Add("data:image/png;base64," + Convert.ToBase64String(frame.ImEncode(".png")));
        if (images.Count == 0) throw new UserError($"--source {clip}: no frame could be read for the chat load");
        var latencies = new List<double>();
        int errors = 0, next = 0;
        var errorSamples = new List<string>();
        var wall = Stopwatch.StartNew();
        async Task Worker()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref next) - 1;
                if (i >= total) return;
                var body = new
                {
                    model = chat.Id, temperature = 0, max_tokens = 24,
                    messages = new object[] { new { role = "user", content = new object[] { new { type = "image_url", image_url = new { url = images[i % images.Count] } }, new { type = "text", text = "describe the scene ." } } } },
                };
                var sw = Stopwatch.StartNew();
                try
                {
                    using var r = await http.PostAsJsonAsync("v1/chat/completions", body, ct);
                    var text = await r.Content.ReadAsStringAsync(ct);
                    if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"{(int)r.StatusCode} {text}");
                    lock (latencies) latencies.Add(sw.Elapsed.TotalMilliseconds);
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    Interlocked.Increment(ref errors);
                    lock (errorSamples) if (errorSamples.Count < 3) errorSamples.Add(e.Message);
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(Worker, ct)));
        var sorted = latencies.Order().ToArray();
        return new
        {
            requests = total, concurrency, errors, error_samples = errorSamples,
            p50_ms = Math.Round(BenchStats.Percentile(sorted, 0.50), 1), p95_ms = Math.Round(BenchStats.Percentile(sorted, 0.95), 1), p99_ms = Math.Round(BenchStats.Percentile(sorted, 0.99), 1),
            completions_per_s = Math.Round(latencies.Count / wall.Elapsed.TotalSeconds, 2),
        };
    }
}
