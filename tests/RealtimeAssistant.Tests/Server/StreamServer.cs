using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Tests.Capture;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The stream tests share one server (one model load) and run one after another, and apart from
/// every other test: they keep two cores busy, and the timing-sensitive tests elsewhere (the
/// governor's) must not run beside them.
/// </summary>
[CollectionDefinition("streams server", DisableParallelization = true)]
public class StreamServerCollection : ICollectionFixture<StreamServer>;

/// <summary>
/// `ra serve`'s live-streams API in process (real Kestrel on loopback, the demo model, the GL
/// overlay the CLI gives it), with an API key, small limits and a temp allow-list folder holding a
/// generated clip, a file that is no video, and two symlinks that lead out of it.
/// </summary>
public sealed class StreamServer : IAsyncLifetime
{
    public const string Key = "stream-key-42";
    public const int MaxStreams = 3, MaxJsonBytes = 4096, MaxFrameBytes = 256 * 1024;
    public const double MaxPushFps = 10;
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(6);
    public const string Clip = "clip.mp4";

    ModelScheduler? _scheduler;
    SerialChatModel? _chat;
    readonly WarningLog _log = new();
    public ApiServer Api { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri Url => Api.Url;
    public string Media { get; private set; } = "";
    public string Outside { get; private set; } = "";
    /// <summary>What the server logged at warning and above.</summary>
    public string Warnings => _log.Text;

    int _checked;

    /// <summary>
    /// Fails when the server logged an error since the last check, showing what it logged (the
    /// exception and its stack). Each error fails one test, not every later one on this shared server.
    /// </summary>
    public void AssertNoErrors()
    {
        var log = Warnings;
        var since = log[Math.Min(_checked, log.Length)..];
        _checked = log.Length;
        Assert.False(since.Contains("Error", StringComparison.Ordinal), $"the server logged an error since the last check:\n{since}");
    }

    public async ValueTask InitializeAsync()
    {
        Media = TestMedia.TempDir("streams-media");
        DemoVideo.Write(Path.Combine(Media, Clip), seed: 5, seconds: 8, fps: 15, size: 160);
        File.WriteAllText(Path.Combine(Media, "notes.mp4"), "not a video");
        Outside = TestMedia.TempDir("streams-outside");
        File.Copy(Path.Combine(Media, Clip), Path.Combine(Outside, "secret.mp4"));
        File.CreateSymbolicLink(Path.Combine(Media, "escape.mp4"), Path.Combine(Outside, "secret.mp4"));
        Directory.CreateSymbolicLink(Path.Combine(Media, "escape-dir"), Outside);
        File.CreateSymbolicLink(Path.Combine(Media, "inside-link.mp4"), Clip); // a link that stays inside is fine

        _scheduler = ModelScheduler.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" });
        _chat = new SerialChatModel(_scheduler);
        var options = new ServerOptions
        {
            Port = 0, ApiKey = Key, MaxStreams = MaxStreams,
            Streams = new StreamLimits { MediaFolder = Media, Grace = Grace, MaxPushFps = MaxPushFps, MaxFrameBytes = MaxFrameBytes, MaxJsonBytes = MaxJsonBytes },
        };
        Api = await ApiServer.StartAsync(options, _chat, b => b.AddProvider(_log), streams: new StreamBackend(_scheduler, GlStreamOverlay.Factory(15)));
        Http = Client();
    }

    public HttpClient Client(string? key = Key)
    {
        var http = new HttpClient { BaseAddress = Url, Timeout = TimeSpan.FromMinutes(3) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Api.DisposeAsync();
        _chat?.Dispose();
        _scheduler?.Dispose();
    }

    internal sealed class WarningLog : ILoggerProvider, ILogger
    {
        readonly StringBuilder _text = new();
        public string Text { get { lock (_text) return _text.ToString(); } }
        public ILogger CreateLogger(string category) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel level) => level >= LogLevel.Warning;
        public void Log<TState>(LogLevel level, EventId id, TState state, Exception? e, Func<TState, Exception?, string> format)
        {
            if (IsEnabled(level)) lock (_text) _text.AppendLine($"{level}: {format(state, e)} {e}");
        }
        public void Dispose() { }
    }

    // ---- the API as a client uses it ----

    /// <summary>POST /v1/streams; the new stream's JSON (201), or fails the test with the server's answer.</summary>
    public async Task<JsonNode> Open(object body)
    {
        var r = await Http.PostAsJsonAsync("v1/streams", body);
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"POST /v1/streams {JsonContent.Create(body).ReadAsStringAsync().Result}: {(int)r.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }

    public async Task<JsonNode> State(string id)
    {
        var r = await Http.GetAsync($"v1/streams/{id}");
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"GET /v1/streams/{id}: {(int)r.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }

    public async Task<string> Ask(string id, string question)
    {
        var r = await Http.PostAsJsonAsync($"v1/streams/{id}/questions", new { text = question });
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Accepted, $"POST questions: {(int)r.StatusCode} {text}");
        return JsonNode.Parse(text)!["question_id"]!.GetValue<string>();
    }

    public async Task Delete(string id)
    {
        var r = await Http.DeleteAsync($"v1/streams/{id}");
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"DELETE /v1/streams/{id}: {(int)r.StatusCode} {text}");
        Assert.True(JsonNode.Parse(text)!["deleted"]!.GetValue<bool>());
    }

    /// <summary>GET /v1/streams/{id}/events, parsed as an EventSource would (id, event, data lines), with Last-Event-ID when given.</summary>
    public async IAsyncEnumerable<SseMessage> Events(string id, string? lastEventId = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        using var http = Client();
        http.Timeout = Timeout.InfiniteTimeSpan;
        await foreach (var e in ReadEvents(http, $"v1/streams/{id}/events", lastEventId, ct)) yield return e;
    }

    /// <summary>An event stream at <paramref name="path"/>, parsed as an EventSource would (id, event, data lines), with Last-Event-ID when given.</summary>
    public static async IAsyncEnumerable<SseMessage> ReadEvents(HttpClient http, string path, string? lastEventId = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (lastEventId is not null) request.Headers.Add("Last-Event-ID", lastEventId);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        if (!response.IsSuccessStatusCode) Assert.Fail($"GET events: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        string? eventId = null, type = null;
        var data = new StringBuilder();
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0) yield return new SseMessage(eventId is null ? null : long.Parse(eventId), type ?? "message", JsonNode.Parse(data.ToString())!);
                eventId = type = null;
                data.Clear();
                continue;
            }
            if (line.StartsWith(':')) continue;
            var colon = line.IndexOf(':');
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? "" : line[(colon + 1)..].TrimStart(' ');
            switch (field)
            {
                case "id": eventId = value; break;
                case "event": type = value; break;
                case "data": if (data.Length > 0) data.Append('\n'); data.Append(value); break;
            }
        }
    }
}

/// <summary>One server-sent event: its id (null for gap notices), type and JSON data.</summary>
public sealed record SseMessage(long? Id, string Type, JsonNode Data)
{
    public override string ToString() => $"{Id} {Type} {Data.ToJsonString()}";
}
