using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.Sse;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// POST /v1/chat/completions: one chat.completion JSON, or with stream: true, chat.completion.chunk
/// events (the role first, then content deltas, then the finish reason, optionally usage) and
/// data: [DONE] — OpenAI's wire format, so its clients work unchanged.
/// </summary>
public static class ChatCompletions
{
    public static async Task Handle(HttpContext ctx, IChatModel model, ServerOptions options, RemoteImages remote)
    {
        long arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        var body = await RequestBody.ReadAsync(ctx.Request, options.MaxRequestBytes, ctx.RequestAborted);
        var parsed = ChatRequestParser.Parse(body, options.Images);
        if (parsed.Model != model.Id)
        {
            parsed.Dispose();
            throw new ApiError(404, $"The model '{parsed.Model}' does not exist: this server serves '{model.Id}' (GET /v1/models lists it)", param: "model", code: "model_not_found");
        }
        var request = await remote.FetchAll(parsed, ctx.RequestAborted); // only a request this server would answer fetches anything
        using var generation = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        ChannelReader<GenerationEvent> events;
        try
        {
            var greedy = request.Temperature == 0 || request.TopP == 0;
            var job = new GenerationJob
            {
                Prompt = ChatPrompt.FromMessages(request.Messages, model.Format),
                MaxTokens = request.MaxTokens,
                Temperature = greedy ? 0 : request.Temperature,
                TopP = greedy ? 1 : request.TopP,
                // No seed: a fresh one, so sampled answers vary between requests as OpenAI's do.
                Seed = unchecked((ulong)(request.Seed ?? Random.Shared.NextInt64())),
                TopLogProbs = request.TopLogProbs,
                Owner = request,
            };
            events = model.Submit(job, generation.Token); // owns the request's images from here
        }
        catch
        {
            request.Dispose();
            throw;
        }

        var first = await FirstEvent(events, ctx.RequestAborted);
        if (first is GenerationFailed failed) throw failed.Error;
        var accepted = (PromptAccepted)first;
        var reply = new Reply(model.Id, request.Stop, arrived, request.TopLogProbs is not null);
        if (request.Stream ? await Stream(ctx, reply, events, accepted, request.IncludeUsage, generation) : await Whole(ctx, reply, events, accepted, generation))
            ServerMetrics.Completion(reply.FinishReason, accepted.PromptTokens, reply.CompletionTokens);
    }

    /// <summary>
    /// One chat completion through <see cref="Handle"/> before the server listens: a synthetic PNG
    /// and a greedy two-token answer, so that a client's first request does not pay the chat path's
    /// first run (the JSON reader and writer, the image decode, the chat template, the tokenizer,
    /// the model's chat prefill; BENCHMARKS, "A server's first request"). Run before the server
    /// exports its metrics, it is counted in none. Returns the ms it took.
    /// </summary>
    public static async Task<double> WarmUp(IChatModel model, ServerOptions options, CancellationToken ct)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var image = new OpenCvSharp.Mat(64, 64, OpenCvSharp.MatType.CV_8UC3, new OpenCvSharp.Scalar(40, 120, 200));
        OpenCvSharp.Cv2.ImEncode(".png", image, out var png);
        var body = Json.SerializeToUtf8Bytes(new
        {
            model = model.Id, max_tokens = 2, temperature = 0,
            messages = new[]
            {
                new { role = "user", content = new object[]
                {
                    new { type = "image_url", image_url = new { url = "data:image/png;base64," + Convert.ToBase64String(png) } },
                    new { type = "text", text = "Describe the image." },
                } },
            },
        });
        var ctx = new DefaultHttpContext { RequestAborted = ct };
        ctx.Request.Method = "POST";
        ctx.Request.ContentType = "application/json";
        ctx.Request.ContentLength = body.Length;
        ctx.Request.Body = new MemoryStream(body);
        ctx.Response.Body = System.IO.Stream.Null;
        using var remote = new RemoteImages(options.Images);
        await Handle(ctx, model, options, remote);
        return sw.Elapsed.TotalMilliseconds;
    }

    /// <summary>The completion being built: its id, the stop filter and the counts.</summary>
    sealed class Reply(string model, IReadOnlyList<string> stops, long arrived, bool logProbs)
    {
        public readonly string Id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        public readonly long Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        public readonly string Model = model;
        public readonly StopSequences Stop = new(stops);
        public int CompletionTokens;
        public bool HitLimit;
        /// <summary>The tokens' log-probabilities not yet sent, each with where its text starts in the generated text (null: the request did not ask for them).</summary>
        readonly Queue<(int Start, TokenLogProbs LogProb)>? _logProbs = logProbs ? new() : null;
        int _generated; // characters generated so far, stop sequences included

        /// <summary>
        /// OpenAI's choice.logprobs ({"content": […], "refusal": null}) for the tokens whose text has
        /// begun to go out since the last call, or null when not asked for. A token whose text the stop
        /// filter still holds back waits for it; at the end (<paramref name="final"/>), the tokens of a
        /// stop sequence, whose text never goes out, are left out, so the entries spell the content.
        /// </summary>
        public object? TakeLogProbs(bool final = false)
        {
            if (_logProbs is null) return null;
            var ready = new List<TokenLogProbs>();
            while (_logProbs.TryPeek(out var next) && (next.Start < Stop.Sent || final && !Stop.Stopped)) ready.Add(_logProbs.Dequeue().LogProb);
            if (final) _logProbs.Clear();
            var content = ready.Select(t => new
            {
                token = t.Token, logprob = t.LogProb, bytes = t.Bytes.Select(b => (int)b).ToArray(),
                top_logprobs = t.TopLogprobs.Select(a => new { token = a.Token, logprob = a.LogProb, bytes = a.Bytes.Select(b => (int)b).ToArray() }).ToArray(),
            }).ToArray();
            return new { content, refusal = (string?)null };
        }
        public string FinishReason => !Stop.Stopped && HitLimit ? "length" : "stop";
        public object Usage(int promptTokens) => new { prompt_tokens = promptTokens, completion_tokens = CompletionTokens, total_tokens = promptTokens + CompletionTokens };

        /// <summary>
        /// Feeds one event through the stop filter: the text that may go out now, or null when
        /// the generation is over (ended, or cut by a stop sequence). Throws on failure.
        /// </summary>
        public string? Take(GenerationEvent e) => e switch
        {
            TokenDelta d => Delta(d),
            GenerationEnded end => End(end),
            GenerationFailed f => throw f.Error,
            _ => "",
        };

        string? Delta(TokenDelta d)
        {
            if (d.IsToken && CompletionTokens++ == 0) ServerMetrics.FirstTokenAfter(arrived);
            if (d.LogProb is { } lp) _logProbs?.Enqueue((_generated, lp));
            _generated += d.Text.Length;
            return Stop.Push(d.Text);
        }

        string? End(GenerationEnded e)
        {
            HitLimit = e.HitLimit;
            return null;
        }
    }

    static async Task<GenerationEvent> FirstEvent(ChannelReader<GenerationEvent> events, CancellationToken ct)
    {
        if (await events.WaitToReadAsync(ct) && events.TryRead(out var e)) return e;
        throw new OperationCanceledException(ct); // the job was dropped before it began: only a cancelled request does that
    }

    /// <summary>Answers with one chat.completion; true once it is sent.</summary>
    static async Task<bool> Whole(HttpContext ctx, Reply reply, ChannelReader<GenerationEvent> events, PromptAccepted accepted, CancellationTokenSource generation)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var e in events.ReadAllAsync(ctx.RequestAborted))
        {
            var delta = reply.Take(e);
            if (delta is null) break;
            text.Append(delta);
            if (reply.Stop.Stopped) { generation.Cancel(); break; }
        }
        text.Append(reply.Stop.Flush());
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(Json.SerializeToUtf8Bytes(new
        {
            id = reply.Id,
            @object = "chat.completion",
            created = reply.Created,
            model = reply.Model,
            choices = new[]
            {
                new { index = 0, message = new { role = "assistant", content = text.ToString(), refusal = (string?)null }, logprobs = reply.TakeLogProbs(final: true), finish_reason = reply.FinishReason },
            },
            usage = reply.Usage(accepted.PromptTokens),
            system_fingerprint = (string?)null,
        }), ctx.RequestAborted);
        return true;
    }

    /// <summary>Streams the chunks; true when the completion ended, false when a late error ended the stream.</summary>
    static async Task<bool> Stream(HttpContext ctx, Reply reply, ChannelReader<GenerationEvent> events, PromptAccepted accepted, bool includeUsage, CancellationTokenSource generation)
    {
        var ct = ctx.RequestAborted;
        var sse = await SseWriter.StartAsync(ctx.Response, ct);
        // Each chunk carries the log-probabilities of the tokens that arrived since the last one (when asked for).
        Task Chunk(object delta, string? finish) => sse.WriteDataAsync(ChunkJson(reply, [new { index = 0, delta, logprobs = reply.TakeLogProbs(final: finish is not null), finish_reason = finish }], includeUsage, null), ct);

        await Chunk(new { role = "assistant", content = "" }, null);
        try
        {
            await foreach (var e in events.ReadAllAsync(ct))
            {
                var delta = reply.Take(e);
                if (delta is null) break;
                if (delta.Length > 0) await Chunk(new { content = delta }, null);
                if (reply.Stop.Stopped) { generation.Cancel(); break; }
            }
        }
        catch (ApiError error)
        {
            // Headers are gone: OpenAI's stream reports a late error as an event, which its clients raise.
            await sse.WriteDataAsync(System.Text.Encoding.UTF8.GetString(error.ToJson()), ct);
            return false;
        }
        var tail = reply.Stop.Flush();
        if (tail.Length > 0) await Chunk(new { content = tail }, null);
        await Chunk(new { }, reply.FinishReason);
        if (includeUsage) await sse.WriteDataAsync(ChunkJson(reply, [], true, reply.Usage(accepted.PromptTokens)), ct);
        await sse.WriteDataAsync("[DONE]", ct);
        return true;
    }

    static string ChunkJson(Reply reply, object[] choices, bool includeUsage, object? usage) => includeUsage
        ? Json.Serialize(new { id = reply.Id, @object = "chat.completion.chunk", created = reply.Created, model = reply.Model, system_fingerprint = (string?)null, choices, usage })
        : Json.Serialize(new { id = reply.Id, @object = "chat.completion.chunk", created = reply.Created, model = reply.Model, system_fingerprint = (string?)null, choices });
}
