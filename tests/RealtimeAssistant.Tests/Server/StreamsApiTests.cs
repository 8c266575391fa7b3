using System.Net;
using System.Text.Json.Nodes;
using OpenCvSharp;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The live-streams API as a client uses it, on the demo model: a stream on a generated clip
/// gives caption deltas and numbered segments over SSE, answers a question tagged with its id,
/// resumes with Last-Event-ID without loss or repeats, shows its video as MJPEG, and is gone,
/// threads and all, once deleted. Every wait is bounded (the machine may be busy: bounds are loose).
/// </summary>
[Collection("streams server")]
public class StreamsApiTests(StreamServer server, ITestOutputHelper log)
{
    static readonly TimeSpan Patience = TimeSpan.FromMinutes(4);

    [Fact]
    public async Task AStreamOnAClip_GivesSegments_AnswersAQuestion_AndIsFreedWhenDeleted()
    {
        // /metrics counts what the streams wrote (other tests may add to it: at least ours).
        var answersBefore = await ServerTestSupport.Metric(server.Http, "ra_stream_captions", "kind=\"answer\",mode=\"gpe\"");
        var captionsBefore = await ServerTestSupport.Metric(server.Http, "ra_stream_captions", "kind=\"caption\",mode=\"gpe\"");
        var readsBefore = await ServerTestSupport.Metric(server.Http, "ra_stream_frame_read_seconds_count");
        var opened = await server.Open(new { source = StreamServer.Clip, loop = true });
        var id = opened["id"]!.GetValue<string>();
        Assert.StartsWith("str_", id);
        Assert.Equal("file", opened["kind"]!.GetValue<string>());
        Assert.Equal(StreamServer.Clip, opened["source"]!.GetValue<string>());
        Assert.Equal("gpe", opened["mode"]!.GetValue<string>());
        var stream = server.Api.Streams!.Get(id);

        using var cts = new CancellationTokenSource(Patience);
        var segments = new List<JsonNode>();
        var types = new HashSet<string>();
        string? questionId = null, answerDeltas = "";
        JsonNode? answer = null, stats = null;
        long last = 0;
        await foreach (var e in server.Events(id, ct: cts.Token))
        {
            Assert.Equal(last + 1, e.Id); // numbered 1, 2, 3, … with nothing left out
            last = e.Id!.Value;
            types.Add(e.Type);
            switch (e.Type)
            {
                case "segment":
                    segments.Add(e.Data);
                    log.WriteLine($"segment {e.Data["segment"]} at {e.Data["time"]} s: {e.Data["text"]} ({e.Data["latency_ms"]} ms)");
                    if (segments.Count == 2) questionId = await server.Ask(id, "what colour is the cross ?");
                    break;
                case "delta" when questionId is not null && e.Data["question_id"]?.GetValue<string>() == questionId:
                    answerDeltas += e.Data["text"]!.GetValue<string>();
                    break;
                case "stats":
                    stats = e.Data;
                    break;
            }
            if (e.Type == "answer" && e.Data["question_id"]?.GetValue<string>() == questionId) { answer = e.Data; break; }
        }
        Assert.True(answer is not null, $"no answer within {Patience}; saw {string.Join(", ", types)}");
        Assert.Contains("state", types);
        Assert.Contains("delta", types);
        Assert.Contains("question", types);

        // Segments: numbered from 1, with text, stream time and the frame they describe, in order.
        Assert.True(segments.Count >= 2);
        Assert.Equal(1, segments[0]["segment"]!.GetValue<long>());
        Assert.Equal(2, segments[1]["segment"]!.GetValue<long>());
        Assert.All(segments, s => Assert.False(string.IsNullOrWhiteSpace(s["text"]!.GetValue<string>())));
        Assert.True(segments[1]["time"]!.GetValue<double>() > segments[0]["time"]!.GetValue<double>());
        Assert.True(segments[1]["frame"]!.GetValue<long>() > segments[0]["frame"]!.GetValue<long>());
        Assert.Equal("gpe", segments[0]["mode"]!.GetValue<string>());
        Assert.All(segments, s =>
        {
            Assert.True(s["visual_tokens"]!.GetValue<int>() > 0);
            Assert.InRange(s["kept_tokens"]!.GetValue<int>(), 0, s["visual_tokens"]!.GetValue<int>());
            // The heatmap's grid, when the read pruned the frame (the schedule's first level spares the newest frame).
            if (s["kept_grid"] is { } grid)
            {
                Assert.Equal(grid["width"]!.GetValue<int>() * grid["height"]!.GetValue<int>(), grid["cells"]!.AsArray().Count);
                Assert.All(grid["cells"]!.AsArray(), c => Assert.InRange(c!.GetValue<double>(), 0, 1));
            }
        });

        // The answer: tagged with the question's id, its text the deltas that streamed in.
        Assert.Equal("what colour is the cross ?", answer!["question"]!.GetValue<string>());
        Assert.False(string.IsNullOrWhiteSpace(answer["text"]!.GetValue<string>()));
        Assert.Equal(answerDeltas.Trim(), answer["text"]!.GetValue<string>());
        Assert.True(answer["frame"]!.GetValue<long>() >= segments[1]["frame"]!.GetValue<long>());

        // The HUD's numbers, in the events and in the stream's state.
        Assert.NotNull(stats);
        var state = await server.State(id);
        log.WriteLine(state.ToJsonString());
        Assert.Equal("running", state["state"]!.GetValue<string>());
        var n = state["stats"]!;
        Assert.True(n["fps"]!.GetValue<double>() > 0);
        Assert.True(n["captions"]!.GetValue<long>() >= 2);
        Assert.Equal(1, n["answers"]!.GetValue<long>());
        Assert.True(n["glass_to_caption_ms"]!["p95"]!.GetValue<double>() >= n["glass_to_caption_ms"]!["p50"]!.GetValue<double>());
        Assert.True(n["glass_to_caption_ms"]!["p50"]!.GetValue<double>() > 0);
        Assert.NotNull(n["frame_budget_ms"]); // the governor is on by default: one stride of the clip's frames
        Assert.Equal(1000.0 * 5 / 15, n["frame_budget_ms"]!.GetValue<double>(), 1);
        Assert.NotNull(n["governor"]!["level"]);
        Assert.InRange(n["reads_over_budget"]!.GetValue<long>(), 0, n["frames_read"]!.GetValue<long>());
        Assert.True(n["dropped_frames"]!.GetValue<long>() >= 0);
        Assert.Equal(2, state["window"]!.GetValue<int>());
        Assert.InRange(n["frames_in_window"]!.GetValue<int>(), 1, 2); // the default window: 2, or 1 while a read evicts before it adds
        Assert.Equal("playing (realtime)", state["source_status"]!["status"]!.GetValue<string>());

        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_stream_captions", "kind=\"caption\",mode=\"gpe\"") >= captionsBefore + segments.Count);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_stream_captions", "kind=\"answer\",mode=\"gpe\"") >= answersBefore + 1);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_stream_frame_read_seconds_count") >= readsBefore + segments.Count);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_streams_open") >= 1);
        Assert.True(await ServerTestSupport.Metric(server.Http, "ra_stream_glass_to_caption_seconds_count", "kind=\"caption\"") >= segments.Count);

        // Listed while it runs; deleted, it is gone and so are its threads and its followers.
        var list = JsonNode.Parse(await server.Http.GetStringAsync("v1/streams"))!;
        Assert.Contains(list["data"]!.AsArray(), s => s!["id"]!.GetValue<string>() == id);
        var follower = Task.Run(async () =>
        {
            var seen = new List<SseMessage>();
            await foreach (var e in server.Events(id, last.ToString())) seen.Add(e);
            return seen;
        });
        await Task.Delay(500);
        await server.Delete(id);
        Assert.True(stream.ThreadsStopped, "the stream's threads still run after DELETE");
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync($"v1/streams/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.DeleteAsync($"v1/streams/{id}")).StatusCode);
        var tail = await follower.WaitAsync(TimeSpan.FromSeconds(30)); // the event stream ended with the stream
        Assert.Equal("end", tail[^1].Type);
        Assert.Equal("deleted", tail[^1].Data["reason"]!.GetValue<string>());
        server.AssertNoErrors();
    }

    /// <summary>A stream's window is how many frames its session keeps: what each caption sees.</summary>
    [Fact]
    public async Task AStreamKeepsTheFramesItsWindowAsksFor()
    {
        var opened = await server.Open(new { source = StreamServer.Clip, loop = true, window = 4, gate = 0, frame_budget_ms = 0 });
        var id = opened["id"]!.GetValue<string>();
        try
        {
            Assert.Equal(4, opened["window"]!.GetValue<int>());
            // A read evicts the oldest frame before it adds its own, so a poll may catch 3 mid-read, never 5.
            var until = DateTime.UtcNow + Patience;
            JsonNode n;
            int held;
            do
            {
                await Task.Delay(200, TestContext.Current.CancellationToken);
                n = (await server.State(id))["stats"]!;
                held = n["frames_in_window"]!.GetValue<int>();
                Assert.InRange(held, 0, 4);
            }
            while ((n["frames_read"]!.GetValue<long>() < 6 || held != 4) && DateTime.UtcNow < until);
            Assert.True(n["frames_read"]!.GetValue<long>() >= 6, $"only {n["frames_read"]} frames read in {Patience}");
            Assert.Equal(4, held);
        }
        finally { await server.Delete(id); }
        server.AssertNoErrors();
    }

    [Fact]
    public async Task LastEventId_ResumesWithoutLossOrRepeats()
    {
        var id = (await server.Open(new { source = StreamServer.Clip, loop = true, frame_budget_ms = 0 }))["id"]!.GetValue<string>();
        try
        {
            using var cts = new CancellationTokenSource(Patience);
            // A first connection reads until a segment has come, then drops.
            var first = new List<SseMessage>();
            await foreach (var e in server.Events(id, ct: cts.Token))
            {
                first.Add(e);
                if (first.Count(x => x.Type == "segment") >= 1 && first.Count >= 12) break;
            }
            var cut = first[^1].Id!.Value;
            await Task.Delay(1500); // events go on meanwhile

            // Resumed from the last id it saw: the very next event, then on, each once.
            var resumed = new List<SseMessage>();
            await foreach (var e in server.Events(id, cut.ToString(), cts.Token))
            {
                resumed.Add(e);
                if (resumed.Count(x => x.Type == "segment") >= 1 && resumed.Count >= 12) break;
            }
            Assert.Equal(cut + 1, resumed[0].Id);
            var ids = first.Concat(resumed).Select(e => e.Id!.Value).ToList();
            Assert.Equal(Enumerable.Range(1, ids.Count).Select(i => (long)i), ids); // contiguous from 1: no loss, no repeat

            // Resumed from the middle: the same events again, byte for byte, in the same order.
            var from = first[first.Count / 2].Id!.Value;
            var again = new List<SseMessage>();
            await foreach (var e in server.Events(id, from.ToString(), cts.Token))
            {
                again.Add(e);
                if (e.Id >= resumed[^1].Id) break;
            }
            var expected = first.Concat(resumed).Where(e => e.Id > from).ToList();
            Assert.Equal(expected.Select(e => e.ToString()), again.Select(e => e.ToString()));

            // Ids the stream never issued are the client's error.
            foreach (var bad in new[] { "abc", "-1", (resumed[^1].Id + 100_000).ToString() })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{id}/events");
                request.Headers.Add("Last-Event-ID", bad);
                var r = await server.Http.SendAsync(request);
                Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
                Assert.Equal("Last-Event-ID", JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());
            }
        }
        finally { await server.Delete(id); }
    }

    [Fact]
    public async Task TheVideo_IsMjpegAtTheClipsSize_WithTheOverlayDrawn()
    {
        var id = (await server.Open(new { source = StreamServer.Clip, loop = true }))["id"]!.GetValue<string>();
        try
        {
            using var http = server.Client();
            using var response = await http.GetAsync($"v1/streams/{id}/video", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("multipart/x-mixed-replace", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("ra-frame", response.Content.Headers.ContentType?.Parameters.Single(p => p.Name == "boundary").Value);
            using var body = await response.Content.ReadAsStreamAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var parts = new List<byte[]>();
            while (parts.Count < 3) parts.Add(await ReadPart(body, cts.Token));
            foreach (var jpeg in parts)
            {
                using var image = Cv2.ImDecode(jpeg, ImreadModes.Color);
                Assert.False(image.Empty());
                Assert.Equal(new Size(160, 160), image.Size());
            }
            Assert.DoesNotContain("without its overlay", server.Warnings); // the GL overlay was drawn, not left out
            // The HUD's dark panel sits at the top left: the clip's plain backdrops there are brighter.
            using var shown = Cv2.ImDecode(parts[^1], ImreadModes.Grayscale);
            using var raw = new VideoCapture(Path.Combine(server.Media, StreamServer.Clip));
            using var frame = new Mat();
            raw.Read(frame);
            using var rawGrey = frame.CvtColor(ColorConversionCodes.BGR2GRAY);
            var hud = new Rect(4, 4, 40, 16);
            log.WriteLine($"top-left mean: shown {shown[hud].Mean().Val0:0.0}, clip {rawGrey[hud].Mean().Val0:0.0}");
            Assert.NotEqual(rawGrey[hud].Mean().Val0, shown[hud].Mean().Val0, 1);
        }
        finally { await server.Delete(id); }
    }

    /// <summary>One part of a multipart/x-mixed-replace body: its headers, then Content-Length bytes of JPEG.</summary>
    static async Task<byte[]> ReadPart(Stream body, CancellationToken ct)
    {
        int length = -1;
        while (true)
        {
            var line = await ReadLine(body, ct);
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase)) length = int.Parse(line[15..].Trim());
            else if (line.Length == 0 && length >= 0) break;
        }
        var jpeg = new byte[length];
        await body.ReadExactlyAsync(jpeg, ct);
        return jpeg;
    }

    static async Task<string> ReadLine(Stream s, CancellationToken ct)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            await s.ReadExactlyAsync(one, ct);
            if (one[0] == '\n') break;
            if (one[0] != '\r') bytes.Add(one[0]);
        }
        return System.Text.Encoding.ASCII.GetString(bytes.ToArray());
    }

    [Fact]
    public async Task TheMediaList_ShowsTheFolder_ButNoLinkThatLeadsOut()
    {
        var list = JsonNode.Parse(await server.Http.GetStringAsync("v1/media"))!["data"]!.AsArray().Select(f => f!["path"]!.GetValue<string>()).ToList();
        Assert.Contains(StreamServer.Clip, list);
        Assert.Contains("inside-link.mp4", list);
        Assert.Contains("notes.mp4", list);
        Assert.DoesNotContain("escape.mp4", list);
        Assert.DoesNotContain(list, p => p.StartsWith("escape-dir"));
    }
}
