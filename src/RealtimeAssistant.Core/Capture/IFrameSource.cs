namespace RealtimeAssistant.Capture;

/// <summary>
/// Where frames come from: a camera, a video file, a FIFO, an image folder or a generator.
/// Read blocks until the next frame and returns null at the end of the stream; the caller owns
/// (and disposes) each frame it gets. One thread reads a source (see <see cref="CaptureThread"/>);
/// Status may be read from any thread.
/// </summary>
public interface IFrameSource : IDisposable
{
    /// <summary>What this source is, for logs and the HUD ("file vtest.avi (768x576, 10 fps)").</summary>
    string Description { get; }

    /// <summary>Nominal frames per second (from the container, the device or the options).</summary>
    double Fps { get; }

    /// <summary>True when frames arrive at their own pace (camera, FIFO, realtime pacing).</summary>
    bool IsLive { get; }

    /// <summary>Frames in the stream when known (files, folders, bounded generators).</summary>
    long? FrameCount { get; }

    /// <summary>One line for the HUD: "playing", "camera lost – retrying in 2.0 s (attempt 3)", "ended".</summary>
    string Status { get; }

    /// <summary>The next frame, or null at the end. Throws <see cref="UserError"/> for bad input
    /// and <see cref="OperationCanceledException"/> when <paramref name="ct"/> fires.</summary>
    Frame? Read(CancellationToken ct = default);
}
