using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// Copies of the last few frames, by index, so the inference thread can pair the newest frame
/// with the one <see cref="IFrameCaptioner.FrameStride"/> frames before it (motion needs two)
/// even though it never sees the frames in between. Written by the capture thread; thread-safe.
/// </summary>
public sealed class FrameHistory(int capacity) : IDisposable
{
    readonly (long Index, Mat? Image)[] ring = new (long, Mat?)[Math.Max(1, capacity)];
    readonly object gate = new();

    /// <summary>Frames needed to serve <paramref name="frames"/> frames <paramref name="stride"/> apart.</summary>
    public static int CapacityFor(int frames, int stride) => Math.Max(1, (frames - 1) * Math.Max(1, stride) + 2);

    public void Add(Frame frame)
    {
        var copy = frame.Image.Clone();
        Mat? old;
        lock (gate)
        {
            var slot = (int)(frame.Index % ring.Length);
            old = ring[slot].Image;
            ring[slot] = (frame.Index, copy);
        }
        old?.Dispose();
    }

    /// <summary>
    /// Copies of the <paramref name="count"/> frames ending at <paramref name="newest"/> (which is
    /// used as given, not copied), <paramref name="stride"/> apart, oldest first. A frame no longer
    /// (or not yet) held is replaced by the nearest later one held, or the newest.
    /// The caller disposes every Mat in the list except <paramref name="newest"/>'s image.
    /// </summary>
    public List<Mat> Window(Frame newest, int count, int stride)
    {
        var mats = new List<Mat>(count);
        lock (gate)
        {
            for (int j = count - 1; j >= 1; j--)
            {
                var want = newest.Index - (long)j * stride;
                Mat? best = null;
                long bestIndex = long.MaxValue;
                foreach (var (index, image) in ring)
                    if (image is not null && index >= want && index < newest.Index && index < bestIndex) { best = image; bestIndex = index; }
                mats.Add(best?.Clone() ?? newest.Image.Clone());
            }
        }
        mats.Add(newest.Image);
        return mats;
    }

    public void Dispose()
    {
        lock (gate)
            for (int i = 0; i < ring.Length; i++) { ring[i].Image?.Dispose(); ring[i] = default; }
    }
}
