using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Server.Inference;

/// <summary>
/// Chat completions, one at a time in arrival order, on their own thread (libtorch work stays off
/// Kestrel's threads, which only parse and write). Jobs wait in a small bounded queue; a full
/// queue is refused with 429 rather than left to grow. Each step of a generation (the prompt
/// pass, each decode step) takes its turn on the shared model through the
/// <see cref="ModelScheduler"/>, between the live streams' steps. The generation is the engine
/// the app uses: <see cref="Captioner.Caption(IReadOnlyList{OpenCvSharp.Mat}, string?, GenerationOptions, CaptionTimings)"/>.
/// </summary>
public sealed class SerialChatModel : IChatModel
{
    readonly ModelScheduler _scheduler;
    readonly bool _ownsScheduler;
    readonly Engine _engine;
    readonly Captioner _captioner;
    readonly BlockingCollection<(GenerationJob Job, Channel<GenerationEvent> Events, CancellationToken Ct)> _queue;
    readonly CancellationTokenSource _shutdown = new();
    readonly Thread _worker;
    readonly ILogger _log;

    public string Id { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    public PromptFormat Format { get; }
    public int ContextLength => _engine.Text.MaxPositionEmbeddings;

    /// <param name="ownsScheduler">Dispose the scheduler (and with it the model) with this.</param>
    public SerialChatModel(ModelScheduler scheduler, int queueCapacity = 16, ILogger? log = null, bool ownsScheduler = false)
    {
        if (queueCapacity < 1) throw new UserError($"the request queue holds at least 1, got {queueCapacity}");
        _scheduler = scheduler;
        _ownsScheduler = ownsScheduler;
        var engine = _engine = scheduler.Engine;
        _captioner = new Captioner(engine);
        _log = log ?? NullLogger.Instance;
        Format = PromptFormat.Of(engine);
        Id = RealtimeAssistant.Model.Checkpoint.HubCache.ModelName(engine.Directory);
        _queue = new(queueCapacity);
        _worker = new Thread(Work) { Name = "ra-model", IsBackground = true };
        _worker.Start();
    }

    /// <param name="queueCapacity">Requests that may wait while one runs.</param>
    public static SerialChatModel Load(string modelDir, EngineOptions? options = null, int queueCapacity = 16, ILogger? log = null)
    {
        if (queueCapacity < 1) throw new UserError($"the request queue holds at least 1, got {queueCapacity}");
        var scheduler = ModelScheduler.Load(modelDir, options, log);
        try { return new SerialChatModel(scheduler, queueCapacity, log, ownsScheduler: true); }
        catch { scheduler.Dispose(); throw; }
    }

    public ChannelReader<GenerationEvent> Submit(GenerationJob job, CancellationToken ct)
    {
        var events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        bool queued;
        try { queued = !_shutdown.IsCancellationRequested && _queue.TryAdd((job, events, ct)); }
        catch (InvalidOperationException) { queued = false; } // adding completed: shutting down
        if (!queued)
        {
            job.Owner?.Dispose();
            throw _shutdown.IsCancellationRequested
                ? new ApiError(503, "the server is shutting down", "server_error", code: "shutting_down")
                : new ApiError(429, $"the server is busy: {_queue.BoundedCapacity} requests are already waiting for the model; retry shortly",
                    "rate_limit_error", code: "rate_limit_exceeded");
        }
        return events.Reader;
    }

    void Work()
    {
        try
        {
            foreach (var (job, events, ct) in _queue.GetConsumingEnumerable(_shutdown.Token))
                Run(job, events.Writer, ct);
        }
        catch (OperationCanceledException) { }
        // Jobs still queued at shutdown are told so, and release their images.
        while (_queue.TryTake(out var left))
        {
            left.Events.Writer.TryWrite(new GenerationFailed(new ApiError(503, "the server is shutting down", "server_error", code: "shutting_down")));
            left.Events.Writer.TryComplete();
            left.Job.Owner?.Dispose();
        }
    }

    void Run(GenerationJob job, ChannelWriter<GenerationEvent> events, CancellationToken requestCt)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            if (requestCt.IsCancellationRequested) return;
            var prompt = job.Prompt;
            var ids = _captioner.PromptIds(prompt.Text, prompt.Images.Count);
            int markers = ids.Count(i => i == _engine.ImageMarkerId);
            if (markers != prompt.Images.Count)
            {
                events.TryWrite(new GenerationFailed(ApiError.BadRequest(
                    $"the prompt has room for {markers} images but the messages hold {prompt.Images.Count}", "messages")));
                return;
            }
            int promptTokens = ids.Count - markers + prompt.Images.Sum(i => _engine.Model.RunLength(i, ImageUse.Still));
            string? tooLong = promptTokens >= ContextLength
                ? $"However, your messages resulted in {promptTokens} tokens. Please reduce the length of the messages."
                : job.MaxTokens is { } asked && (long)promptTokens + asked > ContextLength
                    ? $"However, you requested {(long)promptTokens + asked} tokens ({promptTokens} in the messages, {asked} in the completion). Please reduce the length of the messages or completion."
                    : null;
            if (tooLong is not null)
            {
                events.TryWrite(new GenerationFailed(ApiError.BadRequest($"This model's maximum context length is {ContextLength} tokens. {tooLong}", "messages", "context_length_exceeded")));
                return;
            }
            int maxTokens = job.MaxTokens ?? ContextLength - promptTokens;
            events.TryWrite(new PromptAccepted(promptTokens));
            var options = new GenerationOptions { MaxNewTokens = maxTokens, Temperature = job.Temperature, TopP = job.TopP, Seed = job.Seed, LogProbs = job.TopLogProbs };
            var timings = new CaptionTimings();
            int tokens = 0;
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(requestCt, _shutdown.Token);
            try
            {
                foreach (var ev in _scheduler.Steps(() => _captioner.Caption(prompt.Images, prompt.Text, options, timings), stop.Token))
                {
                    events.TryWrite(new TokenDelta(ev.Text, ev.Id >= 0, ev.LogProb is { } lp ? LogProbs(lp, atStart: tokens == 0) : null));
                    if (ev.Id >= 0) tokens++;
                    if (stop.IsCancellationRequested) break;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { } // cut short while waiting for a turn
            events.TryWrite(new GenerationEnded(tokens, tokens >= maxTokens));
            _log.LogInformation("chat completion: {Images} images, {Prompt} prompt tokens, {Tokens} completion tokens in {Ms:0} ms (prefill {Prefill:0.0} ms){Cancelled}",
                prompt.Images.Count, promptTokens, tokens, sw.Elapsed.TotalMilliseconds, timings.PrefillMs, requestCt.IsCancellationRequested ? ", cut short (a stop sequence, or the client left)" : "");
        }
        catch (UserError e)
        {
            events.TryWrite(new GenerationFailed(ApiError.BadRequest(e.Message)));
        }
        catch (Exception e)
        {
            _log.LogError(e, "generation failed");
            events.TryWrite(new GenerationFailed(new ApiError(500, "The model failed while generating; the server logged the cause.", "server_error")));
        }
        finally
        {
            events.TryComplete();
            job.Owner?.Dispose();
        }
    }

    public void Dispose()
    {
        if (_shutdown.IsCancellationRequested) return;
        _shutdown.Cancel();
        _queue.CompleteAdding();
        _worker.Join();
        if (_ownsScheduler) _scheduler.Dispose();
    }

    /// <summary>A token's log-probabilities as OpenAI gives them: each token as text and UTF-8 bytes (as it decodes at its place: the first token of a completion at the start).</summary>
    TokenLogProbs LogProbs(TokenLogProb p, bool atStart)
    {
        (string Text, byte[] Bytes) Token(int id)
        {
            var bytes = new List<byte>();
            _engine.Tokenizer.AppendBytes(id, bytes, atStart);
            var b = bytes.ToArray();
            return (System.Text.Encoding.UTF8.GetString(b), b);
        }
        var (text, raw) = Token(p.Id);
        return new TokenLogProbs(text, p.LogProb, raw, p.Top.Select(t => { var (tt, tb) = Token(t.Id); return new TopLogProb(tt, t.LogProb, tb); }).ToList());
    }
}
