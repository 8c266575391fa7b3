using System.Diagnostics;
using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Frames handed in by the caller (the server's push streams: a browser's webcam over a
/// WebSocket). Live: the newest frame wins, like a camera's. Its timestamps are the time since
/// the source was made; its frame rate is measured from the frames that arrive.
/// </summary>
public sealed class PushFrameSource(string description = "push") : IFrameSource
{
    readonly LatestFrameSlot _slot = new();
    readonly long _started = Stopwatch.GetTimestamp();
    readonly Queue<long> _recent = new(); // arrival times of the last frames, for the rate
    long _index, _lastAt;
    string? _ended;

    public string Description { get; } = description;
    public bool IsLive => true;
    public long? FrameCount => null;
    public long FramesPushed => Interlocked.Read(ref _index);

    /// <summary>The rate frames arrived at lately (30 before there are any).</summary>
    public double Fps
    {
        get
        {
            lock (_recent)
                return _recent.Count < 2 ? 30 : Math.Clamp((_recent.Count - 1) / Seconds(_recent.Last() - _recent.Peek()), 0.1, 1000);
        }
    }

    public string Status
    {
        get
        {
            if (_ended is { } why) return why;
            var last = Interlocked.Read(ref _lastAt);
            if (last == 0) return "waiting for the first frame";
            var quiet = Seconds(Stopwatch.GetTimestamp() - last);
            return quiet > 1 ? $"no frame for {quiet:0.0} s" : "live";
        }
    }

    /// <summary>A frame arrived; the source owns <paramref name="image"/> (BGR 8UC3) from here.</summary>
    public void Push(Mat image)
    {
        var now = Stopwatch.GetTimestamp();
        lock (_recent)
        {
            _recent.Enqueue(now);
            while (_recent.Count > 30) _recent.Dequeue();
        }
        Interlocked.Exchange(ref _lastAt, now);
        var index = Interlocked.Increment(ref _index) - 1;
        _slot.Publish(new Frame(image, index, TimeSpan.FromSeconds(Seconds(now - _started)), now));
    }

    /// <summary>No more frames: readers get the last one, then the end.</summary>
    public void Complete(string why = "ended")
    {
        _ended = why;
        _slot.Complete();
    }

    public Frame? Read(CancellationToken ct = default) => _slot.Take(ct);

    static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;

    public void Dispose()
    {
        _ended ??= "ended";
        _slot.Dispose();
    }
}
