using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

public class BackoffTests
{
    [Fact]
    public void DoublesUpToTheCap_AndResets()
    {
        var b = new Backoff(TimeSpan.FromSeconds(0.25), TimeSpan.FromSeconds(4));
        var waits = Enumerable.Range(0, 7).Select(_ => b.Next().TotalSeconds).ToArray();
        Assert.Equal([0.25, 0.5, 1, 2, 4, 4, 4], waits);
        Assert.Equal(7, b.Attempt);
        b.Reset();
        Assert.Equal(0, b.Attempt);
        Assert.Equal(0.25, b.Next().TotalSeconds);
    }
}
