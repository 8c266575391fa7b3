using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Server.Sse;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// The live-streams API on Kestrel:
/// POST /v1/streams → {id}; GET /v1/streams; GET and DELETE /v1/streams/{id};
/// GET /v1/streams/{id}/events (SSE, Last-Event-ID resume); POST /v1/streams/{id}/questions;
/// GET /v1/streams/{id}/video (MJPEG); /v1/streams/{id}/ws (WebSocket: JPEG frames in for push
/// streams, the same events out); GET /v1/media (the files a client may open).
/// The streams behind them are an <see cref="IStreamService"/>: this process's (<see cref="StreamHub"/>)
/// or a cluster's; the HTTP side (status codes, error JSON, SSE framing) is the same for both.
/// </summary>
public static class StreamEndpoints
{
    const string Boundary = "ra-frame";

    public static void Map(IEndpointRouteBuilder app, IStreamService streams, ServerOptions options, ILogger log)
    {
        app.MapGet("/v1/media", () => Results.Json(new
        {
            @object = "list",
            data = (streams.Media?.List() ?? []).Select(f => new { path = f.Path, bytes = f.Bytes }),
        }, Json.Options));
        app.MapPost("/v1/streams", (HttpContext ctx) => Open(ctx, streams, options));
        app.MapGet("/v1/streams", async (CancellationToken ct) => Results.Json(new { @object = "list", data = await streams.ListAsync(ct) }, Json.Options));
        app.MapGet("/v1/streams/{id}", async (HttpContext ctx, string id) =>
        {
            var s = await streams.GetAsync(id, ctx.RequestAborted);
            s.Touch();
            return Results.Json(s.Describe(), Json.Options);
        });
        app.MapDelete("/v1/streams/{id}", async (HttpContext ctx, string id) =>
        {
            await streams.DeleteAsync(id, ctx.RequestAborted);
            return Results.Json(new { id, @object = "stream.deleted", deleted = true }, Json.Options);
        });
        app.MapPost("/v1/streams/{id}/questions", async (HttpContext ctx, string id) =>
        {
            var s = await streams.GetAsync(id, ctx.RequestAborted);
            var text = QuestionRequest.Parse(await RequestBody.ReadAsync(ctx.Request, options.Streams.MaxJsonBytes, ctx.RequestAborted));
            s.Touch();
            var qid = await s.AskAsync(text, ctx.RequestAborted);
            return Results.Json(new { question_id = qid, stream_id = s.Id, @object = "stream.question" }, Json.Options, statusCode: StatusCodes.Status202Accepted);
        });
        app.MapGet("/v1/streams/{id}/events", async (HttpContext ctx, string id) => await Events(ctx, await streams.GetAsync(id, ctx.RequestAborted)));
        app.MapGet("/v1/streams/{id}/video", async (HttpContext ctx, string id) =>
            await Video(ctx, (await streams.GetAsync(id, ctx.RequestAborted)).Local("MJPEG video")));
        app.Map("/v1/streams/{id}/ws", async (HttpContext ctx, string id) =>
            await Socket(ctx, (await streams.GetAsync(id, ctx.RequestAborted)).Local("the WebSocket"), options, log));
    }

    static async Task Open(HttpContext ctx, IStreamService streams, ServerOptions options)
    {
        var body = await RequestBody.ReadAsync(ctx.Request, options.Streams.MaxJsonBytes, ctx.RequestAborted);
        var request = StreamRequest.Parse(body);
        var stream = await streams.OpenAsync(request, ctx.RequestAborted);
        ctx.Response.StatusCode = StatusCodes.Status201Created;
        ctx.Response.Headers.Location = $"/v1/streams/{stream.Id}";
        await ctx.Response.WriteAsJsonAsync(stream.Describe(), Json.Options, ctx.RequestAborted);
    }

    /// <summary>The Last-Event-ID a client resumes after: the header, or the query's last_event_id for clients that cannot set headers.</summary>
    static string LastEventIdOf(HttpContext ctx)
    {
        var last = ctx.Request.Headers["Last-Event-ID"].ToString();
        return last.Length > 0 ? last : ctx.Request.Query["last_event_id"].ToString();
    }

    /// <summary>The cursor a client resumes from; none: what the log holds now.</summary>
    static long Cursor(HttpContext ctx, LiveStream s) => s.Events.CursorFor(LastEventIdOf(ctx), fresh: s.Events.FirstSeq - 1);

    /// <summary>SSE: each event with its type and its sequence number as the id; a "gap" event (no id) counts what retention dropped before the client came back.</summary>
    static async Task Events(HttpContext ctx, IStreamHandle s)
    {
        var ct = ctx.RequestAborted;
        using var follower = await s.FollowAsync(LastEventIdOf(ctx), ct);
        var sse = await SseWriter.StartAsync(ctx.Response, ct);
        try
        {
            await foreach (var batch in follower.Events.WithCancellation(ct))
            {
                // Retention dropped these before the client came back: say how many, never skip them silently.
                if (batch.Missed > 0) await sse.WriteAsync(new SseEvent(Json.Serialize(new { missed = batch.Missed }), "gap"), ct);
                foreach (var e in batch.Events)
                    await sse.WriteAsync(new SseEvent(e.Item.Json, e.Item.Type, e.Seq.ToString(System.Globalization.CultureInfo.InvariantCulture)), ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    static async Task Video(HttpContext ctx, LiveStream s)
    {
        var ct = ctx.RequestAborted;
        using var attached = s.Attach();
        using var viewing = s.Video.Attach();
        ctx.Response.StatusCode = StatusCodes.Status200OK;
        ctx.Response.ContentType = $"multipart/x-mixed-replace; boundary={Boundary}";
        ctx.Response.Headers.CacheControl = "no-cache, no-store";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
        await ctx.Response.StartAsync(ct);
        long version = 0;
        try
        {
            while (await s.Video.NextAsync(version, ct) is { } next)
            {
                version = next.Version;
                var head = Encoding.ASCII.GetBytes($"--{Boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {next.Jpeg.Length}\r\n\r\n");
                await ctx.Response.Body.WriteAsync(head, ct);
                await ctx.Response.Body.WriteAsync(next.Jpeg, ct);
                await ctx.Response.Body.WriteAsync("\r\n"u8.ToArray(), ct);
                await ctx.Response.Body.FlushAsync(ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>
    /// The WebSocket: every event of the log as a text message {"id", "event", "data"} (resuming
    /// after ?last_event_id=N), and for a push stream, binary messages in, each one JPEG frame.
    /// A frame over the size limit closes the socket (1009); one over the rate is dropped and
    /// counted; a bad one is answered with an "error" message (no id) and the socket stays open.
    /// </summary>
    static async Task Socket(HttpContext ctx, LiveStream s, ServerOptions options, ILogger log)
    {
        if (!ctx.WebSockets.IsWebSocketRequest)
            throw ApiError.BadRequest($"/v1/streams/{s.Id}/ws takes a WebSocket (a GET with Upgrade: websocket)", code: "websocket_required");
        long cursor = Cursor(ctx, s);
        using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
        using var attached = s.Attach(sender: s.Push is not null);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var sending = new SemaphoreSlim(1, 1);

        async Task Send(string text)
        {
            await sending.WaitAsync(done.Token);
            try { await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, done.Token); }
            finally { sending.Release(); }
        }

        async Task SendEvents()
        {
            await foreach (var batch in s.Events.Follow(cursor, ct: done.Token))
            {
                if (batch.Missed > 0) await Send($"{{\"id\":null,\"event\":\"gap\",\"data\":{{\"missed\":{batch.Missed}}}}}");
                foreach (var e in batch.Events) await Send($"{{\"id\":{e.Seq},\"event\":\"{e.Item.Type}\",\"data\":{e.Item.Json}}}");
            }
        }

        async Task<(WebSocketCloseStatus, string)?> ReceiveFrames()
        {
            var buffer = new byte[Math.Min(options.Streams.MaxFrameBytes, 256 * 1024)];
            var message = new MemoryStream();
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, done.Token);
                if (r.MessageType == WebSocketMessageType.Close) return null;
                if (message.Length + r.Count > options.Streams.MaxFrameBytes)
                    return (WebSocketCloseStatus.MessageTooBig, $"a frame is at most {options.Streams.MaxFrameBytes} bytes");
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                if (r.MessageType == WebSocketMessageType.Text)
                    await Send(Notice("send frames as binary messages (one JPEG each); questions go to POST /v1/streams/{id}/questions"));
                else if (s.PushFrame(message.GetBuffer().AsSpan(0, (int)message.Length), out var why) == PushResult.Rejected)
                    await Send(Notice(why!));
                message.SetLength(0);
            }
        }

        var send = SendEvents();
        var receive = ReceiveFrames();
        try
        {
            var first = await Task.WhenAny(send, receive);
            if (first == receive && await receive is { } refusal)
            {
                log.LogInformation("stream {Id}: closing a WebSocket: {Why}", s.Id, refusal.Item2);
                done.Cancel();
                try { await send; } catch (OperationCanceledException) { }
                await ws.CloseOutputAsync(refusal.Item1, refusal.Item2, CancellationToken.None);
                return;
            }
            done.Cancel();
            try { await Task.WhenAll(send, receive); } catch (Exception e) when (e is OperationCanceledException or WebSocketException) { }
            if (ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, first == send ? "the stream ended" : "", CancellationToken.None);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
            log.LogDebug("stream {Id}: WebSocket ended: {Message}", s.Id, e.Message);
        }
    }

    static string Notice(string message) => $"{{\"id\":null,\"event\":\"error\",\"data\":{Json.Serialize(new { message })}}}";
}
