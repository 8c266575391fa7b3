namespace RealtimeAssistant.Capture;

/// <summary>Where the capture thread hands frames: it owns each frame it is given.</summary>
public interface IFrameSink
{
    void Publish(Frame frame);
    /// <summary>The source ended (or failed): no more frames.</summary>
    void Complete();
}

/// <summary>
/// Every frame, in order, with back-pressure: the capture thread waits when the consumer is
/// <see cref="Capacity"/> frames behind (file pacing: nothing is dropped, and a file is never
/// decoded further ahead than that).
/// </summary>
public sealed class FrameQueue(int capacity, CancellationToken ct) : IFrameSink, IDisposable
{
    readonly System.Collections.Concurrent.BlockingCollection<Frame> _frames = new(capacity);
    public int Capacity => capacity;

    public void Publish(Frame frame)
    {
        try { _frames.Add(frame, ct); }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException) { frame.Dispose(); throw; }
    }

    public void Complete() => _frames.CompleteAdding();

    /// <summary>The next frame in order; null once the source ended and every frame was taken.</summary>
    public Frame? Take(CancellationToken token)
    {
        try { return _frames.Take(token); }
        catch (InvalidOperationException) { return null; } // completed and empty
    }

    public void Dispose()
    {
        while (_frames.TryTake(out var f)) f.Dispose();
        _frames.Dispose();
    }
}

/// <summary>Splits the capture thread's frames: a copy of each to one sink (the display), and the frame on to another.</summary>
public sealed class TeeSink(IFrameSink first, IFrameSink second, Func<Frame, bool>? toSecond = null) : IFrameSink
{
    public void Publish(Frame frame)
    {
        if (toSecond is null || toSecond(frame)) second.Publish(frame with { Image = frame.Image.Clone() });
        first.Publish(frame);
    }

    public void Complete() { second.Complete(); first.Complete(); }
}
