using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using OpenCvSharp;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// Seeded mutations of valid chat requests against the real server: every answer is a 2xx
/// completion or a 4xx error JSON, never a 5xx, and none hangs.
/// </summary>
public class ChatFuzzTests(InProcessServer server, ITestOutputHelper output) : IClassFixture<InProcessServer>
{
    static readonly JsonNode[] Oddities =
    [
        null!, true, false, 0, -1, 1, 2, 7, 0.5, -0.0, 1e308, -1e308, 3.0000001, long.MaxValue, long.MinValue, 4096, 100_000,
        "", " ", "demo-model", "user", "assistant", "image_url", "text", "data:", "data:image/png;base64,", "https://x/y.png",
        "<image>", "<image> <image>", "</s>", "\u0000", "\ud800", "a\udc00b", "é ü 漢字 🙂", new string('a', 3000), "frame frame frame",
        new JsonArray(), new JsonObject(), new JsonArray(1, "a", null), new JsonObject { ["type"] = "text" },
        new JsonObject { ["url"] = "data:image/jpeg;base64,/9j/" },
    ];

    static readonly Lazy<(string Png, string Jpeg)> Images = new(() =>
    {
        using var img = new Mat(40, 56, MatType.CV_8UC3, new Scalar(20, 60, 20));
        Cv2.Rectangle(img, new Rect(10, 8, 20, 20), new Scalar(255, 255, 255), -1);
        return ("data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png")),
                "data:image/jpeg;base64," + Convert.ToBase64String(img.ImEncode(".jpg")));
    });

    JsonObject[] Seeds()
    {
        var (png, jpeg) = Images.Value;
        var a = ServerTestSupport.ChatBody(server.ModelId, [png], "describe the scene .", maxTokens: 6);
        var b = ServerTestSupport.ChatBody(server.ModelId, [jpeg, png], "how many objects are there ?", maxTokens: 6, stream: true);
        b["stop"] = new JsonArray("at", ".");
        b["seed"] = 5;
        b["temperature"] = 0.8;
        b["stream_options"] = new JsonObject { ["include_usage"] = true };
        var c = ServerTestSupport.ChatBody(server.ModelId, [jpeg], null, maxTokens: 6);
        c["messages"]!.AsArray().Insert(0, new JsonObject { ["role"] = "system", ["content"] = "be brief" });
        c["messages"]!.AsArray().Add(new JsonObject { ["role"] = "assistant", ["content"] = "a red circle" });
        c["messages"]!.AsArray().Add(new JsonObject { ["role"] = "user", ["content"] = "what colour is the circle ?" });
        c["top_p"] = 0.9;
        return [a, b, c];
    }

    [Fact]
    public async Task MutatedRequests_AreAnswered2xxOr4xxJson_NeverA5xxOrAHang()
    {
        var rng = new Random(20260521);
        var seeds = Seeds();
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(90) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", InProcessServer.Key);
        var statuses = new Dictionary<int, int>();
        for (int i = 0; i < 240; i++)
        {
            var seed = seeds[rng.Next(seeds.Length)];
            var body = i % 3 == 0 ? MutateBytes(Encoding.UTF8.GetBytes(seed.ToJsonString()), rng) : Encoding.UTF8.GetBytes(MutateTree(seed, rng).ToJsonString());
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            HttpResponseMessage response;
            try { response = await http.PostAsync("v1/chat/completions", content); }
            catch (TaskCanceledException) { Assert.Fail($"request {i} hung: {Show(body)}"); throw; }
            using (response)
            {
                int status = (int)response.StatusCode;
                statuses[status] = statuses.GetValueOrDefault(status) + 1;
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(status < 500, $"request {i} got {status}: {text}\nrequest: {Show(body)}\nserver log: {server.LoggedErrors}");
                if (status >= 400)
                {
                    var error = JsonNode.Parse(text)?["error"];
                    Assert.True(error?["message"]?.GetValue<string>() is { Length: > 0 }, $"request {i}: {status} without OpenAI error JSON: {text}");
                }
                else if (response.Content.Headers.ContentType?.MediaType == "text/event-stream")
                    Assert.True(text.EndsWith("data: [DONE]\n\n") || text.Contains("data: {\"error\""), $"request {i}: stream ended without [DONE]: {text}");
                else
                    Assert.NotNull(JsonNode.Parse(text)!["choices"]![0]!["message"]!["content"]!.GetValue<string>());
            }
        }
        output.WriteLine("statuses: " + string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        // The mutations reach both the validator and the model.
        Assert.True(statuses.GetValueOrDefault(200) >= 20, $"too few valid mutants: {string.Join(", ", statuses)}");
        Assert.True(statuses.GetValueOrDefault(400) >= 40, $"too few refused mutants: {string.Join(", ", statuses)}");
        // Still healthy.
        using var final = new StringContent(seeds[0].ToJsonString(), Encoding.UTF8, "application/json");
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.PostAsync("v1/chat/completions", final)).StatusCode);
    }

    static string Show(byte[] body) { var s = Encoding.UTF8.GetString(body); return s.Length <= 600 ? s : s[..600] + "…"; }

    /// <summary>Byte-level damage: flips, cuts, repeats, inserted junk, truncation.</summary>
    static byte[] MutateBytes(byte[] b, Random rng)
    {
        var list = b.ToList();
        for (int n = rng.Next(1, 4); n > 0 && list.Count > 0; n--)
        {
            int at = rng.Next(list.Count);
            switch (rng.Next(5))
            {
                case 0: list[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: list.RemoveRange(at, Math.Min(list.Count - at, rng.Next(1, 40))); break;
                case 2: list.InsertRange(at, list.Skip(at).Take(rng.Next(1, 30)).ToList()); break;
                case 3: list.InsertRange(at, Encoding.UTF8.GetBytes(new[] { "{", "}", "[", "]", "\"", ",", ":", "\\", "null", "\\u0000", "é" }[rng.Next(11)])); break;
                default: list.RemoveRange(at, list.Count - at); break;
            }
        }
        return list.ToArray();
    }

    /// <summary>Structural damage: a value replaced by an odd one, a member removed or added, an array element duplicated.</summary>
    static JsonNode MutateTree(JsonObject seed, Random rng)
    {
        var root = seed.DeepClone();
        for (int n = rng.Next(1, 3); n > 0; n--)
        {
            var nodes = new List<JsonNode>();
            void Walk(JsonNode? node)
            {
                if (node is null) return;
                nodes.Add(node);
                if (node is JsonObject o) foreach (var (_, v) in o.ToList()) Walk(v);
                else if (node is JsonArray a) foreach (var v in a.ToList()) Walk(v);
            }
            Walk(root);
            var target = nodes[rng.Next(nodes.Count)];
            var odd = Oddities[rng.Next(Oddities.Length)]?.DeepClone();
            switch (target)
            {
                case JsonObject o when rng.Next(3) == 0 && o.Count > 0:
                    o.Remove(o.ElementAt(rng.Next(o.Count)).Key);
                    break;
                case JsonObject o when rng.Next(2) == 0:
                    o[new[] { "model", "messages", "stream", "stop", "max_tokens", "max_completion_tokens", "n", "seed", "logprobs", "top_logprobs", "stream_options", "content", "role", "image_url", "url", "type", "text", "extra" }[rng.Next(18)]] = odd;
                    break;
                case JsonArray a when a.Count > 0 && rng.Next(2) == 0:
                    a.Add(a[rng.Next(a.Count)]?.DeepClone());
                    break;
                default:
                    if (target.Parent is JsonObject parent) parent[target.GetPropertyName()] = odd;
                    else if (target.Parent is JsonArray array) array[target.GetElementIndex()] = odd;
                    break;
            }
        }
        return root;
    }
}
