using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Placement;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra serve`: the model behind an OpenAI-compatible HTTP API, the live-streams API and its page (ASP.NET Core, Kestrel).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = AppModel.ModelOption();
        var host = new Option<string>("--host") { Description = "address to listen on; anything but loopback needs --api-key", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port (0: any free port; the one taken is printed)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "require Authorization: Bearer KEY on every /v1 request (default: $RA_API_KEY, which keeps the key out of the process list)" };
        var maxStreams = new Option<int>("--max-streams") { Description = "live streams open at once (429 past it)", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "chat requests that may wait for the model while one runs (429 past that)", DefaultValueFactory = _ => 16 };
        var media = new Option<string?>("--media") { Description = "the folder clients may open video files from (default: the bundled media/); nothing outside it is read" };
        var sources = new Option<string>("--sources") { Description = "kinds of live source clients may open: any of file,url,camera,push", DefaultValueFactory = _ => "file,url,camera,push" };
        var grace = Cli.Seconds(new Option<double>("--stream-grace") { Description = "seconds a live stream lives on with no client following it (a push stream: with no WebSocket) before it is freed", DefaultValueFactory = _ => 30 }, max: 86400);
        var pushFps = new Option<double>("--max-push-fps") { Description = "frames per second a push stream takes; more are dropped and counted", DefaultValueFactory = _ => 30 };
        var cors = new Option<string?>("--cors-origins") { Description = "web origins whose pages may call the API from a browser (CORS), comma-separated (https://app.example.com,http://localhost:3000), or * for any; by default only the page at / (same origin)" };
        var imageUrls = new Option<string>("--image-urls") { Description = "http(s) image URLs in chat messages: off (data: URIs only), public (fetched from hosts on public addresses only, checked at connect time, redirects included) or any (every host, the LAN and loopback too)", DefaultValueFactory = _ => "off" };
        var videoFrames = new Option<int>("--video-frames") { Description = "frames a chat message's video_url part is read as, spread over the clip (each one of the 16 images a request may hold)", DefaultValueFactory = _ => 8 };
        var batching = new Option<string>("--batching") { Description = "on: decode steps that fall due together (streams, chat) run as one batched forward; off: one at a time", DefaultValueFactory = _ => "on" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var cluster = new ClusterFlags(required: false);
        var role = new Option<string>("--role") { Description = "with --cluster: inference (load the model, run streams), gateway (the HTTP API) or both", DefaultValueFactory = _ => "both" };
        var siloName = new Option<string?>("--silo-name") { Description = "with --cluster: this silo's name, unique in the cluster (default: ROLE-HOST-PID)" };
        var clusterHost = new Option<string>("--cluster-host") { Description = "with --cluster: the address other silos reach this one at (anything but loopback needs --cluster-tls)", DefaultValueFactory = _ => "127.0.0.1" };
        var siloPort = new Option<int>("--silo-port") { Description = "with --cluster: the silo-to-silo port (0: any free port)", DefaultValueFactory = _ => 0 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "with --cluster: the port `ra cluster` clients connect to (0: any free port)", DefaultValueFactory = _ => 0 };
        var metricsPort = new Option<int?>("--metrics-port") { Description = "with --cluster --role inference: serve GET /health and GET /metrics (Prometheus) on this port, at --host, behind --api-key as the API is (a gateway serves them on its --port)" };
        var retention = new Option<int>("--log-retention") { Description = "with --cluster: caption log entries kept per stream in Redis", DefaultValueFactory = _ => 10_000 };
        var simulate = new Option<string?>("--simulate-model-ms") { Description = "no model: an inference stand-in whose frame read takes READ ms and each token TOKEN ms (READ[,TOKEN]; TOKEN defaults to READ/10) on one simulated device per silo" };
        var cmd = new Command("serve", "Serve the model over HTTP: OpenAI's GET /v1/models and POST /v1/chat/completions (text, images and videos, as data: URIs or with --image-urls as URLs, " +
            "streaming with stream: true), live streams (POST /v1/streams on a file, an rtsp:// or http:// URL, a camera or frames pushed over a WebSocket; " +
            "captions and answers over SSE, the video with its overlay as MJPEG) and a page at / to watch them. One model serves every request and stream. Ctrl+C stops.")
            { model, host, port, apiKey, maxStreams, queue, media, sources, grace, pushFps, cors, imageUrls, videoFrames, batching, device, dtype, weights, maxPixels, role, siloName, clusterHost, siloPort, gatewayPort, metricsPort, retention, simulate };
        cluster.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            await Task.Yield(); // off the invoking thread, so System.CommandLine's Ctrl+C handling is in place (see live)
            using var interrupt = new Interrupt(ct);
            var simulated = pr.GetValue(simulate) is { } sim ? Streaming.SimulatedModel.Parse(sim) : null;
            var key = pr.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable("RA_API_KEY") is { Length: > 0 } env ? env : null);
            var mediaDir = pr.GetValue(media) is { } m
                ? Directory.Exists(m) ? m : throw new UserError($"--media folder not found: {m}")
                : Cli.MediaFolder();
            var options = new ServerOptions
            {
                Host = pr.GetValue(host)!, Port = pr.GetValue(port), ApiKey = key, MaxStreams = pr.GetValue(maxStreams),
                CorsOrigins = pr.GetValue(cors)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
                Images = new()
                {
                    RemoteUrls = pr.GetValue(imageUrls)!.Trim().ToLowerInvariant() switch
                    {
                        "off" => ImageUrlPolicy.Off, "public" => ImageUrlPolicy.Public, "any" => ImageUrlPolicy.Any,
                        var u => throw new UserError($"--image-urls must be off, public or any, got '{u}'"),
                    },
                    VideoFrames = pr.GetValue(videoFrames) is >= 1 and <= 16 and var vf ? vf : throw new UserError($"--video-frames must be 1..16 (a request holds at most 16 images), got {pr.GetValue(videoFrames)}"),
                },
                Streams = new StreamLimits
                {
                    MediaFolder = mediaDir,
                    Sources = pr.GetValue(sources)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(),
                    Grace = TimeSpan.FromSeconds(pr.GetValue(grace)), MaxPushFps = pr.GetValue(pushFps),
                },
            };
            if (pr.GetValue(queue) < 1) throw new UserError($"--queue must be at least 1, got {pr.GetValue(queue)}");
            if (pr.GetValue(cluster.Cluster) is not null)
            {
                var settings = cluster.Settings(pr) with
                {
                    Role = pr.GetValue(role)!.Trim().ToLowerInvariant() switch
                    {
                        "inference" => SiloRole.Inference, "gateway" => SiloRole.Gateway, "both" => SiloRole.Both,
                        var r => throw new UserError($"--role must be inference, gateway or both, got '{r}'"),
                    },
                    SiloName = pr.GetValue(siloName), Host = pr.GetValue(clusterHost)!, SiloPort = pr.GetValue(siloPort), GatewayPort = pr.GetValue(gatewayPort),
                    LogRetention = pr.GetValue(retention),
                };
                // A gateway hosts the same HTTP API, with the same rules (a non-loopback --host needs --api-key), checked before it joins.
                var http = SiloRoles.ServesHttp(settings.Role) ? options
                    : pr.GetValue(metricsPort) is { } probes ? options with { Port = probes } : null;
                if (pr.GetValue(metricsPort) is not null && SiloRoles.ServesHttp(settings.Role))
                    throw new UserError("--metrics-port is for an inference silo: a gateway (or both) serves /health and /metrics on its --port");
                http?.Validate();
                return await ClusterServe.Run(new ClusterServe.Options(settings, pr.GetValue(model), Cli.EngineOptions(pr, device, dtype, weights, maxPixels), simulated, http), Configure, interrupt.Token);
            }
            if (simulated is not null) throw new UserError("--simulate-model-ms is for a cluster's inference silos (--cluster); a single server serves its model");
            if (pr.GetValue(metricsPort) is not null) throw new UserError("--metrics-port is for a cluster's inference silos (--cluster --role inference); a single server serves /health and /metrics on its --port");
            options.Validate(); // a bad host, port or limit fails before the model loads
            var dir = AppModel.Resolve(pr.GetValue(model));
            using var logging = LoggerFactory.Create(Configure);
            // One model for everything: chat completions and every live stream take their turns on it.
            bool batched = pr.GetValue(batching)!.Trim().ToLowerInvariant() switch
            {
                "on" => true, "off" => false,
                var b => throw new UserError($"--batching must be on or off, got '{b}'"),
            };
            using var scheduler = ModelScheduler.Load(dir, Cli.EngineOptions(pr, device, dtype, weights, maxPixels), logging.CreateLogger("RealtimeAssistant.Model"), batched);
            // Before the port opens: the first request and the first stream's first frame do not pay the model's one-time costs.
            AppModel.WarmUp(scheduler.Engine, logging.CreateLogger("RealtimeAssistant.Model"), warm => scheduler.Run(warm));
            using var chat = new SerialChatModel(scheduler, pr.GetValue(queue), logging.CreateLogger("RealtimeAssistant.Model"));
            await WarmUpChat(chat, options, logging.CreateLogger("RealtimeAssistant.Server"), interrupt.Token);
            await using var server = await ApiServer.StartAsync(options, chat, b => Configure(b), interrupt.Token,
                new StreamBackend(scheduler, GlStreamOverlay.Factory(options.Streams.VideoFps)));
            // The one line on stdout: scripts (and the tests) read the address from it.
            Console.Out.WriteLine($"ra serve: {chat.Id} on {server.Url.ToString().TrimEnd('/')} (OpenAI API base URL {server.Url}v1; page {server.Url})");
            Console.Out.Flush();
            if (mediaDir is null) Console.Error.WriteLine("ra serve: no media folder: file streams are refused (--media DIR)");
            try { await server.WaitForShutdownAsync(interrupt.Token); }
            catch (OperationCanceledException) { }
            return 0;
        });
    }

    /// <summary>The chat path's first run, before the port opens (<see cref="ChatCompletions.WarmUp"/>); where it fails, the model is served without, with a warning.</summary>
    static async Task WarmUpChat(SerialChatModel chat, ServerOptions options, ILogger log, CancellationToken ct)
    {
        try
        {
            double ms = await ChatCompletions.WarmUp(chat, options, ct);
            log.LogInformation("warm-up: a chat completion with a 64x64 PNG answered in {Ms:F0} ms", ms);
        }
        // Best effort: a chat path that fails here fails a client's request with its own error, not the start.
        catch (Exception e) when (e is not OperationCanceledException) { log.LogWarning("no chat warm-up: {Why}", e.Message); }
    }

    /// <summary>Logs on stderr (stdout carries the address line): the server's own at Information, ASP.NET Core's warnings.</summary>
    static void Configure(ILoggingBuilder b) =>
        b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
         .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
         .AddFilter("Microsoft", LogLevel.Warning)
         .SetMinimumLevel(LogLevel.Information);
}
