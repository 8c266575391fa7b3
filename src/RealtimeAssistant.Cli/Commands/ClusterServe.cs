using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cluster;
using RealtimeAssistant.Cluster.Placement;
using RealtimeAssistant.Cluster.Gateway;
using RealtimeAssistant.Cluster.Streams;
using RealtimeAssistant.Server;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra serve --cluster redis://… --role inference|gateway|both`: this process becomes a silo of the
/// cluster. Inference silos load the model (or the simulated stand-in) and run the streams placed
/// on them; gateways (and silos with both roles) host `ra serve`'s HTTP API over the cluster's
/// streams (<see cref="ClusterStreamService"/>): the same endpoints, JSON and SSE events.
/// </summary>
public static class ClusterServe
{
    /// <param name="Http">The HTTP API's options on a gateway (or both); on an inference silo, where its probes (/health, /metrics) listen, or null for none.</param>
    public sealed record Options(ClusterSettings Settings, string? ModelDir, EngineOptions Engine, SimulatedModel? Simulate, ServerOptions? Http = null);

    public static async Task<int> Run(Options o, Action<ILoggingBuilder> configure, CancellationToken ct)
    {
        // Orleans and its resilience library log every connection and placement at Information.
        Action<ILoggingBuilder> logging = b =>
        {
            configure(b);
            b.AddFilter("Orleans", LogLevel.Warning).AddFilter("Polly", LogLevel.Warning)
             .AddFilter("Orleans.Runtime.Silo", LogLevel.Error); // its ServerGC advice, on a 2-core machine
        };
        o.Settings.Validate(); // bad flags fail before a model loads
        StreamRuntime? runtime = null;
        Engine? engine = null;
        using var loggerFactory = LoggerFactory.Create(logging);
        if (SiloRoles.RunsStreams(o.Settings.Role))
        {
            if (o.Simulate is null)
            {
                engine = Engine.Load(AppModel.Resolve(o.ModelDir), o.Engine, loggerFactory.CreateLogger("RealtimeAssistant.Model"));
                // Before the silo joins: a stream placed on it does not pay the model's first pass in the call that starts it.
                AppModel.WarmUp(engine, loggerFactory.CreateLogger("RealtimeAssistant.Model"));
            }
            runtime = new StreamRuntime(engine, o.Simulate, (realtime, loop) => AppSources.Options(realtime, loop), loggerFactory);
        }
        try
        {
            await using var node = await ClusterNode.StartAsync(o.Settings, runtime, logging, ct);
            var role = SiloRoles.Name(o.Settings.Role);
            var model = runtime is null ? "no model" : runtime.ModelDescription;
            await using var api = o.Http is { } http ? await ApiServer.StartAsync(http, new ApiBackend
            {
                // The model on an inference silo belongs to its streams (no scheduler shares it with chat turns).
                NoChat = o.Settings.Role == SiloRole.Gateway
                    ? $"silo {node.SiloName} is a cluster gateway: it loads no model (the inference silos run the streams' model); chat completions are served by a single `ra serve`"
                    : $"silo {node.SiloName} runs its model ({model}) for the cluster's streams only; chat completions are served by a single `ra serve`",
                // An inference silo's HTTP is its probes alone: the streams API is the gateways'.
                Streams = SiloRoles.ServesHttp(o.Settings.Role)
                    ? loggers => new ClusterStreamService(node.Streams, node.Log, http, node.InferenceSilos, loggers.CreateLogger("RealtimeAssistant.Cluster.Gateway"))
                    : null,
            }, logging, ct) : null;
            // The one line on stdout: scripts (and the tests) read the silo's name and address from it, and a gateway's URL.
            var url = api is null ? ""
                : SiloRoles.ServesHttp(o.Settings.Role) ? $"; API on {api.Url.ToString().TrimEnd('/')} (OpenAI API base URL {api.Url}v1; page {api.Url})"
                : $"; probes on {api.Url}health and {api.Url}metrics";
            Console.Out.WriteLine($"ra serve: silo {node.SiloName} ({role}, {model}) joined cluster '{o.Settings.ClusterId}' at {node.Address.ToParsableString()} (gateway {node.Gateway.Endpoint}){url}");
            Console.Out.Flush();
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { }
            Console.Error.WriteLine($"ra serve: silo {node.SiloName} leaving the cluster");
            return 0;
        }
        finally
        {
            runtime?.Dispose();
            engine?.Dispose();
        }
    }
}
