using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// Seeded mutations of valid stream requests and questions against the real server: every answer
/// is a 2xx or a 4xx error JSON, never a 5xx or a hang, no mutant opens a file outside the media
/// folder, and every stream a mutant opened is deleted again.
/// </summary>
[Collection("streams server")]
public class StreamFuzzTests(StreamServer server, ITestOutputHelper output)
{
    static readonly JsonNode?[] Oddities =
    [
        null, true, false, 0, -1, 1, 5, 0.5, 1e308, -1e308, long.MaxValue, 100_000, "", " ", "push", "clip.mp4", "../clip.mp4",
        "/etc/passwd", "escape.mp4", "escape-dir/secret.mp4", "0", "99", "every:0", "every:3", "change", "finished", "gpe", "reencode",
        "rtsp://", "http://", "http://127.0.0.1:9/x", "file:///etc/passwd", "\u0000", "\ud800", "é 漢字 🙂", new string('a', 3000),
        new JsonArray(), new JsonObject(), new JsonArray(1, "a", null),
    ];

    static readonly string[] Keys = ["source", "prompt", "policy", "frame_budget_ms", "prune", "mode", "stride", "window", "gate", "loop", "max_tokens", "fps", "extra"];

    [Fact]
    public async Task MutatedStreamRequests_AreAnswered2xxOr4xxJson_NeverA5xxOrAHang()
    {
        var rng = new Random(20260603);
        JsonObject[] seeds =
        [
            new() { ["source"] = "push", ["fps"] = 8, ["policy"] = "every:2" },
            new() { ["source"] = StreamServer.Clip, ["loop"] = true, ["prompt"] = "describe the scene .", ["frame_budget_ms"] = 200, ["stride"] = 3 },
            new() { ["source"] = "push", ["prune"] = false, ["mode"] = "reencode", ["max_tokens"] = 8 },
        ];
        // The server is shared by its collection: only what this test opened must be gone at the end.
        var before = server.Api.Streams!.All.Select(s => s.Id).ToHashSet();
        using var http = server.Client();
        http.Timeout = TimeSpan.FromSeconds(60);
        var statuses = new Dictionary<int, int>();
        for (int i = 0; i < 150; i++)
        {
            var seed = seeds[rng.Next(seeds.Length)];
            var body = i % 3 == 0 ? MutateBytes(Encoding.UTF8.GetBytes(seed.ToJsonString()), rng) : Encoding.UTF8.GetBytes(MutateTree(seed, rng).ToJsonString());
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            HttpResponseMessage response;
            try { response = await http.PostAsync("v1/streams", content); }
            catch (TaskCanceledException) { Assert.Fail($"request {i} hung: {Encoding.UTF8.GetString(body)}"); throw; }
            using (response)
            {
                int status = (int)response.StatusCode;
                statuses[status] = statuses.GetValueOrDefault(status) + 1;
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(status is 201 or (>= 400 and < 500), $"request {i} got {status}: {text}\nrequest: {Encoding.UTF8.GetString(body)}\nserver log: {server.Warnings}");
                var json = JsonNode.Parse(text)!;
                if (status == 201)
                {
                    var source = json["source"]!.GetValue<string>();
                    Assert.DoesNotContain("secret", source);
                    Assert.False(source.StartsWith('/') || source.StartsWith(".."), source);
                    // A question on it, mutated too.
                    var id = json["id"]!.GetValue<string>();
                    var question = MutateTree(new JsonObject { ["text"] = "what colour is the cross ?" }, rng).ToJsonString();
                    using var q = await http.PostAsync($"v1/streams/{id}/questions", new StringContent(question, Encoding.UTF8, "application/json"));
                    Assert.True((int)q.StatusCode is 202 or 400, $"question {question}: {(int)q.StatusCode} {await q.Content.ReadAsStringAsync()}");
                    await server.Delete(id);
                }
                else Assert.True(json["error"]?["message"]?.GetValue<string>() is { Length: > 0 }, $"request {i}: {status} without error JSON: {text}");
            }
        }
        output.WriteLine("statuses: " + string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        Assert.True(statuses.GetValueOrDefault(201) >= 10, "too few valid mutants");
        Assert.True(statuses.GetValueOrDefault(400) >= 30, "too few refused mutants");
        // A deleted stream leaves the hub once its loop has stopped: give that a moment.
        IEnumerable<string> Ours() => server.Api.Streams!.All.Select(s => s.Id).Where(id => !before.Contains(id));
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); Ours().Any() && sw.Elapsed < TimeSpan.FromSeconds(10);) await Task.Delay(50);
        Assert.Empty(Ours());
        server.AssertNoErrors();
    }

    static byte[] MutateBytes(byte[] b, Random rng)
    {
        var list = b.ToList();
        for (int n = rng.Next(1, 4); n > 0 && list.Count > 0; n--)
        {
            int at = rng.Next(list.Count);
            switch (rng.Next(5))
            {
                case 0: list[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: list.RemoveRange(at, Math.Min(list.Count - at, rng.Next(1, 20))); break;
                case 2: list.InsertRange(at, list.Skip(at).Take(rng.Next(1, 20)).ToList()); break;
                case 3: list.InsertRange(at, Encoding.UTF8.GetBytes(new[] { "{", "}", "[", "]", "\"", ",", ":", "\\", "null", "\\u0000", "é", "../" }[rng.Next(12)])); break;
                default: list.RemoveRange(at, list.Count - at); break;
            }
        }
        return list.ToArray();
    }

    static JsonNode MutateTree(JsonObject seed, Random rng)
    {
        var root = (JsonObject)seed.DeepClone();
        for (int n = rng.Next(1, 3); n > 0; n--)
        {
            var odd = Oddities[rng.Next(Oddities.Length)]?.DeepClone();
            switch (rng.Next(3))
            {
                case 0 when root.Count > 0: root.Remove(root.ElementAt(rng.Next(root.Count)).Key); break;
                case 1: root[Keys[rng.Next(Keys.Length)]] = odd; break;
                default: root[root.Count > 0 ? root.ElementAt(rng.Next(root.Count)).Key : "source"] = odd; break;
            }
        }
        return root;
    }
}
