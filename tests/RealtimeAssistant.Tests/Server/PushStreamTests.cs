using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using OpenCvSharp;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// A push stream: the client sends JPEG frames over the stream's WebSocket (a browser's webcam
/// does this) and receives the stream's events on the same socket. Its limits hold: frames over
/// the rate are dropped and counted, a frame that is no image is answered with an error, a
/// message over the size limit closes the socket, and once its client is gone the stream is freed
/// after the grace period.
/// </summary>
[Collection("streams server")]
public class PushStreamTests(StreamServer server, ITestOutputHelper log)
{
    /// <summary>The clip's frames as JPEG files, as a webcam page would send them.</summary>
    List<byte[]> Frames(int count)
    {
        using var capture = new VideoCapture(Path.Combine(server.Media, StreamServer.Clip));
        var frames = new List<byte[]>();
        using var m = new Mat();
        while (frames.Count < count && capture.Read(m) && !m.Empty()) frames.Add(m.ImEncode(".jpg", new ImageEncodingParam(ImwriteFlags.JpegQuality, 80)));
        return frames;
    }

    async Task<ClientWebSocket> Connect(string id)
    {
        var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", $"Bearer {StreamServer.Key}");
        var url = new UriBuilder(server.Url) { Scheme = "ws", Path = $"/v1/streams/{id}/ws" }.Uri;
        await ws.ConnectAsync(url, CancellationToken.None);
        return ws;
    }

    static async Task<JsonNode?> Receive(ClientWebSocket ws, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        var text = new MemoryStream();
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer, ct);
            if (r.MessageType == WebSocketMessageType.Close) return null;
            text.Write(buffer, 0, r.Count);
            if (r.EndOfMessage) return JsonNode.Parse(Encoding.UTF8.GetString(text.ToArray()));
        }
    }

    [Fact]
    public async Task FramesPushedOverTheWebSocket_GetCaptionEventsBackOnIt()
    {
        // With its own caption prompt: every segment answers it (the demo model names colours).
        var opened = await server.Open(new { source = "push", fps = 8, prompt = "what colour is the cross ?" });
        var id = opened["id"]!.GetValue<string>();
        Assert.Equal("push", opened["kind"]!.GetValue<string>());
        Assert.Equal("what colour is the cross ?", opened["prompt"]!.GetValue<string>());
        Assert.Equal(1000.0 * 5 / 8, opened["stats"]!["frame_budget_ms"]!.GetValue<double>(), 1);
        var frames = Frames(120);
        using var ws = await Connect(id);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var sender = Task.Run(async () =>
        {
            // 8 frames a second, the clip over and over, until the test has what it waits for.
            for (int i = 0; !cts.IsCancellationRequested; i++)
            {
                await ws.SendAsync(frames[i % frames.Count], WebSocketMessageType.Binary, true, cts.Token);
                await Task.Delay(125, cts.Token);
            }
        });
        JsonNode? segment = null;
        var types = new List<string>();
        long last = 0;
        try
        {
            while (segment is null && await Receive(ws, cts.Token) is { } message)
            {
                var type = message["event"]!.GetValue<string>();
                types.Add(type);
                Assert.Equal(last + 1, message["id"]!.GetValue<long>()); // the same numbered events as SSE
                last = message["id"]!.GetValue<long>();
                if (type == "segment") segment = message["data"];
            }
        }
        finally { cts.Cancel(); }
        try { await sender; } catch (OperationCanceledException) { }
        log.WriteLine(string.Join(" ", types));
        Assert.NotNull(segment);
        Assert.False(string.IsNullOrWhiteSpace(segment!["text"]!.GetValue<string>()));
        // An answer to the prompt, not the model's scene description: one of the demo world's colour words.
        Assert.Contains(segment["text"]!.GetValue<string>().Trim(' ', '.'), RealtimeAssistant.Demo.DemoColors.All.Select(c => RealtimeAssistant.Demo.DemoColors.Word(c)));
        Assert.Contains("delta", types);
        Assert.Contains("state", types);
        var state = await server.State(id);
        log.WriteLine(state.ToJsonString());
        Assert.True(state["source_status"]!["frames_pushed"]!.GetValue<long>() > 0);
        Assert.Equal(0, state["source_status"]!["push_rejected"]!.GetValue<long>());
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        await server.Delete(id);
    }

    [Fact]
    public async Task PushLimits_Hold_AndAStreamWhoseClientLeft_IsFreedAfterTheGracePeriod()
    {
        var id = (await server.Open(new { source = "push" }))["id"]!.GetValue<string>();
        var stream = server.Api.Streams!.Get(id);
        var frame = Frames(1)[0];
        using var ws = await Connect(id);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));

        async Task<JsonNode> NextError()
        {
            while (await Receive(ws, cts.Token) is { } m)
                if (m["event"]!.GetValue<string>() == "error")
                {
                    Assert.Null(m["id"]); // a notice to this client, not an event of the stream
                    return m["data"]!;
                }
            throw new Xunit.Sdk.XunitException("the socket closed before an error notice");
        }

        // Not an image, a text message, and an image over the pixel limit: each answered, the socket stays open.
        await ws.SendAsync("hello"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
        Assert.Contains("JPEG", (await NextError())["message"]!.GetValue<string>());
        await ws.SendAsync("{\"question\": \"hi\"}"u8.ToArray(), WebSocketMessageType.Text, true, cts.Token);
        Assert.Contains("binary", (await NextError())["message"]!.GetValue<string>());
        await ws.SendAsync(ForgedJpegHeader(5000, 5000), WebSocketMessageType.Binary, true, cts.Token);
        Assert.Contains("over this server's limit", (await NextError())["message"]!.GetValue<string>());

        // A burst well over the rate: the excess is dropped and counted, not queued.
        for (int i = 0; i < 60; i++) await ws.SendAsync(frame, WebSocketMessageType.Binary, true, cts.Token);
        var sw = Stopwatch.StartNew();
        JsonNode state;
        // Until the whole burst is accounted for (taken or dropped), and no longer moving.
        long Seen(JsonNode st) => st["source_status"]!["frames_pushed"]!.GetValue<long>() + st["source_status"]!["push_over_rate"]!.GetValue<long>();
        long last = -1;
        while (true)
        {
            state = await server.State(id);
            long seen = Seen(state);
            if ((seen == last && state["source_status"]!["push_over_rate"]!.GetValue<long>() > 0) || sw.Elapsed > TimeSpan.FromSeconds(20)) break;
            last = seen;
            await Task.Delay(200);
        }
        log.WriteLine(state["source_status"]!.ToJsonString());
        var pushed = state["source_status"]!["frames_pushed"]!.GetValue<long>();
        var over = state["source_status"]!["push_over_rate"]!.GetValue<long>();
        Assert.True(over >= 60 - 2 * StreamServer.MaxPushFps, $"{over} of 60 frames dropped for the rate");
        Assert.True(pushed <= 2 * StreamServer.MaxPushFps, $"{pushed} frames taken from a burst of 60");
        Assert.Equal(2, state["source_status"]!["push_rejected"]!.GetValue<long>()); // the two binary ones

        // A message over the size limit closes the socket with 1009.
        await ws.SendAsync(new byte[StreamServer.MaxFrameBytes + 1], WebSocketMessageType.Binary, true, cts.Token);
        while (await Receive(ws, cts.Token) is not null) { }
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, ws.CloseStatus);

        // The client is gone: the stream lives on for the grace period, then is freed.
        var gone = Stopwatch.StartNew();
        Assert.Equal(HttpStatusCode.OK, (await server.Client().GetAsync($"v1/streams/{id}")).StatusCode);
        // (That GET counted as interest: the grace runs from it.)
        while (gone.Elapsed < StreamServer.Grace + TimeSpan.FromSeconds(30))
        {
            await Task.Delay(500);
            if (!server.Api.Streams!.All.Any(s => s.Id == id)) break;
        }
        log.WriteLine($"freed after {gone.Elapsed.TotalSeconds:0.0} s (grace {StreamServer.Grace.TotalSeconds} s)");
        Assert.DoesNotContain(server.Api.Streams!.All, s => s.Id == id);
        Assert.True(gone.Elapsed >= StreamServer.Grace - TimeSpan.FromSeconds(0.5), "freed before the grace period was over");
        var deadline = Stopwatch.StartNew();
        while (!stream.ThreadsStopped && deadline.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(100);
        Assert.True(stream.ThreadsStopped);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync($"v1/streams/{id}")).StatusCode);
    }

    /// <summary>A JPEG header (SOI, SOF0) that claims <paramref name="w"/>×<paramref name="h"/> pixels and holds none.</summary>
    static byte[] ForgedJpegHeader(int w, int h) =>
        [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, (byte)(h >> 8), (byte)h, (byte)(w >> 8), (byte)w, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
}
