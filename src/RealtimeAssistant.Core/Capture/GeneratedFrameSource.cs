using System.Diagnostics;
using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Frames drawn by code: the app plugs its synthetic scene in here. <c>render(i)</c> returns a new
/// BGR Mat for frame i (the source hands it on; the consumer disposes it).
/// </summary>
/// <param name="start">The first frame's index (a clip resumed part way: see <see cref="FrameSourceOptions.StartAt"/>).</param>
public sealed class GeneratedFrameSource(Func<long, Mat> render, double fps, long? count = null, bool realtime = false, string description = "generated", long start = 0)
    : IFrameSource
{
    readonly Pacer? pacer = realtime ? new Pacer(fps) : null;
    long index = start;
    bool ended;

    public string Description { get; } = $"{description} ({fps:0.##} fps{(count is { } n ? $", {n} frames" : "")})";
    public double Fps => fps;
    public bool IsLive => realtime;
    public long? FrameCount => count;
    public string Status => ended ? "ended" : "generating";

    public Frame? Read(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (ended || index >= count) { ended = true; return null; }
        pacer?.WaitForNext(ct);
        var image = render(index);
        var frame = new Frame(image, index, TimeSpan.FromSeconds(index / fps), Stopwatch.GetTimestamp());
        index++;
        return frame;
    }

    public void Dispose() => ended = true;
}
