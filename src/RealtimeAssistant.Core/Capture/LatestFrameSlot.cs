namespace RealtimeAssistant.Capture;

/// <summary>
/// A one-frame mailbox between the capture thread and the inference thread. Publishing replaces
/// (and disposes) any frame nobody took yet, so inference always sees the newest frame and no
/// backlog can build up: a slow model drops frames instead of falling behind the camera.
/// </summary>
public sealed class LatestFrameSlot : IFrameSink, IDisposable
{
    readonly object gate = new();
    Frame? pending;
    bool completed;
    long published, dropped, taken;

    public long Published => Interlocked.Read(ref published);
    /// <summary>Frames replaced before anyone took them.</summary>
    public long Dropped => Interlocked.Read(ref dropped);
    public long Taken => Interlocked.Read(ref taken);

    /// <summary>True once <see cref="Complete"/> was called (the source ended).</summary>
    public bool IsCompleted { get { lock (gate) return completed; } }

    /// <summary>True when a frame is waiting.</summary>
    public bool HasFrame { get { lock (gate) return pending is not null; } }

    /// <summary>Offers a frame; the slot now owns it. After <see cref="Complete"/> it is disposed.</summary>
    public void Publish(Frame frame)
    {
        Frame? replaced;
        lock (gate)
        {
            if (completed) { replaced = frame; }
            else
            {
                replaced = pending;
                pending = frame;
                published++;
                if (replaced is not null) dropped++;
                Monitor.PulseAll(gate);
            }
        }
        replaced?.Dispose(); // outside the lock: freeing a Mat is not free
    }

    /// <summary>Takes the waiting frame, if any, without blocking. The caller owns it.</summary>
    public bool TryTake(out Frame? frame)
    {
        lock (gate)
        {
            frame = pending;
            pending = null;
            if (frame is null) return false;
            taken++;
            return true;
        }
    }

    /// <summary>Waits for a new frame. Returns null once the slot is completed and empty;
    /// throws <see cref="OperationCanceledException"/> when <paramref name="ct"/> fires.</summary>
    public Frame? Take(CancellationToken ct = default) => Take(Timeout.InfiniteTimeSpan, ct);

    /// <summary>As <see cref="Take(CancellationToken)"/>, but also returns null after <paramref name="timeout"/>.</summary>
    public Frame? Take(TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        using var wake = ct.CanBeCanceled ? ct.Register(WakeAll) : default;
        lock (gate)
        {
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (pending is not null)
                {
                    var frame = pending;
                    pending = null;
                    taken++;
                    return frame;
                }
                if (completed) return null;
                var left = deadline - Environment.TickCount64;
                if (left <= 0) return null;
                Monitor.Wait(gate, (int)Math.Min(left, int.MaxValue));
            }
        }
    }

    /// <summary>Marks the end of the stream: takers get the last frame, then null.</summary>
    public void Complete()
    {
        lock (gate)
        {
            completed = true;
            Monitor.PulseAll(gate);
        }
    }

    void WakeAll()
    {
        lock (gate) Monitor.PulseAll(gate);
    }

    public void Dispose()
    {
        Frame? left;
        lock (gate)
        {
            completed = true;
            left = pending;
            pending = null;
            Monitor.PulseAll(gate);
        }
        left?.Dispose();
    }
}
