using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Grains;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench cluster`: `ra serve --cluster` silo processes on loopback with the simulated model
/// (one simulated device per silo) and a Redis of its own. Scaling: silos × streams, each
/// configuration measured over the same window: segments per second in total (as written to the
/// log), glass-to-caption at the reader (a frame's capture to its segment arriving at a follower
/// of the log, as a gateway follows it), streams per silo. Failover: one silo of several SIGKILLed
/// mid-run: how long each of its streams takes to write again on a survivor, and every log checked
/// for gaps and every reader for duplicates.
/// </summary>
public static class ClusterBench
{
    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON to this file ('-' for stdout)");
        var silos = new Option<string>("--silos") { Description = "silo counts to measure", DefaultValueFactory = _ => "1,2,4,8" };
        var streams = new Option<string>("--streams") { Description = "stream counts to measure at each silo count", DefaultValueFactory = _ => "8,16,32,64" };
        var simulate = new Option<string>("--simulate-model-ms") { Description = "the stand-in's READ[,TOKEN] ms", DefaultValueFactory = _ => "20,2" };
        var fps = new Option<int>("--fps") { Description = "each generated clip's frame rate (every frame is read: stride 1)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<double>("--warmup") { Description = "seconds each configuration runs before it is measured", DefaultValueFactory = _ => 6 };
        var seconds = new Option<double>("--seconds") { Description = "seconds each configuration is measured", DefaultValueFactory = _ => 15 };
        var failSilos = new Option<int>("--failover-silos") { Description = "silos in the failover run (one is killed)", DefaultValueFactory = _ => 4 };
        var failStreams = new Option<int>("--failover-streams") { Description = "streams in the failover run", DefaultValueFactory = _ => 32 };
        var maxStreamsPerCore = new Option<int>("--max-streams-per-core") { Description = "skip configurations with more streams than this per CPU core (0: none skipped)", DefaultValueFactory = _ => 0 };
        var redisUrl = new Option<string?>("--redis") { Description = "use this Redis (redis://HOST:PORT) instead of starting redis-server on a free loopback port" };
        var noScaling = new Option<bool>("--no-scaling") { Description = "only the failover run" };
        var noFailover = new Option<bool>("--no-failover") { Description = "only the scaling runs" };
        var cmd = new Command("cluster", "A cluster of ra serve silos on loopback with the simulated model: throughput and glass-to-caption at 1–8 silos × 8–64 streams, and failover when a silo is killed.")
            { json, silos, streams, simulate, fps, warmup, seconds, failSilos, failStreams, maxStreamsPerCore, redisUrl, noScaling, noFailover };
        return cmd.WithAction(async (pr, ct) =>
        {
            var o = new Settings(Ints(pr.GetValue(silos)!, "--silos", 1, 32), Ints(pr.GetValue(streams)!, "--streams", 1, 1024), Streaming.SimulatedModel.Parse(pr.GetValue(simulate)!),
                pr.GetValue(fps), pr.GetValue(warmup), pr.GetValue(seconds), pr.GetValue(failSilos), pr.GetValue(failStreams), pr.GetValue(maxStreamsPerCore));
            if (o.Fps is < 1 or > 60) throw new UserError("--fps must be 1..60");
            if (!(o.Warmup >= 0 && o.Warmup <= 600 && o.Seconds >= 1 && o.Seconds <= 3600)) throw new UserError("--warmup must be 0..600 s and --seconds 1..3600 s");
            if (o.FailSilos < 2 || o.FailStreams < 1) throw new UserError("the failover run needs --failover-silos ≥ 2 and --failover-streams ≥ 1");
            await using var redis = pr.GetValue(redisUrl) is { } u ? LocalRedis.Existing(u) : await LocalRedis.StartAsync();
            AnsiConsole.MarkupLine($"[grey]Redis {Markup.Escape(redis.Url)} · simulated model {Markup.Escape(o.Model.Version)} · clips {o.Fps} fps, every frame read · {Environment.ProcessorCount} cores[/]");
            var scaling = new List<Dictionary<string, object?>>();
            if (!pr.GetValue(noScaling))
                foreach (var n in o.Silos)
                    scaling.AddRange(await Scaling(o, redis.Url, n, ct));
            Dictionary<string, object?>? failover = pr.GetValue(noFailover) ? null : await Failover(o, redis.Url, ct);
            var summary = Summary(o, scaling, failover);
            Print(scaling, failover, summary);
            if (pr.GetValue(json) is { } path)
                Cli.WriteJson(path, new
                {
                    command = "ra bench cluster " + string.Join(' ', Environment.GetCommandLineArgs().Skip(3)),
                    machine = new { cores = Environment.ProcessorCount, load_average = LoadAverage() },
                    simulated = new { read_ms = o.Model.ReadMs, token_ms = o.Model.TokenMs, tokens = o.Model.Tokens },
                    source = new { kind = "synthetic", size = Size, fps = o.Fps, stride = 1 },
                    warmup_s = o.Warmup, window_s = o.Seconds, scaling, failover, summary,
                });
            return 0;
        });
    }

    sealed record Settings(int[] Silos, int[] Streams, Streaming.SimulatedModel Model, int Fps, double Warmup, double Seconds, int FailSilos, int FailStreams, int MaxStreamsPerCore);

    const int Size = 48;

    static int[] Ints(string text, string flag, int min, int max)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = new List<int>();
        foreach (var p in parts)
            values.Add(int.TryParse(p, out var v) && v >= min && v <= max ? v : throw new UserError($"{flag} takes numbers {min}..{max} separated by commas, got '{text}'"));
        return values.Count > 0 ? values.Distinct().Order().ToArray() : throw new UserError($"{flag} needs at least one number");
    }

    static StreamDefinition Clip(int seed, int fps) => new() { Source = $"synthetic:seed={seed},size={Size},fps={fps}", Stride = 1, Policy = "every:1", Gate = 0 };

    // ---- scaling ----

    static async Task<List<Dictionary<string, object?>>> Scaling(Settings o, string redisUrl, int silos, CancellationToken ct)
    {
        var rows = new List<Dictionary<string, object?>>();
        var clusterId = $"bench-{silos}-{Guid.NewGuid().ToString("N")[..6]}";
        AnsiConsole.MarkupLine($"[grey]{silos} silo(s): starting…[/]");
        await using var fleet = await SiloFleet.StartAsync(redisUrl, clusterId, silos, o.Model, ct);
        await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = redisUrl, ClusterId = clusterId }, ct);
        foreach (var n in o.Streams)
        {
            if (o.MaxStreamsPerCore > 0 && n > o.MaxStreamsPerCore * Environment.ProcessorCount)
            {
                rows.Add(new() { ["silos"] = silos, ["streams"] = n, ["skipped"] = $"more than {o.MaxStreamsPerCore} streams per core on {Environment.ProcessorCount} cores" });
                continue;
            }
            var run = await Measure(o, admin, fleet, n, seedBase: 1000 * silos + n, ct);
            AnsiConsole.MarkupLine($"[grey]{silos} silo(s) × {n} streams: {run["segments_per_s"]} segments/s, p95 {run["glass_to_caption_p95_ms"]} ms, streams per silo {run["streams_per_silo_min"]}–{run["streams_per_silo_max"]}, cpu {run["cpu_utilization"]}[/]");
            rows.Add(new Dictionary<string, object?> { ["silos"] = silos, ["streams"] = n }.Concat(run).ToDictionary());
        }
        return rows;
    }

    static async Task<Dictionary<string, object?>> Measure(Settings o, ClusterAdmin admin, SiloFleet fleet, int n, int seedBase, CancellationToken ct)
    {
        var readers = new Readers(admin.Streams);
        var ids = await OpenAll(admin.Streams, n, seedBase, o.Fps);
        foreach (var id in ids) readers.Follow(id);
        await readers.WaitForFirst(ids, TimeSpan.FromSeconds(60), ct);
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup), ct);
        var cpu0 = fleet.CpuSeconds() + Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        var t0 = DateTimeOffset.UtcNow;
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds), ct);
        var t1 = DateTimeOffset.UtcNow;
        var cpu1 = fleet.CpuSeconds() + Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        var placement = await Placement(admin, fleet, ids);
        await CloseAll(admin.Streams, ids);
        await readers.StopAsync();
        var inWindow = readers.All().Where(e => e.Written >= t0 && e.Written < t1).ToList();
        double window = (t1 - t0).TotalSeconds;
        var latency = inWindow.Select(e => (e.Received - e.Captured).TotalMilliseconds).Order().ToArray();
        // What the silos' simulated devices can do at most: a caption is one read and its tokens.
        double capacity = fleet.Names.Count * 1000 / (o.Model.ReadMs + o.Model.Tokens * o.Model.TokenMs);
        return new()
        {
            ["offered_frames_per_s"] = n * o.Fps,
            ["device_capacity_per_s"] = Math.Round(capacity, 1),
            ["of_capacity_or_offered"] = Math.Round(inWindow.Count / window / Math.Min(capacity, n * o.Fps), 2),
            ["segments"] = inWindow.Count,
            ["segments_per_s"] = Math.Round(inWindow.Count / window, 1),
            ["segments_per_s_per_stream"] = Math.Round(inWindow.Count / window / n, 2),
            ["glass_to_caption_p50_ms"] = Math.Round(Percentile(latency, 0.5), 1),
            ["glass_to_caption_p95_ms"] = Math.Round(Percentile(latency, 0.95), 1),
            ["streams_per_silo_min"] = placement.Min,
            ["streams_per_silo_max"] = placement.Max,
            ["cpu_utilization"] = Math.Round((cpu1 - cpu0) / window / Environment.ProcessorCount, 2),
            ["load_average"] = LoadAverage(),
        };
    }

    static async Task<string[]> OpenAll(ClusterStreamHost streams, int n, int seedBase, int fps)
    {
        var ids = new string[n];
        await Parallel.ForEachAsync(Enumerable.Range(0, n), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
            ids[i] = (await streams.OpenAsync(Clip(seedBase + i, fps), limit: 100_000)).Id);
        return ids;
    }

    static Task CloseAll(ClusterStreamHost streams, IEnumerable<string> ids) =>
        Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (id, _) => await streams.CloseAsync(id));

    static async Task<(int Min, int Max, Dictionary<string, string> Where)> Placement(ClusterAdmin admin, SiloFleet fleet, IEnumerable<string> ids)
    {
        var where = new Dictionary<string, string>();
        foreach (var id in ids)
            if (await admin.Streams.GetAsync(id) is { SiloName: { } s }) where[id] = s;
        var counts = fleet.Names.Select(name => where.Values.Count(v => v == name)).ToArray();
        return (counts.Min(), counts.Max(), where);
    }

    // ---- failover ----

    static async Task<Dictionary<string, object?>> Failover(Settings o, string redisUrl, CancellationToken ct)
    {
        var clusterId = $"bench-failover-{Guid.NewGuid().ToString("N")[..6]}";
        AnsiConsole.MarkupLine($"[grey]failover: {o.FailSilos} silos × {o.FailStreams} streams, one silo killed…[/]");
        await using var fleet = await SiloFleet.StartAsync(redisUrl, clusterId, o.FailSilos, o.Model, ct);
        await using var admin = await ClusterAdmin.ConnectAsync(new ClusterSettings { Redis = redisUrl, ClusterId = clusterId }, ct);
        var readers = new Readers(admin.Streams);
        var ids = await OpenAll(admin.Streams, o.FailStreams, 50_000, o.Fps);
        foreach (var id in ids) readers.Follow(id);
        await readers.WaitForFirst(ids, TimeSpan.FromSeconds(60), ct);
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup), ct);
        var (_, _, where) = await Placement(admin, fleet, ids);
        var victim = where.Values.GroupBy(v => v).OrderByDescending(g => g.Count()).First().Key;
        var affected = where.Where(kv => kv.Value == victim).Select(kv => kv.Key).ToArray();
        var killedAt = DateTimeOffset.UtcNow;
        fleet.Kill(victim);
        AnsiConsole.MarkupLine($"[grey]killed {victim} (SIGKILL) holding {affected.Length} streams[/]");
        // Each affected stream: the first segment written on a survivor after the kill.
        var recovered = new Dictionary<string, double>();
        var deadline = killedAt + TimeSpan.FromSeconds(120);
        while (recovered.Count < affected.Length && DateTimeOffset.UtcNow < deadline)
        {
            foreach (var id in affected.Where(a => !recovered.ContainsKey(a)))
                if (readers.Of(id).FirstOrDefault(e => e.Written > killedAt && e.Silo != victim) is { Seq: > 0 } first)
                    recovered[id] = (first.Written - killedAt).TotalSeconds;
            await Task.Delay(100, ct);
        }
        var reactivated = new List<double>();
        foreach (var id in affected)
            if (await admin.Streams.GetAsync(id) is { } info && info.Failovers.LastOrDefault() is { } f && f.At > killedAt)
                reactivated.Add((f.At - killedAt).TotalSeconds);
        await Task.Delay(TimeSpan.FromSeconds(Math.Min(o.Seconds, 5)), ct); // and on
        await CloseAll(admin.Streams, ids); // each log ends with its "end" entry, so every reader reads to the end
        await readers.WaitForEnd(ids, TimeSpan.FromSeconds(60));
        await readers.StopAsync();
        // Loss: a gap in a stream's durable log, or an entry the log holds that its reader never got.
        // Duplicates: a sequence number a reader got twice.
        long lost = 0, duplicated = 0, segments = 0;
        foreach (var id in ids)
        {
            var log = (await admin.Log.ReadAsync(id, 0, 1_000_000)).Entries.Select(e => e.Seq).ToArray();
            segments += log.Length;
            lost += (log.Length == 0 ? 0 : log[^1]) - log.Length; // numbers 1..last with none missing
            var got = readers.Of(id).Select(e => e.Seq).ToArray();
            duplicated += got.Length - got.Distinct().Count();
            lost += log.Except(got).Count();
        }
        var times = recovered.Values.Order().ToArray();
        return new()
        {
            ["silos"] = o.FailSilos, ["streams"] = o.FailStreams, ["killed"] = victim, ["killed_streams"] = affected.Length,
            ["recovered_streams"] = recovered.Count,
            ["failover_s_p50"] = times.Length > 0 ? Math.Round(Percentile(times, 0.5), 2) : null,
            ["failover_s_max"] = times.Length > 0 ? Math.Round(times[^1], 2) : null,
            ["reactivated_s_p50"] = reactivated.Count > 0 ? Math.Round(Percentile(reactivated.Order().ToArray(), 0.5), 2) : null,
            ["reactivated_s_max"] = reactivated.Count > 0 ? Math.Round(reactivated.Max(), 2) : null,
            ["segments_checked"] = segments, ["segments_lost"] = lost, ["segments_duplicated"] = duplicated,
            ["load_average"] = LoadAverage(),
        };
    }

    // ---- summary ----

    static Dictionary<string, object?> Summary(Settings o, List<Dictionary<string, object?>> scaling, Dictionary<string, object?>? failover)
    {
        var s = new Dictionary<string, object?>();
        double? Rate(int silos, int streams) => scaling.FirstOrDefault(r => (int)r["silos"]! == silos && (int)r["streams"]! == streams && !r.ContainsKey("skipped"))?["segments_per_s"] as double?;
        // Scaling is measured where the silos, not the sources, limit throughput: where 4 silos still
        // caption fewer frames than the clips offer. Below that, more silos have nothing more to do.
        foreach (var n in o.Streams)
            if (Rate(1, n) is { } one && one > 0 && Rate(4, n) is { } four)
            {
                bool demandBound = four >= 0.9 * n * o.Fps;
                s[$"scaling_1_to_4_silos_at_{n}_streams"] = demandBound ? $"demand-bound ({four} of {n * o.Fps} offered frames/s captioned)" : Math.Round(four / one / 4, 2); // 1.0: linear
            }
        var valid = s.Values.OfType<double>().ToArray();
        if (valid.Length > 0) s["scaling_1_to_4"] = valid.Min();
        s["target_scaling"] = "≥ 0.8 of linear from 1 to 4 silos";
        if (failover is not null)
        {
            s["failover_max_s"] = failover["failover_s_max"];
            s["target_failover"] = "failover max ≤ 10 s, segments lost 0, duplicated 0";
        }
        return s;
    }

    static void Print(List<Dictionary<string, object?>> scaling, Dictionary<string, object?>? failover, Dictionary<string, object?> summary)
    {
        if (scaling.Count > 0)
        {
            var t = new Table().AddColumns("silos", "streams", "segments/s", "per stream", "glass→caption p50 ms", "p95 ms", "streams/silo min–max", "cpu", "");
            foreach (var r in scaling)
                t.AddRow(r["silos"]!.ToString()!, r["streams"]!.ToString()!, Str(r, "segments_per_s"), Str(r, "segments_per_s_per_stream"), Str(r, "glass_to_caption_p50_ms"),
                    Str(r, "glass_to_caption_p95_ms"), r.ContainsKey("skipped") ? "" : $"{r["streams_per_silo_min"]}–{r["streams_per_silo_max"]}", Str(r, "cpu_utilization"),
                    Markup.Escape(r.TryGetValue("skipped", out var why) ? $"skipped: {why}" : ""));
            AnsiConsole.Write(t);
        }
        if (failover is not null)
        {
            var t = new Table().AddColumns("failover", "value");
            foreach (var (k, v) in failover) t.AddRow(k, Markup.Escape(v?.ToString() ?? "–"));
            AnsiConsole.Write(t);
        }
        foreach (var (k, v) in summary) AnsiConsole.MarkupLine($"[grey]{k}[/] = {Markup.Escape(v?.ToString() ?? "")}");
    }

    static string Str(Dictionary<string, object?> r, string key) => r.TryGetValue(key, out var v) && v is not null ? Convert.ToString(v, CultureInfo.InvariantCulture)! : "";

    static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 0) return double.NaN;
        var rank = p * (sorted.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return ""; }
    }

    /// <summary>A follower per stream, as a gateway follows a stream's log: every entry with when it was received.</summary>
    sealed class Readers(ClusterStreamHost streams)
    {
        public readonly record struct Entry(long Seq, string Type, string Silo, DateTimeOffset Captured, DateTimeOffset Written, DateTimeOffset Received);
        readonly ConcurrentDictionary<string, List<Entry>> _seen = new();
        readonly List<Task> _tasks = new();
        readonly CancellationTokenSource _stop = new();

        public void Follow(string id)
        {
            var list = _seen.GetOrAdd(id, _ => new List<Entry>());
            _tasks.Add(Task.Run(async () =>
            {
                try
                {
                    await foreach (var page in streams.FollowAsync(id, 0, _stop.Token))
                    {
                        var now = DateTimeOffset.UtcNow;
                        foreach (var e in page.Entries)
                        {
                            string silo = "";
                            DateTimeOffset captured = now, written = now;
                            if (e.Type is "segment" or "answer")
                            {
                                using var doc = JsonDocument.Parse(e.Data);
                                var root = doc.RootElement;
                                silo = root.GetProperty("silo").GetString() ?? "";
                                captured = DateTimeOffset.FromUnixTimeMilliseconds((long)root.GetProperty("captured_at").GetDouble());
                                written = DateTimeOffset.FromUnixTimeMilliseconds(root.GetProperty("written_at").GetInt64());
                            }
                            lock (list) list.Add(new Entry(e.Seq, e.Type, silo, captured, written, now));
                        }
                    }
                }
                catch (OperationCanceledException) { }
            }));
        }

        public IReadOnlyList<Entry> Of(string id)
        {
            var list = _seen[id];
            lock (list) return list.ToArray();
        }

        public IEnumerable<Entry> All() => _seen.Keys.SelectMany(k => Of(k)).Where(e => e.Type == "segment");

        public async Task WaitForFirst(IEnumerable<string> ids, TimeSpan timeout, CancellationToken ct)
        {
            var deadline = DateTime.UtcNow + timeout;
            foreach (var id in ids)
                while (!Of(id).Any(e => e.Type == "segment"))
                {
                    if (DateTime.UtcNow > deadline) throw new TimeoutException($"stream {id} wrote no segment within {timeout.TotalSeconds:0} s");
                    await Task.Delay(100, ct);
                }
        }

        public async Task WaitForEnd(IEnumerable<string> ids, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            foreach (var id in ids)
                while (!Of(id).Any(e => e.Type == "end") && DateTime.UtcNow < deadline) await Task.Delay(100);
        }

        public async Task StopAsync()
        {
            _stop.Cancel();
            await Task.WhenAll(_tasks).ContinueWith(_ => { });
        }
    }

    /// <summary>Silo processes (`ra serve --cluster … --role inference --simulate-model-ms …`), started together and killed by PID.</summary>
    sealed class SiloFleet : IAsyncDisposable
    {
        readonly Dictionary<string, Process> _procs = new();
        public IReadOnlyList<string> Names { get; private set; } = [];

        public static async Task<SiloFleet> StartAsync(string redisUrl, string clusterId, int n, Streaming.SimulatedModel model, CancellationToken ct)
        {
            var fleet = new SiloFleet();
            try
            {
                var names = Enumerable.Range(1, n).Select(i => $"silo{i}").ToArray();
                await Task.WhenAll(names.Select(name => fleet.StartOne(redisUrl, clusterId, name, model, ct)));
                fleet.Names = names;
                return fleet;
            }
            catch
            {
                await fleet.DisposeAsync();
                throw;
            }
        }

        async Task StartOne(string redisUrl, string clusterId, string name, Streaming.SimulatedModel model, CancellationToken ct)
        {
            var dll = typeof(ClusterBench).Assembly.Location;
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { dll, "serve", "--cluster", redisUrl, "--cluster-id", clusterId, "--role", "inference", "--silo-name", name,
                "--simulate-model-ms", string.Create(CultureInfo.InvariantCulture, $"{model.ReadMs},{model.TokenMs}") })
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            lock (_procs) _procs[name] = p;
            var err = new System.Text.StringBuilder();
            p.ErrorDataReceived += (_, e) => { if (e.Data is { } line) lock (err) if (err.Length < 20_000) err.AppendLine(line); };
            p.BeginErrorReadLine();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromMinutes(3));
            while (await p.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
                if (line.Contains("joined cluster"))
                {
                    _ = Task.Run(async () => { while (await p.StandardOutput.ReadLineAsync() is not null) { } });
                    return;
                }
            throw new InvalidOperationException($"silo {name} exited before joining: {err}");
        }

        /// <summary>CPU time the silos have used (all of them, dead ones up to their death).</summary>
        public double CpuSeconds()
        {
            double s = 0;
            lock (_procs)
                foreach (var p in _procs.Values)
                    try { if (!p.HasExited) s += p.TotalProcessorTime.TotalSeconds; } catch (InvalidOperationException) { }
            return s;
        }

        public void Kill(string name)
        {
            lock (_procs) _procs[name].Kill();
        }

        public async ValueTask DisposeAsync()
        {
            List<Process> all;
            lock (_procs) all = _procs.Values.ToList();
            foreach (var p in all)
                try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { }
            foreach (var p in all)
            {
                await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { });
                p.Dispose();
            }
        }
    }

    /// <summary>A redis-server of the bench's own on a free loopback port (no persistence), stopped by its PID; or one given.</summary>
    sealed class LocalRedis : IAsyncDisposable
    {
        Process? _process;
        public string Url { get; private init; } = "";

        public static LocalRedis Existing(string url)
        {
            new ClusterSettings { Redis = url }.RedisEndpoint();
            return new LocalRedis { Url = url };
        }

        public static async Task<LocalRedis> StartAsync()
        {
            var exe = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists)
                ?? throw new UserError("bench cluster needs redis-server (apt-get install redis-server; ./ra bench cluster installs it) or --redis redis://HOST:PORT");
            int port;
            using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); port = ((IPEndPoint)l.LocalEndpoint).Port; }
            var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "" }) psi.ArgumentList.Add(a);
            var r = new LocalRedis { _process = Process.Start(psi)!, Url = $"redis://127.0.0.1:{port}" };
            r._process.BeginOutputReadLine();
            r._process.BeginErrorReadLine();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (DateTime.UtcNow < deadline)
            {
                try
                {
                    using var c = new TcpClient();
                    await c.ConnectAsync(IPAddress.Loopback, port);
                    return r;
                }
                catch (SocketException) { await Task.Delay(50); }
            }
            await r.DisposeAsync();
            throw new UserError($"redis-server did not start on port {port}");
        }

        public async ValueTask DisposeAsync()
        {
            if (_process is { HasExited: false } p) { p.Kill(); await p.WaitForExitAsync(); }
            _process?.Dispose();
        }
    }
}
