using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// One captured frame. <see cref="Image"/> is BGR 8UC3 (OpenCV's native order).
/// <see cref="CapturedAt"/> is a Stopwatch timestamp taken when the frame left the source: the
/// "glass" time that glass-to-caption latency is measured from.
/// </summary>
public sealed record Frame(Mat Image, long Index, TimeSpan Timestamp, long CapturedAt) : IDisposable
{
    public void Dispose() => Image.Dispose();
}
