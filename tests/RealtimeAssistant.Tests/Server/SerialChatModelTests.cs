using System.Threading.Channels;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;
using RealtimeAssistant.Tests.App;

namespace RealtimeAssistant.Tests.Server;

/// <summary>The one shared model: jobs run one at a time in order, a full queue is refused, a cancelled job stops.</summary>
public class SerialChatModelTests
{
    static async Task<List<GenerationEvent>> Drain(ChannelReader<GenerationEvent> events)
    {
        var all = new List<GenerationEvent>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await foreach (var e in events.ReadAllAsync(timeout.Token)) all.Add(e);
        return all;
    }

    [Fact]
    public async Task JobsRunOneAtATime_AFullQueueIs429_AndACancelledJobStopsAtItsNextToken()
    {
        // Random weights: greedy decoding never reaches the end token within the limit here (checked below).
        using var model = SerialChatModel.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" }, queueCapacity: 1);
        using var image = new Mat(32, 32, MatType.CV_8UC3, new Scalar(40, 90, 200));
        GenerationJob Job(int maxTokens)
        {
            var copy = image.Clone(); // the job owns its images
            return new() { Prompt = ChatPrompt.FromMessages([new ChatMessage("user", [new ImagePart(copy)])], model.Format), MaxTokens = maxTokens, Owner = copy };
        }
        int limit = model.ContextLength - 200;
        using var cancelLong = new CancellationTokenSource();
        var longJob = model.Submit(Job(limit), cancelLong.Token);
        Assert.IsType<PromptAccepted>(await longJob.ReadAsync());
        Assert.IsType<TokenDelta>(await longJob.ReadAsync()); // it is running

        var waiting = model.Submit(Job(3), CancellationToken.None);
        var refused = Assert.Throws<ApiError>(() => model.Submit(Job(3), CancellationToken.None));
        Assert.Equal(429, refused.Status);
        await Task.Delay(300);
        Assert.False(waiting.TryPeek(out _), "the second job started while the first was running");

        cancelLong.Cancel();
        var rest = await Drain(longJob);
        var ended = Assert.IsType<GenerationEnded>(rest[^1]);
        Assert.False(ended.HitLimit, "the long job ran to its limit instead of stopping when cancelled");
        Assert.True(ended.CompletionTokens < limit);

        var second = await Drain(waiting);
        Assert.IsType<PromptAccepted>(second[0]);
        Assert.Equal(new GenerationEnded(3, true), second[^1]);
        Assert.Equal(3, second.OfType<TokenDelta>().Count(d => d.IsToken));
    }

    [Fact]
    public async Task ATooLongRequest_FailsBeforeItStarts()
    {
        using var model = SerialChatModel.Load(AppTestSupport.TinyModel, new EngineOptions { Device = "cpu" });
        using var image = new Mat(32, 32, MatType.CV_8UC3, Scalar.All(9));
        var job = new GenerationJob
        {
            Prompt = ChatPrompt.FromMessages([new ChatMessage("user", [new ImagePart(image)])], model.Format), MaxTokens = model.ContextLength,
        };
        var events = await Drain(model.Submit(job, CancellationToken.None));
        var failed = Assert.IsType<GenerationFailed>(Assert.Single(events));
        Assert.Equal("context_length_exceeded", failed.Error.Code);
    }
}
