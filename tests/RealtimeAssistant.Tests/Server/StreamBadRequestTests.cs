using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// What a client of the streams API gets wrong: each is answered with the right 4xx and OpenAI's
/// error JSON, nothing is read outside the media folder (../, absolute paths and symlinks that
/// lead out are all refused), and the server opens and serves the next stream as before.
/// </summary>
[Collection("streams server")]
public class StreamBadRequestTests(StreamServer server)
{
    async Task<(HttpStatusCode Status, JsonNode Error)> Send(HttpMethod method, string path, string? body = null, string? key = StreamServer.Key,
        Action<HttpRequestMessage>? more = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        more?.Invoke(request);
        using var http = server.Client(key: null);
        var r = await http.SendAsync(request);
        var text = await r.Content.ReadAsStringAsync();
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        var error = JsonNode.Parse(text)!["error"]!;
        Assert.Equal(["message", "type", "param", "code"], error.AsObject().Select(p => p.Key));
        Assert.DoesNotContain("   at ", error["message"]!.GetValue<string>());
        return (r.StatusCode, error);
    }

    async Task AssertRefused(HttpStatusCode status, string body, string? code = null, string? param = null)
    {
        var (s, error) = await Send(HttpMethod.Post, "v1/streams", body);
        Assert.True(status == s, $"{body}: {(int)s} {error.ToJsonString()}");
        if (code is not null) Assert.Equal(code, error["code"]?.GetValue<string>());
        if (param is not null) Assert.Equal(param, error["param"]?.GetValue<string>());
        await AssertHealthy();
    }

    /// <summary>The server still opens a stream, lists it and deletes it.</summary>
    async Task AssertHealthy()
    {
        var id = (await server.Open(new { source = "push" }))["id"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("v1/streams")).StatusCode);
        await server.Delete(id);
    }

    [Fact]
    public async Task MalformedBodies_Are400()
    {
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": ");
        await AssertRefused(HttpStatusCode.BadRequest, "[\"clip.mp4\"]");
        await AssertRefused(HttpStatusCode.BadRequest, "{}", param: "source");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": 5}", param: "source");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"colour\": \"red\"}", "unknown_parameter");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"policy\": \"sometimes\"}", "invalid_value", "policy");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"mode\": \"fast\"}", "invalid_value", "mode");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"stride\": 0}", param: "stride");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"window\": 0}", param: "window");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"window\": 17}", param: "window");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"gate\": -1}", param: "gate");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"gate\": 300}", param: "gate");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"frame_budget_ms\": -3}", param: "frame_budget_ms");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"push\", \"prune\": \"yes\"}", param: "prune");
        await AssertRefused(HttpStatusCode.BadRequest, "{\"source\": \"\\ud800\"}");
    }

    [Fact]
    public async Task PathsOutsideTheMediaFolder_Are403_AndNothingIsRead()
    {
        foreach (var path in new[]
        {
            "../streams-outside/secret.mp4", "../../../../../../etc/passwd", "/etc/passwd", "sub/../../x.mp4",
            Path.Combine(server.Outside, "secret.mp4"),          // absolute, outside
            "escape.mp4",                                       // a symlink in the folder that leads out
            "escape-dir/secret.mp4",                            // through a linked folder
        })
            await AssertRefused(HttpStatusCode.Forbidden, Json(path), "path_not_allowed", "source");
        // Inside, but missing; inside, but no video; a FIFO or folder is no file either.
        await AssertRefused(HttpStatusCode.BadRequest, Json("nope.mp4"), "source_not_found");
        await AssertRefused(HttpStatusCode.BadRequest, Json("notes.mp4"), "invalid_source");
        await AssertRefused(HttpStatusCode.BadRequest, Json("."), "invalid_source");
        // Schemes this server does not fetch, and a camera it does not have.
        await AssertRefused(HttpStatusCode.BadRequest, Json("file:///etc/passwd"), "invalid_source");
        await AssertRefused(HttpStatusCode.BadRequest, Json("ftp://127.0.0.1/x.mp4"), "invalid_source");
        await AssertRefused(HttpStatusCode.BadRequest, Json("7"), "source_not_found");
        // A link that stays inside the folder is fine.
        var id = (await server.Open(new { source = "inside-link.mp4" }))["id"]!.GetValue<string>();
        await server.Delete(id);
    }

    static string Json(string source) => new JsonObject { ["source"] = source }.ToJsonString();

    [Fact]
    public async Task AnOversizedBody_Is413()
    {
        var big = "{\"source\": \"push\", \"prompt\": \"" + new string('a', StreamServer.MaxJsonBytes) + "\"}";
        await AssertRefused(HttpStatusCode.RequestEntityTooLarge, big, "request_too_large");
        var (s, e) = await Send(HttpMethod.Post, "v1/streams/str_0/questions", "{\"text\": \"" + new string('b', StreamServer.MaxJsonBytes) + "\"}");
        Assert.Equal(HttpStatusCode.NotFound, s); // the stream is checked first
    }

    [Fact]
    public async Task AMissingOrWrongApiKey_Is401_EvenInTheQueryOfAPost()
    {
        var (s1, _) = await Send(HttpMethod.Post, "v1/streams", "{\"source\": \"push\"}", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, s1);
        var (s2, e2) = await Send(HttpMethod.Post, "v1/streams", "{\"source\": \"push\"}", key: "wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, s2);
        Assert.Equal("invalid_api_key", e2["code"]!.GetValue<string>());
        var (s3, _) = await Send(HttpMethod.Post, $"v1/streams?api_key={StreamServer.Key}", "{\"source\": \"push\"}", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, s3); // the query key is only for what a browser cannot send headers with
        var (s4, _) = await Send(HttpMethod.Get, "v1/streams?api_key=wrong", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, s4);
        using var http = server.Client(key: null);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"v1/streams?api_key={StreamServer.Key}")).StatusCode);
        await AssertHealthy();
    }

    [Fact]
    public async Task TooManyStreams_Is429_AndFreeingOneAdmitsTheNext()
    {
        var ids = new List<string>();
        try
        {
            for (int i = server.Api.Streams!.Count; i < StreamServer.MaxStreams; i++)
                ids.Add((await server.Open(new { source = "push" }))["id"]!.GetValue<string>());
            var (s, e) = await Send(HttpMethod.Post, "v1/streams", "{\"source\": \"push\"}");
            Assert.Equal(HttpStatusCode.TooManyRequests, s);
            Assert.Equal("too_many_streams", e["code"]!.GetValue<string>());
            Assert.Contains("--max-streams", e["message"]!.GetValue<string>());
            await server.Delete(ids[0]);
            ids.RemoveAt(0);
            ids.Add((await server.Open(new { source = "push" }))["id"]!.GetValue<string>());
        }
        finally
        {
            foreach (var id in ids) await server.Delete(id);
        }
    }

    [Fact]
    public async Task BadQuestionsAndUnknownStreams_Are4xx()
    {
        var (s0, e0) = await Send(HttpMethod.Get, "v1/streams/str_nothere");
        Assert.Equal(HttpStatusCode.NotFound, s0);
        Assert.Equal("stream_not_found", e0["code"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.NotFound, (await Send(HttpMethod.Get, "v1/streams/str_nothere/events")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Send(HttpMethod.Post, "v1/streams/str_nothere/questions", "{\"text\": \"hi\"}")).Status);
        var id = (await server.Open(new { source = "push" }))["id"]!.GetValue<string>();
        try
        {
            foreach (var body in new[] { "{\"text\": \"\"}", "{\"text\": 3}", "{}", "not json", "{\"text\": \"two\\nlines\"}" })
            {
                var (s, _) = await Send(HttpMethod.Post, $"v1/streams/{id}/questions", body);
                Assert.True(s == HttpStatusCode.BadRequest, body);
            }
            var (ws, wsError) = await Send(HttpMethod.Get, $"v1/streams/{id}/ws");
            Assert.Equal(HttpStatusCode.BadRequest, ws);
            Assert.Equal("websocket_required", wsError["code"]!.GetValue<string>());
            // Questions wait for frames; past the limit the next is refused until one is answered.
            for (int i = 0; i < 8; i++) await server.Ask(id, $"question {i} ?");
            var (full, fullError) = await Send(HttpMethod.Post, $"v1/streams/{id}/questions", "{\"text\": \"one more ?\"}");
            Assert.Equal(HttpStatusCode.TooManyRequests, full);
            Assert.Equal("too_many_questions", fullError["code"]!.GetValue<string>());
        }
        finally { await server.Delete(id); }
        await AssertHealthy();
        server.AssertNoErrors();
    }
}
