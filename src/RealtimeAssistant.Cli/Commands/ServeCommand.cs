using System.CommandLine;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra serve`: the model behind an OpenAI-compatible HTTP API (ASP.NET Core, Kestrel).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = AppModel.ModelOption();
        var host = new Option<string>("--host") { Description = "address to listen on; anything but loopback needs --api-key", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port (0: any free port; the one taken is printed)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "require Authorization: Bearer KEY on every /v1 request (default: $RA_API_KEY, which keeps the key out of the process list)" };
        var maxStreams = new Option<int>("--max-streams") { Description = "admission limit of the live-streams API (that API is not served yet)", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "requests that may wait for the model while one runs (429 past that)", DefaultValueFactory = _ => 16 };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cluster = new ClusterFlags(required: false);
        var role = new Option<string>("--role") { Description = "with --cluster: inference (load the model, run streams), gateway (the HTTP API) or both", DefaultValueFactory = _ => "both" };
        var siloName = new Option<string?>("--silo-name") { Description = "with --cluster: this silo's name, unique in the cluster (default: ROLE-HOST-PID)" };
        var clusterHost = new Option<string>("--cluster-host") { Description = "with --cluster: the address other silos reach this one at (anything but loopback needs --cluster-tls)", DefaultValueFactory = _ => "127.0.0.1" };
        var siloPort = new Option<int>("--silo-port") { Description = "with --cluster: the silo-to-silo port (0: any free port)", DefaultValueFactory = _ => 0 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "with --cluster: the port `ra cluster` clients connect to (0: any free port)", DefaultValueFactory = _ => 0 };
        var retention = new Option<int>("--log-retention") { Description = "with --cluster: caption log entries kept per stream in Redis", DefaultValueFactory = _ => 10_000 };
        var simulate = new Option<string?>("--simulate-model-ms") { Description = "no model: an inference stand-in whose frame read takes READ ms and each token TOKEN ms (READ[,TOKEN]; TOKEN defaults to READ/10) on one simulated device per silo" };
        var cmd = new Command("serve", "Serve the model over HTTP with OpenAI's API: GET /v1/models and POST /v1/chat/completions " +
            "(text and data: URI images, streaming with stream: true). Requests run one at a time. Ctrl+C stops.")
            { model, host, port, apiKey, maxStreams, queue, device, dtype, role, siloName, clusterHost, siloPort, gatewayPort, retention, simulate };
        cluster.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            await Task.Yield(); // off the invoking thread, so System.CommandLine's Ctrl+C handling is in place (see live)
            using var interrupt = new Interrupt(ct);
            var simulated = pr.GetValue(simulate) is { } sim ? Streaming.SimulatedModel.Parse(sim) : null;
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
                return await ClusterServe.Run(new ClusterServe.Options(settings, pr.GetValue(model), Cli.EngineOptions(pr, device, dtype), simulated), Configure, interrupt.Token);
            }
            if (simulated is not null) throw new UserError("--simulate-model-ms is for a cluster's inference silos (--cluster); a single server serves its model");
            var key = pr.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable("RA_API_KEY") is { Length: > 0 } env ? env : null);
            var options = new ServerOptions
            {
                Host = pr.GetValue(host)!, Port = pr.GetValue(port), ApiKey = key, MaxStreams = pr.GetValue(maxStreams),
            };
            if (pr.GetValue(queue) < 1) throw new UserError($"--queue must be at least 1, got {pr.GetValue(queue)}");
            options.Validate(); // a bad host or port fails before the model loads
            var dir = AppModel.Resolve(pr.GetValue(model));
            using var logging = LoggerFactory.Create(Configure);
            using var chat = SerialChatModel.Load(dir, Cli.EngineOptions(pr, device, dtype), pr.GetValue(queue), logging.CreateLogger("RealtimeAssistant.Model"));
            await using var server = await ApiServer.StartAsync(options, chat, b => Configure(b), interrupt.Token);
            // The one line on stdout: scripts (and the tests) read the address from it.
            Console.Out.WriteLine($"ra serve: {chat.Id} on {server.Url.ToString().TrimEnd('/')} (OpenAI API base URL {server.Url}v1)");
            Console.Out.Flush();
            try { await server.WaitForShutdownAsync(interrupt.Token); }
            catch (OperationCanceledException) { }
            return 0;
        });
    }

    /// <summary>Logs on stderr (stdout carries the address line): the server's own at Information, ASP.NET Core's warnings.</summary>
    static void Configure(ILoggingBuilder b) =>
        b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
         .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
         .AddFilter("Microsoft", LogLevel.Warning)
         .SetMinimumLevel(LogLevel.Information);
}
