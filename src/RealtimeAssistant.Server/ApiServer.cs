using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;
using RealtimeAssistant.Server.Streams;

namespace RealtimeAssistant.Server;

/// <summary>What the live-streams API runs on: the shared model's scheduler, and how to draw a stream's overlay on its video (none: plain video).</summary>
public sealed record StreamBackend(ModelScheduler Scheduler, StreamOverlayFactory? Overlay = null);

/// <summary>
/// What a server serves: a chat model for the OpenAI endpoints (or why this process has none: its
/// chat completions are then a 503), and the live-streams API over a <see cref="IStreamService"/>
/// (none: no streams API and no page).
/// </summary>
public sealed record ApiBackend
{
    public IChatModel? Chat { get; init; }
    /// <summary>Why there is no chat model here, told to a client that asks for a completion.</summary>
    public string NoChat { get; init; } = "this server has no model to complete chats with";
    /// <summary>Makes the streams the API serves (given the server's loggers); the server disposes what it makes when it stops.</summary>
    public Func<ILoggerFactory, IStreamService>? Streams { get; init; }
}

/// <summary>
/// The HTTP server: Kestrel with the OpenAI-compatible endpoints over one <see cref="IChatModel"/>
/// and, given streams, the live-streams API (/v1/streams, its SSE events, MJPEG video and
/// WebSocket) and the page at /. The streams are this process's (<see cref="StreamHub"/>) or a
/// cluster's, behind the same endpoints. Every error a client can cause is answered as OpenAI's
/// error JSON with its 4xx status; an unexpected failure is logged and answered 500 with no detail.
/// </summary>
public sealed class ApiServer : IAsyncDisposable
{
    readonly WebApplication _app;

    /// <summary>The base address it listens on, e.g. http://127.0.0.1:8080 (the OpenAI base URL is this + /v1).</summary>
    public Uri Url { get; }
    /// <summary>The streams the API serves (null without them).</summary>
    public IStreamService? StreamService { get; }
    /// <summary>The live streams of this process (null without a <see cref="StreamBackend"/>, and on a cluster).</summary>
    public StreamHub? Streams => StreamService as StreamHub;

    ApiServer(WebApplication app, Uri url, IStreamService? streams) { _app = app; Url = url; StreamService = streams; }

    /// <param name="logging">Where logs go (the CLI: the console); none by default.</param>
    /// <param name="streams">Serve the live-streams API and the page on this model (it must be the chat model's).</param>
    public static Task<ApiServer> StartAsync(ServerOptions options, IChatModel model, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default,
        StreamBackend? streams = null) =>
        StartAsync(options, new ApiBackend
        {
            Chat = model,
            Streams = streams is null ? null : loggers => new StreamHub(streams.Scheduler, options, streams.Overlay, loggers.CreateLogger("RealtimeAssistant.Server.Streams")),
        }, logging, ct);

    public static async Task<ApiServer> StartAsync(ServerOptions options, ApiBackend backend, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        var address = options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "ra-serve", ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        // A failed start (the port is taken) becomes the caller's one-line UserError below, not a logged trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        builder.Services.AddSingleton<IHostLifetime, CallerLifetime>(); // signals are the caller's (the CLI's Ctrl+C), not the library's
        // The server listens only once its model has loaded, so an answer here means ready.
        builder.Services.AddHealthChecks();
        builder.Services.AddCors();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            k.Listen(address, options.Port);
        });
        var app = builder.Build();
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        IStreamService? streams = null;
        try
        {
            streams = backend.Streams?.Invoke(loggers);
            Map(app, backend, options, streams);
            await app.StartAsync(ct);
        }
        catch (Exception e)
        {
            (streams as IDisposable)?.Dispose();
            await app.DisposeAsync();
            if (e is IOException) throw new UserError($"cannot listen on {options.Host}:{options.Port}: {e.Message}");
            throw;
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ApiServer(app, new Uri(bound), streams);
    }

    static void Map(WebApplication app, ApiBackend backend, ServerOptions options, IStreamService? streams)
    {
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RealtimeAssistant.Server");
        app.Use((ctx, next) => Errors(ctx, next, log));
        // Before the key check: a browser's preflight carries no Authorization header, and is answered here.
        if (options.CorsOrigins.Count > 0)
            app.UseCors(policy =>
            {
                if (options.CorsOrigins.Contains("*")) policy.AllowAnyOrigin(); else policy.WithOrigins([.. options.CorsOrigins]);
                policy.AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("Location");
            });
        if (options.ApiKey is { } key) app.Use((ctx, next) => Authorize(ctx, next, key));
        // For probes and scrapers: /health without a key (a load balancer's or Kubernetes' probe
        // sends none); /metrics (ServerMetrics with ASP.NET Core's and the runtime's meters, in
        // Prometheus' text format) behind the key when one is set.
        app.MapHealthChecks("/health");
        ServerMetrics.StartExport();
        app.MapMetrics("/metrics");
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(20) });

        if (backend.Chat is { } model)
        {
            app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = new[] { ModelJson(model) } }));
            app.MapGet("/v1/models/{id}", (string id) => id == model.Id
                ? Results.Json(ModelJson(model))
                : throw new ApiError(404, $"The model '{id}' does not exist", param: "model", code: "model_not_found"));
            var remote = new RemoteImages(options.Images);
            app.Lifetime.ApplicationStopped.Register(remote.Dispose);
            app.MapPost("/v1/chat/completions", (HttpContext ctx) => ChatCompletions.Handle(ctx, model, options, remote));
        }
        else
        {
            // No model in this process (a cluster's gateway): it lists none, and says why it completes no chat.
            app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = Array.Empty<object>() }));
            app.MapGet("/v1/models/{id}", IResult (string id) =>
                throw new ApiError(404, $"The model '{id}' does not exist here: {backend.NoChat}", param: "model", code: "model_not_found"));
            app.MapPost("/v1/chat/completions", IResult () => throw new ApiError(503, backend.NoChat, "server_error", code: "no_model"));
        }
        if (streams is null) return;
        StreamEndpoints.Map(app, streams, options, log);
        WebPage.Map(app, options.ApiKey is not null);
    }

    /// <summary>OpenAI's model object, with the context length as vLLM names it (max_model_len), which clients that size prompts read.</summary>
    static object ModelJson(IChatModel model) =>
        new { id = model.Id, @object = "model", created = model.Created.ToUnixTimeSeconds(), owned_by = "realtime-assistant", max_model_len = model.ContextLength };

    /// <summary>Turns every failure into OpenAI's error JSON; a client's errors are never logged as the server's.</summary>
    static async Task Errors(HttpContext ctx, RequestDelegate next, ILogger log)
    {
        try
        {
            await next(ctx);
            if (!ctx.Response.HasStarted && ctx.Response.StatusCode >= 400 && ctx.Response.ContentLength is null)
            {
                var status = ctx.Response.StatusCode;
                var message = status switch
                {
                    404 => $"Invalid URL ({ctx.Request.Method} {ctx.Request.Path})",
                    405 => $"Method {ctx.Request.Method} is not allowed on {ctx.Request.Path}",
                    _ => $"HTTP {status}",
                };
                await new ApiError(status, message, code: status == 404 ? "unknown_url" : null).WriteAsync(ctx.Response);
            }
        }
        catch (ApiError e) when (!ctx.Response.HasStarted)
        {
            await e.WriteAsync(ctx.Response);
        }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            // Kestrel's own limits and framing errors (a body over MaxRequestBodySize: 413).
            await new ApiError(e.StatusCode, e.StatusCode == 413 ? "the request body is larger than this server takes" : e.Message,
                code: e.StatusCode == 413 ? "request_too_large" : null).WriteAsync(ctx.Response);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (e is ApiError or BadHttpRequestException or IOException && ctx.Response.HasStarted)
        {
            log.LogDebug("response ended early: {Message}", e.Message);
        }
        catch (Exception e)
        {
            log.LogError(e, "{Method} {Path} failed", ctx.Request.Method, ctx.Request.Path);
            if (!ctx.Response.HasStarted)
                await new ApiError(500, "The server had an error while processing your request; it logged the cause.", "server_error").WriteAsync(ctx.Response);
        }
    }

    static Task Authorize(HttpContext ctx, RequestDelegate next, string key)
    {
        if (!ctx.Request.Path.StartsWithSegments("/v1") && !ctx.Request.Path.StartsWithSegments("/metrics")) return next(ctx);
        var header = ctx.Request.Headers.Authorization.ToString();
        // A browser's EventSource, <img> and WebSocket cannot set headers: a stream's events, video
        // and socket also take the key as ?api_key=KEY.
        if (header.Length == 0 && HttpMethods.IsGet(ctx.Request.Method) && ctx.Request.Path.StartsWithSegments("/v1/streams")
            && ctx.Request.Query["api_key"].ToString() is { Length: > 0 } queryKey)
            header = "Bearer " + queryKey;
        if (header.Length == 0)
            throw new ApiError(401, "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).");
        const string scheme = "Bearer ";
        var given = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) ? header[scheme.Length..].Trim() : "";
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(key)))
            throw new ApiError(401, "Incorrect API key provided.", code: "invalid_api_key");
        return next(ctx);
    }

    /// <summary>Until the host is told to stop (SIGTERM, Ctrl+C) or <paramref name="ct"/> fires.</summary>
    public Task WaitForShutdownAsync(CancellationToken ct) => _app.WaitForShutdownAsync(ct);

    sealed class CallerLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        (StreamService as IDisposable)?.Dispose(); // first: their followers end, and their threads stop before the model goes
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}
