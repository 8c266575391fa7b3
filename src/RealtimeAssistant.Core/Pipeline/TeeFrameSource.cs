using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// Wraps a source on the capture thread: every frame read is also remembered in a
/// <see cref="FrameHistory"/> and offered, as a copy, to the render thread's slot. The frame
/// itself goes on to the inference slot (see <see cref="CaptureThread"/>).
/// </summary>
public sealed class TeeFrameSource(IFrameSource inner, FrameHistory history, LatestFrameSlot display) : IFrameSource
{
    public string Description => inner.Description;
    public double Fps => inner.Fps;
    public bool IsLive => inner.IsLive;
    public long? FrameCount => inner.FrameCount;
    public string Status => inner.Status;
    public IFrameSource Inner => inner;

    public Frame? Read(CancellationToken ct = default)
    {
        var frame = inner.Read(ct);
        if (frame is null) return null;
        history.Add(frame);
        display.Publish(frame with { Image = frame.Image.Clone() });
        return frame;
    }

    public void Dispose() => inner.Dispose();
}
