using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Tests.App;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The one place the server's model calls are issued: steps run one at a time, turns go first
/// come first served, and a caller that asks while another's generation runs is served before
/// that generation's next step (so a stream's read waits behind another's answer for at most one
/// decode step). A cancelled waiter leaves the line without holding up the others.
/// </summary>
public class ModelSchedulerTests
{
    static readonly Lazy<RealtimeAssistant.Model.Engine> Tiny = new(AppTestSupport.TinyEngine);

    [Fact]
    public async Task ARunAskedDuringAGeneration_GoesBeforeTheGenerationsNextStep()
    {
        using var scheduler = new ModelScheduler(Tiny.Value, ownsEngine: false, batching: false);
        var order = new List<string>();
        using var inStep3 = new ManualResetEventSlim();
        using var otherQueued = new ManualResetEventSlim();

        IEnumerable<int> Generation()
        {
            for (int i = 0; i < 8; i++)
            {
                lock (order) order.Add($"gen{i}");
                if (i == 3)
                {
                    inStep3.Set();
                    Assert.True(otherQueued.Wait(TimeSpan.FromSeconds(30))); // the other caller is waiting for its turn now
                }
                yield return i;
            }
        }

        var gen = Task.Run(() => scheduler.Steps(Generation).ToList());
        Assert.True(inStep3.Wait(TimeSpan.FromSeconds(30)));
        var other = Task.Run(() => scheduler.Run(() => { lock (order) order.Add("read"); }));
        while (scheduler.Waiting == 0) await Task.Delay(5);
        otherQueued.Set();
        await Task.WhenAll(gen, other).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(["gen0", "gen1", "gen2", "gen3", "read", "gen4", "gen5", "gen6", "gen7"], order);
        Assert.Equal(8, (await gen).Count);
        Assert.True(scheduler.Counters.Waited >= 1);
    }

    [Fact]
    public async Task StepsNeverOverlap_AndTurnsAreFirstComeFirstServed()
    {
        using var scheduler = new ModelScheduler(Tiny.Value, ownsEngine: false, batching: false);
        int inside = 0, most = 0;
        var order = new List<int>();
        using var hold = new ManualResetEventSlim();
        var first = Task.Run(() => scheduler.Run(() => { hold.Wait(TimeSpan.FromSeconds(30)); }));
        while (!scheduler.Busy) await Task.Delay(1);
        var callers = new List<Task>();
        for (int i = 0; i < 6; i++)
        {
            int me = i;
            callers.Add(Task.Run(() => scheduler.Run(() =>
            {
                var n = Interlocked.Increment(ref inside);
                lock (order) { order.Add(me); most = Math.Max(most, n); }
                Thread.Sleep(2);
                Interlocked.Decrement(ref inside);
            })));
            while (scheduler.Waiting < i + 1) await Task.Delay(1); // each in line before the next comes
        }
        hold.Set();
        await Task.WhenAll(callers.Append(first)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, most);
        Assert.Equal([0, 1, 2, 3, 4, 5], order);
    }

    [Fact]
    public async Task ACancelledWaiter_LeavesTheLine_AndTheNextIsServed()
    {
        using var scheduler = new ModelScheduler(Tiny.Value, ownsEngine: false, batching: false);
        using var hold = new ManualResetEventSlim();
        var first = Task.Run(() => scheduler.Run(() => hold.Wait(TimeSpan.FromSeconds(30))));
        while (!scheduler.Busy) await Task.Delay(1);
        using var cts = new CancellationTokenSource();
        var cancelled = Task.Run(() => scheduler.Run(() => Assert.Fail("a cancelled waiter ran"), cts.Token));
        while (scheduler.Waiting < 1) await Task.Delay(1);
        var served = Task.Run(() => scheduler.Run(() => 42));
        while (scheduler.Waiting < 2) await Task.Delay(1);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(30)));
        hold.Set();
        Assert.Equal(42, await served.WaitAsync(TimeSpan.FromSeconds(30)));
        await first;
        Assert.Equal(0, scheduler.Waiting);
        Assert.False(scheduler.Busy);
    }

    [Fact]
    public void AGenerationCutShort_IsCleanedUpInATurn_AndCancellationStopsItAtTheNextStep()
    {
        using var scheduler = new ModelScheduler(Tiny.Value, ownsEngine: false, batching: false);
        bool cleanedUpInTurn = false;
        using var cts = new CancellationTokenSource();
        IEnumerable<int> Generation()
        {
            try { for (int i = 0; i < 1000; i++) yield return i; }
            finally { cleanedUpInTurn = scheduler.Busy; }
        }
        var got = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var i in scheduler.Steps(Generation, cts.Token))
            {
                got.Add(i);
                if (i == 4) cts.Cancel();
            }
        });
        Assert.Equal([0, 1, 2, 3, 4], got);
        Assert.True(cleanedUpInTurn, "the generation's cleanup ran outside a turn");
        Assert.False(scheduler.Busy);
    }
}
