using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using OpenCvSharp;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// Requests a client gets wrong, against the real server (Kestrel on loopback, the demo model):
/// each is answered with the right 4xx and OpenAI's error JSON, and the server answers the next
/// good request as before.
/// </summary>
public class BadRequestTests(InProcessServer server) : IClassFixture<InProcessServer>
{
    static readonly Lazy<string> SmallPng = new(() =>
    {
        using var img = new Mat(48, 48, MatType.CV_8UC3, new Scalar(30, 140, 220));
        Cv2.Circle(img, new Point(24, 24), 12, new Scalar(0, 0, 255), -1);
        return "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"));
    });

    string Good(string? image = null, string? text = "describe the scene .") =>
        ServerTestSupport.ChatBody(server.ModelId, [image ?? SmallPng.Value], text, maxTokens: 12).ToJsonString();

    async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> Post(HttpContent content, string? key = InProcessServer.Key, string path = "v1/chat/completions",
        bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        if (expectContinue) request.Headers.ExpectContinue = true;
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(60) };
        var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        JsonNode? body = null;
        try { body = JsonNode.Parse(text); } catch (System.Text.Json.JsonException) { }
        return (response.StatusCode, body, response);
    }

    Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> Post(string json, string? key = InProcessServer.Key) =>
        Post(new StringContent(json, Encoding.UTF8, "application/json"), key);

    /// <summary>OpenAI's error shape: {"error": {"message", "type", "param", "code"}}, and nothing of a stack trace.</summary>
    static JsonNode AssertError(HttpStatusCode expected, (HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) r, string? code = null)
    {
        Assert.Equal(expected, r.Status);
        Assert.Equal("application/json", r.Response.Content.Headers.ContentType?.MediaType);
        var error = Assert.IsType<JsonObject>(r.Body?["error"]);
        Assert.Equal(["message", "type", "param", "code"], error.Select(p => p.Key));
        var message = error["message"]!.GetValue<string>();
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.DoesNotContain("   at ", message); // no stack frames
        Assert.False(string.IsNullOrEmpty(error["type"]!.GetValue<string>()));
        if (code is not null) Assert.Equal(code, error["code"]?.GetValue<string>());
        return error;
    }

    async Task AssertHealthy()
    {
        var r = await Post(Good());
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("chat.completion", r.Body!["object"]!.GetValue<string>());
        Assert.False(string.IsNullOrWhiteSpace(r.Body["choices"]![0]!["message"]!["content"]!.GetValue<string>()));
    }

    [Fact]
    public async Task MalformedJson_Is400()
    {
        var e = AssertError(HttpStatusCode.BadRequest, await Post("{\"model\": \"demo-model\", \"messages\": [}"));
        Assert.Contains("parse the JSON body", e["message"]!.GetValue<string>());
        AssertError(HttpStatusCode.BadRequest, await Post("[1, 2, 3]"));
        AssertError(HttpStatusCode.BadRequest, await Post(""));
        await AssertHealthy();
    }

    [Fact]
    public async Task WrongImageType_Is400()
    {
        var gif = "data:image/gif;base64," + Convert.ToBase64String("GIF89a\x01\x00\x01\x00\x00\x00\x00;"u8.ToArray());
        var e = AssertError(HttpStatusCode.BadRequest, await Post(Good(gif)), "invalid_image_format");
        Assert.Contains("image/gif", e["message"]!.GetValue<string>());
        Assert.Equal("messages[0].content[0].image_url.url", e["param"]!.GetValue<string>());
        // Declared PNG, but the bytes are a JPEG.
        using var img = new Mat(16, 16, MatType.CV_8UC3, Scalar.All(90));
        var lying = "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".jpg"));
        AssertError(HttpStatusCode.BadRequest, await Post(Good(lying)), "invalid_image_format");
        // Not an image at all, and not base64.
        AssertError(HttpStatusCode.BadRequest, await Post(Good("data:image/png;base64,iVBORw0KGgo=")), "image_parse_error");
        AssertError(HttpStatusCode.BadRequest, await Post(Good("data:image/png;base64,@@not base64@@")), "image_parse_error");
        await AssertHealthy();
    }

    [Fact]
    public async Task RemoteImageUrl_IsRefusedWithAClearError()
    {
        var e = AssertError(HttpStatusCode.BadRequest, await Post(Good("https://example.com/cat.png")), "invalid_image_url");
        Assert.Contains("data: URI", e["message"]!.GetValue<string>());
        AssertError(HttpStatusCode.BadRequest, await Post(Good("file:///etc/passwd")), "invalid_image_url");
        await AssertHealthy();
    }

    [Fact]
    public async Task OversizedBody_Is413_WithOrWithoutContentLength()
    {
        var big = "{\"model\": \"demo-model\", \"padding\": \"" + new string('x', (int)InProcessServer.MaxBody) + "\"}";
        // As curl sends a large body: "Expect: 100-continue", so a server that refuses it from its
        // headers answers before the body is sent (without it, the answer races the upload, and a
        // client still writing when the server closes sees a broken pipe instead of the 413).
        AssertError(HttpStatusCode.RequestEntityTooLarge, await Post(new StringContent(big, Encoding.UTF8, "application/json"), expectContinue: true), "request_too_large");
        // Chunked: no Content-Length, so the limit trips while reading.
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        chunked.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var r = await Post(new NoLengthContent(chunked), expectContinue: true);
        AssertError(HttpStatusCode.RequestEntityTooLarge, r, "request_too_large");
        await AssertHealthy();
    }

    [Fact]
    public async Task TooManyPixels_Is400_EvenWhenOnlyTheHeaderClaimsThem()
    {
        using var img = new Mat(600, 600, MatType.CV_8UC3, Scalar.All(50)); // 360,000 > 262,144
        var e = AssertError(HttpStatusCode.BadRequest, await Post(Good("data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png")))), "image_too_large");
        Assert.Contains("600x600", e["message"]!.GetValue<string>());
        // A tiny file whose header claims 60000×60000: refused before any decoding.
        using var small = new Mat(8, 8, MatType.CV_8UC3, Scalar.All(50));
        var png = small.ImEncode(".png");
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 60000);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), 60000);
        AssertError(HttpStatusCode.BadRequest, await Post(Good("data:image/png;base64," + Convert.ToBase64String(png))), "image_too_large");
        await AssertHealthy();
    }

    [Fact]
    public async Task MissingOrWrongApiKey_Is401()
    {
        var missing = await Post(Good(), key: null);
        AssertError(HttpStatusCode.Unauthorized, missing);
        Assert.Contains("API key", missing.Body!["error"]!["message"]!.GetValue<string>());
        Assert.Equal("Bearer", missing.Response.Headers.WwwAuthenticate.Single().Scheme);
        AssertError(HttpStatusCode.Unauthorized, await Post(Good(), key: "wrong-key"), "invalid_api_key");
        AssertError(HttpStatusCode.Unauthorized, await Post(Good(), key: InProcessServer.Key + "x"), "invalid_api_key");
        // GET endpoints too.
        using var http = new HttpClient { BaseAddress = server.Url };
        var models = await http.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        await AssertHealthy();
    }

    [Fact]
    public async Task WrongParameters_Are4xxNamingTheParameter()
    {
        JsonObject Body() => JsonNode.Parse(Good())!.AsObject();
        async Task<JsonNode> Expect(HttpStatusCode status, JsonObject body, string param)
        {
            var e = AssertError(status, await Post(body.ToJsonString()));
            Assert.Equal(param, e["param"]?.GetValue<string>());
            return e;
        }
        var b = Body(); b["model"] = "gpt-4o";
        await Expect(HttpStatusCode.NotFound, b, "model");
        b = Body(); b["n"] = 2;
        await Expect(HttpStatusCode.BadRequest, b, "n");
        b = Body(); b["temperature"] = 2.5;
        await Expect(HttpStatusCode.BadRequest, b, "temperature");
        b = Body(); b["top_p"] = "high";
        await Expect(HttpStatusCode.BadRequest, b, "top_p");
        b = Body(); b["max_tokens"] = 0;
        await Expect(HttpStatusCode.BadRequest, b, "max_tokens");
        b = Body(); b["max_tokens"] = 100_000;
        var e = await Expect(HttpStatusCode.BadRequest, b, "messages");
        Assert.Equal("context_length_exceeded", e["code"]!.GetValue<string>());
        b = Body(); b["stop"] = new JsonArray("a", "b", "c", "d", "e");
        await Expect(HttpStatusCode.BadRequest, b, "stop");
        b = Body(); b["messages"]![0]!["role"] = "wizard";
        await Expect(HttpStatusCode.BadRequest, b, "messages[0].role");
        b = Body(); b.Remove("messages");
        await Expect(HttpStatusCode.BadRequest, b, "messages");
        b = Body(); b["messages"]![0]!["content"]![0]!["type"] = "input_audio";
        await Expect(HttpStatusCode.BadRequest, b, "messages[0].content[0].type");
        // Images only in user messages, as OpenAI's API has it.
        b = Body(); b["messages"]![0]!["role"] = "system";
        await Expect(HttpStatusCode.BadRequest, b, "messages[0].content[0]");
        b = Body(); b["messages"]![0]!["content"] = new JsonArray(Enumerable.Range(0, 5).Select(_ =>
            (JsonNode)new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = SmallPng.Value } }).ToArray());
        await Expect(HttpStatusCode.BadRequest, b, "messages[0].content[4]");
        await AssertHealthy();
    }

    [Fact]
    public async Task UnknownRoutesAndMethods_AnswerErrorJson()
    {
        using var http = new HttpClient { BaseAddress = server.Url };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", InProcessServer.Key);
        var r = await http.GetAsync("v1/completions-of-nothing");
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        Assert.Equal("unknown_url", JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        r = await http.GetAsync("v1/chat/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, r.StatusCode);
        Assert.NotNull(JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["message"]);
        r = await http.GetAsync("v1/models/not-this-one");
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        var list = JsonNode.Parse(await http.GetStringAsync("v1/models"))!;
        Assert.Equal("list", list["object"]!.GetValue<string>());
        Assert.Equal(server.ModelId, list["data"]![0]!["id"]!.GetValue<string>());
        Assert.Equal(4096, list["data"]![0]!["max_model_len"]!.GetValue<int>()); // the demo model's max_position_embeddings
        Assert.Equal(server.ModelId, JsonNode.Parse(await http.GetStringAsync($"v1/models/{server.ModelId}"))!["id"]!.GetValue<string>());
    }

    [Fact]
    public async Task AClientThatLeavesMidStream_LeavesTheServerHealthy()
    {
        var body = ServerTestSupport.ChatBody(server.ModelId, [SmallPng.Value], null, maxTokens: 40, stream: true).ToJsonString();
        using var http = new HttpClient { BaseAddress = server.Url };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", InProcessServer.Key);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
        } // closed after the first event
        await AssertHealthy();
    }

    /// <summary>Content sent without a Content-Length (chunked transfer).</summary>
    sealed class NoLengthContent : HttpContent
    {
        readonly HttpContent inner;
        public NoLengthContent(HttpContent inner) { this.inner = inner; Headers.ContentType = inner.Headers.ContentType; }
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => inner.CopyToAsync(stream);
        protected override bool TryComputeLength(out long length) { length = 0; return false; }
    }
}
