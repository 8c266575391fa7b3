using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

public class LatestFrameSlotTests
{
    static Frame MakeFrame(long i) => new(new Mat(2, 2, MatType.CV_8UC3, Scalar.All(i % 256)), i, TimeSpan.FromSeconds(i), Stopwatch.GetTimestamp());

    [Fact]
    public void PublishingFasterThanTaking_DropsOlderFrames_AndKeepsTheNewest()
    {
        using var slot = new LatestFrameSlot();
        var frames = Enumerable.Range(0, 10).Select(i => MakeFrame(i)).ToList();
        foreach (var f in frames) slot.Publish(f);

        Assert.Equal(10, slot.Published);
        Assert.Equal(9, slot.Dropped);
        // Replaced frames were freed, not queued.
        Assert.All(frames.Take(9), f => Assert.True(f.Image.IsDisposed));
        Assert.True(slot.TryTake(out var got));
        Assert.Equal(9, got!.Index);
        Assert.False(slot.TryTake(out _)); // nothing behind it: no backlog
        got.Dispose();
    }

    [Fact]
    public async Task Take_WaitsForTheNextFrame_AndReturnsNullAfterComplete()
    {
        using var slot = new LatestFrameSlot();
        var taker = Task.Run(() => slot.Take());
        await Task.Delay(50);
        Assert.False(taker.IsCompleted);
        slot.Publish(MakeFrame(7));
        using (var got = await taker.WaitAsync(TimeSpan.FromSeconds(5))) Assert.Equal(7, got!.Index);

        slot.Publish(MakeFrame(8));
        slot.Complete();
        using (var last = slot.Take()) Assert.Equal(8, last!.Index); // the last frame is still delivered
        Assert.Null(slot.Take());
    }

    [Fact]
    public void Take_HonoursCancellationAndTimeout()
    {
        using var slot = new LatestFrameSlot();
        Assert.Null(slot.Take(TimeSpan.FromMilliseconds(30)));
        using var cts = new CancellationTokenSource(50);
        var sw = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => slot.Take(cts.Token));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task ConcurrentPublishAndTake_AccountsForEveryFrame_AndTakesInOrder()
    {
        using var slot = new LatestFrameSlot();
        const int perPublisher = 2000;
        long next = 0, takenCount = 0, outOfOrder = 0;
        var publishers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < perPublisher; i++) slot.Publish(MakeFrame(Interlocked.Increment(ref next)));
        })).ToArray();
        var taker = Task.Run(() =>
        {
            long lastSeen = -1;
            while (slot.Take() is { } f)
            {
                // Two publishers race, so indexes may interleave, but a taker never gets a frame
                // older than one it already saw from the same burst by more than the other publisher's lag.
                if (f.Index <= lastSeen - 100) Interlocked.Increment(ref outOfOrder);
                lastSeen = Math.Max(lastSeen, f.Index);
                Interlocked.Increment(ref takenCount);
                f.Dispose();
            }
        });
        await Task.WhenAll(publishers).WaitAsync(TimeSpan.FromSeconds(20));
        slot.Complete();
        await taker.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(2 * perPublisher, slot.Published);
        Assert.Equal(slot.Published, slot.Dropped + slot.Taken);
        Assert.Equal(takenCount, slot.Taken);
        Assert.Equal(0, outOfOrder);
    }
}
