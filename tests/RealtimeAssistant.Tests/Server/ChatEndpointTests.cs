using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Server;

/// <summary>What POST /v1/chat/completions answers on the demo model, read off the wire (raw HTTP, no client library).</summary>
public class ChatEndpointTests(InProcessServer server) : IClassFixture<InProcessServer>
{
    static readonly Lazy<string> Scene = new(() =>
    {
        using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(5), 2, 3), 128, 128);
        return "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"));
    });

    async Task<(HttpStatusCode Status, string Text)> Post(JsonObject body)
    {
        using var content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var r = await server.Http.PostAsync("v1/chat/completions", content);
        return (r.StatusCode, await r.Content.ReadAsStringAsync());
    }

    async Task<JsonNode> Completion(JsonObject body)
    {
        var (status, text) = await Post(body);
        Assert.True(status == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    static string Content(JsonNode c) => c["choices"]![0]!["message"]!["content"]!.GetValue<string>();

    [Fact]
    public async Task MaxTokens_EndsWithFinishReasonLength_AndUsageCountsTokens()
    {
        var c = await Completion(ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], "describe the scene .", maxTokens: 2));
        Assert.Equal("length", c["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.Equal(2, c["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(2, Content(c).Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);
        var full = await Completion(ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], "describe the scene ."));
        Assert.Equal("stop", full["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.StartsWith(Content(c), Content(full));
        // max_completion_tokens is the newer name of the same limit.
        var body = ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], "describe the scene .");
        body["max_completion_tokens"] = 3;
        Assert.Equal(3, (await Completion(body))["usage"]!["completion_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task Sampling_IsReproducibleWithASeed()
    {
        JsonObject Body(long seed)
        {
            var b = ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], "describe the scene .", maxTokens: 24);
            b["temperature"] = 2; // the demo model is sure of most words: only a hot sampler varies them
            b["seed"] = seed;
            return b;
        }
        var texts = new List<string>();
        for (long seed = 1; seed <= 6; seed++) texts.Add(Content(await Completion(Body(seed))));
        Assert.Equal(texts[0], Content(await Completion(Body(1))));
        Assert.Equal(texts[3], Content(await Completion(Body(4))));
        Assert.True(texts.Distinct().Count() > 1, "six seeds at temperature 2 gave one text: the sampler ignored them");
    }

    [Fact]
    public async Task ConcurrentRequests_AreServedOneAtATime_WithTheAnswersTheyGetAlone()
    {
        string Image(int seed)
        {
            using var img = SceneRenderer.Render(SceneSampler.Sample(new Random(seed), 1, 3), 96, 96);
            return "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"));
        }
        var bodies = Enumerable.Range(40, 6).Select(s => ServerTestSupport.ChatBody(server.ModelId, [Image(s)], null, stream: s % 2 == 0)).ToList();
        var alone = new List<string>();
        foreach (var b in bodies) alone.Add(Text(await Post(b)));
        var together = await Task.WhenAll(bodies.Select(async b => Text(await Post(b))));
        Assert.Equal(alone, together);
        Assert.True(alone.Distinct().Count() > 1);
    }

    /// <summary>The completion's text from a JSON reply or an event stream.</summary>
    static string Text((HttpStatusCode Status, string Text) r)
    {
        Assert.Equal(HttpStatusCode.OK, r.Status);
        if (!r.Text.StartsWith("data: ")) return Content(JsonNode.Parse(r.Text)!);
        var sb = new StringBuilder();
        foreach (var line in r.Text.Split('\n').Where(l => l.StartsWith("data: {")))
            if (JsonNode.Parse(line[6..])!["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"] is { } c) sb.Append(c.GetValue<string>());
        return sb.ToString();
    }

    [Fact]
    public async Task TextOnly_AndSeveralImages_AreAnswered()
    {
        var text = await Completion(new JsonObject
        {
            ["model"] = server.ModelId, ["temperature"] = 0, ["max_tokens"] = 4,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "describe the scene ." }),
        });
        Assert.Equal(4, text["usage"]!["prompt_tokens"]!.GetValue<int>()); // four words, no image
        var two = await Completion(ServerTestSupport.ChatBody(server.ModelId, [Scene.Value, Scene.Value], null, maxTokens: 4));
        Assert.Equal(2 * 65 + 4, two["usage"]!["prompt_tokens"]!.GetValue<int>()); // per frame: 64 image tokens and the marker
    }

    [Fact]
    public async Task StreamedChunks_AreOpenAisFormat()
    {
        var body = ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], null, stream: true);
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        using var content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await server.Http.PostAsync("v1/chat/completions", content);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("no-cache", response.Headers.CacheControl!.ToString());
        var raw = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("\n\ndata: [DONE]\n\n", raw);
        var chunks = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e[6..]).SkipLast(1).Select(j => JsonNode.Parse(j)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        Assert.Single(chunks.Select(c => c["id"]!.GetValue<string>()).Distinct());
        Assert.Equal("assistant", chunks[0]["choices"]![0]!["delta"]!["role"]!.GetValue<string>());
        var finish = chunks[^2]["choices"]![0]!;
        Assert.Equal("stop", finish["finish_reason"]!.GetValue<string>());
        Assert.Empty(finish["delta"]!.AsObject());
        Assert.Empty(chunks[^1]["choices"]!.AsArray()); // the usage chunk
        var contentChunks = chunks.Skip(1).SkipLast(2).ToList();
        Assert.All(contentChunks, c => Assert.Null(c["choices"]![0]!["finish_reason"]));
        Assert.Equal(contentChunks.Count, chunks[^1]["usage"]!["completion_tokens"]!.GetValue<int>()); // one chunk per word-level token
        Assert.All(chunks.SkipLast(1), c => Assert.True(c.AsObject().ContainsKey("usage") && c["usage"] is null));
    }

    /// <summary>
    /// logprobs: true (with top_logprobs) gives every completion token its log-probability, text
    /// and bytes, and the most likely tokens at its step: whole in a chat.completion, spread over
    /// the chunks of a stream, the same either way.
    /// </summary>
    [Fact]
    public async Task LogProbs_GiveEachTokenItsLogProbability_AndTheMostLikelyAlternatives()
    {
        var body = ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], null, maxTokens: 12);
        body["logprobs"] = true;
        body["top_logprobs"] = 3;
        var whole = await Completion(body);
        var entries = whole["choices"]![0]!["logprobs"]!["content"]!.AsArray();
        Assert.Equal(whole["usage"]!["completion_tokens"]!.GetValue<int>(), entries.Count);
        // The tokens' texts are the completion's text; their bytes are their texts'.
        Assert.Equal(Content(whole), string.Concat(entries.Select(e => e!["token"]!.GetValue<string>())));
        foreach (var e in entries)
        {
            var logprob = e!["logprob"]!.GetValue<double>();
            Assert.InRange(logprob, double.MinValue, 0);
            Assert.Equal(Encoding.UTF8.GetBytes(e["token"]!.GetValue<string>()), e["bytes"]!.AsArray().Select(b => (byte)b!.GetValue<int>()));
            var top = e["top_logprobs"]!.AsArray();
            Assert.Equal(3, top.Count);
            // Greedy: the token taken is the most likely one; the list runs from the most likely down, and its mass is at most 1.
            Assert.Equal(e["token"]!.GetValue<string>(), top[0]!["token"]!.GetValue<string>());
            Assert.Equal(logprob, top[0]!["logprob"]!.GetValue<double>(), 5);
            var values = top.Select(t => t!["logprob"]!.GetValue<double>()).ToList();
            Assert.Equal(values.OrderDescending(), values);
            Assert.InRange(values.Sum(Math.Exp), 0, 1 + 1e-5);
        }

        body["stream"] = true;
        var (status, raw) = await Post(body);
        Assert.Equal(HttpStatusCode.OK, status);
        var streamed = raw.Split('\n').Where(l => l.StartsWith("data: {")).Select(l => JsonNode.Parse(l[6..])!["choices"]!.AsArray().FirstOrDefault()?["logprobs"]?["content"])
            .Where(c => c is not null).SelectMany(c => c!.AsArray()).ToList();
        Assert.Equal(entries.Select(e => e!.ToJsonString()), streamed.Select(e => e!.ToJsonString()));

        // Without logprobs there are none.
        body.Remove("logprobs"); body.Remove("top_logprobs"); body["stream"] = false;
        Assert.Null((await Completion(body))["choices"]![0]!["logprobs"]);
    }

    /// <summary>
    /// With a stop sequence, the log-probabilities are those of the content's tokens: the stop
    /// sequence's tokens, whose text never goes out, are not among them, streamed or whole, and a
    /// streamed token's entry comes with the chunk its text begins in, not before.
    /// </summary>
    [Fact]
    public async Task LogProbs_WithAStopSequence_AreTheContentsTokensOnly()
    {
        var body = ServerTestSupport.ChatBody(server.ModelId, [Scene.Value], null, maxTokens: 12);
        body["logprobs"] = true;
        var tokens = (await Completion(body))["choices"]![0]!["logprobs"]!["content"]!.AsArray().Select(e => e!["token"]!.GetValue<string>()).ToList();
        // A stop sequence two tokens long that first begins at token 3 (the demo model's tokens are words).
        int at = Enumerable.Range(3, tokens.Count - 4).First(i => string.Concat(tokens).IndexOf(tokens[i] + tokens[i + 1], StringComparison.Ordinal) == string.Concat(tokens.Take(i)).Length);
        body["stop"] = tokens[at] + tokens[at + 1];
        var whole = await Completion(body);
        Assert.Equal(string.Concat(tokens.Take(at)), Content(whole));
        Assert.Equal(tokens.Take(at), whole["choices"]![0]!["logprobs"]!["content"]!.AsArray().Select(e => e!["token"]!.GetValue<string>()));

        body["stream"] = true;
        var (status, raw) = await Post(body);
        Assert.Equal(HttpStatusCode.OK, status);
        var chunks = raw.Split('\n').Where(l => l.StartsWith("data: {")).Select(l => JsonNode.Parse(l[6..])!["choices"]!.AsArray().FirstOrDefault()).Where(c => c is not null).ToList();
        var streamed = chunks.SelectMany(c => c!["logprobs"]!["content"]!.AsArray().Select(e => e!["token"]!.GetValue<string>())).ToList();
        Assert.Equal(tokens.Take(at), streamed);
        // Up to each chunk, the entries sent spell at least the text sent: none waits past its text, none runs ahead of it.
        string text = "", spelled = "";
        foreach (var c in chunks)
        {
            text += c!["delta"]!["content"]?.GetValue<string>() ?? "";
            spelled += string.Concat(c["logprobs"]!["content"]!.AsArray().Select(e => e!["token"]!.GetValue<string>()));
            Assert.Equal(text, spelled);
        }
    }
}
