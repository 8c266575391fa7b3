using Microsoft.Extensions.Time.Testing;
using RealtimeAssistant.Cluster.Supervision;

namespace RealtimeAssistant.Tests.Cluster;

/// <summary>The supervisor's calls to every stream after a death, on a fake clock.</summary>
public class StreamSupervisorTests
{
    /// <summary>Lets the thread pool run what the last clock step released.</summary>
    static async Task Settle() { for (int i = 0; i < 20; i++) await Task.Delay(5); }

    [Fact]
    public async Task ACallThatNeverAnswers_IsSentAgainAfterThePerCallWait_AndTheSecondCallAnswers()
    {
        var time = new FakeTimeProvider();
        var calls = new Dictionary<string, int>();
        var lost = new TaskCompletionSource(); // a call to the dead silo's address: never answers
        Task Ensure(string id)
        {
            lock (calls) calls[id] = calls.GetValueOrDefault(id) + 1;
            return id == "held" && calls[id] == 1 ? lost.Task : Task.CompletedTask;
        }
        var notYet = new List<string>();
        var all = StreamSupervisor.EnsureEach(["a", "held", "b"], Ensure, time, (id, _) => { lock (notYet) notYet.Add(id); }, CancellationToken.None);
        await Settle();
        Assert.False(all.IsCompleted);
        Assert.Equal(1, calls["held"]);

        time.Advance(StreamSupervisor.EnsureCallWait - TimeSpan.FromMilliseconds(1));
        await Settle();
        Assert.Equal(1, calls["held"]); // not before the wait is up

        time.Advance(TimeSpan.FromMilliseconds(1));
        await Settle();
        Assert.Equal(["held"], notYet);
        time.Advance(TimeSpan.FromMilliseconds(250)); // the pause before the resend
        Assert.Equal(3, await all.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(2, calls["held"]);
        Assert.Equal(1, calls["a"]);
        Assert.Equal(1, calls["b"]);
    }

    [Fact]
    public async Task AStreamThatNeverAnswers_IsGivenUpAfterTheAttempts_AndNotCounted()
    {
        var time = new FakeTimeProvider();
        int calls = 0;
        var all = StreamSupervisor.EnsureEach(["gone", "ok"], id => id == "gone" ? Task.FromResult(Interlocked.Increment(ref calls)).ContinueWith(_ => throw new TimeoutException("no answer")) : Task.CompletedTask,
            time, (_, _) => { }, CancellationToken.None);
        for (int i = 0; i < 100 && !all.IsCompleted; i++)
        {
            await Settle();
            time.Advance(TimeSpan.FromMilliseconds(250));
        }
        Assert.Equal(1, await all.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(StreamSupervisor.EnsureAttempts, calls);
    }
}
