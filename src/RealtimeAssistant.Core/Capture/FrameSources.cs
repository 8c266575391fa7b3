using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Turns the user's <c>--source</c> text into a frame source:
/// "0" or "/dev/video0" → V4L2 camera; a FIFO → live stream; a folder → images;
/// a registered scheme ("synthetic", "synthetic:seed=3") → the app's generator; anything else → a video file.
/// </summary>
public static class FrameSources
{
    public static IFrameSource Open(string spec, FrameSourceOptions? options = null)
    {
        options ??= new FrameSourceOptions();
        if (string.IsNullOrWhiteSpace(spec)) throw new UserError("no video source given (a camera index, a video file, a FIFO or an image folder)");

        var scheme = spec.Split(':', 2)[0];
        if (options.Schemes.TryGetValue(scheme, out var make)) return make(spec, options);

        if (CameraIndex(spec) is { } camera) return OpenCamera(camera, options);

        return FileKind.Of(spec) switch
        {
            FileKind.Kind.Directory => new ImageFolderSource(spec, options),
            FileKind.Kind.Fifo => OpenFifo(spec, options),
            FileKind.Kind.CharDevice => throw new UserError($"{spec} is a device but not a camera (/dev/videoN)"),
            FileKind.Kind.Missing => throw new UserError(spec.StartsWith("/dev/video")
                ? $"camera {spec} not found"
                : $"video file not found: {spec}"),
            _ => new VideoFileSource(spec, options),
        };
    }

    /// <summary>
    /// Fails as <see cref="Open"/> would for a bad source (a missing file, an undecodable video, a
    /// device that is not a camera), before a command loads its model. A camera or a FIFO is not
    /// opened: it is live, and a reader that connects and leaves would take a waiting writer's
    /// stream (ffmpeg writing into the FIFO dies of the broken pipe).
    /// </summary>
    /// <returns>The source's frame rate, where checking it opened the source (null for a camera or FIFO, which it leaves alone).</returns>
    public static double? Check(string spec, FrameSourceOptions? options = null)
    {
        options ??= new FrameSourceOptions();
        if (string.IsNullOrWhiteSpace(spec)) throw new UserError("no video source given (a camera index, a video file, a FIFO or an image folder)");
        if (!options.Schemes.ContainsKey(spec.Split(':', 2)[0]) && (CameraIndex(spec) is not null || FileKind.Of(spec) == FileKind.Kind.Fifo)) return null;
        using var source = Open(spec, options);
        return source.Fps;
    }

    /// <summary>"0" → 0, "/dev/video2" → 2 (only when the node exists, else a clear not-found error).</summary>
    static int? CameraIndex(string spec)
    {
        if (int.TryParse(spec, out var index) && index >= 0 && !File.Exists(spec)) return index;
        if (spec.StartsWith("/dev/video") && int.TryParse(spec["/dev/video".Length..], out index) && File.Exists(spec)) return index;
        return null;
    }

    static IFrameSource OpenCamera(int index, FrameSourceOptions options) =>
        new LiveFrameSource($"camera {index}", () => new VideoCapture(index, VideoCaptureAPIs.V4L2), options);

    static IFrameSource OpenFifo(string path, FrameSourceOptions options) =>
        new LiveFrameSource($"fifo {Path.GetFileName(path)}", () => new VideoCapture(path, VideoCaptureAPIs.FFMPEG), options,
            unblock: () => ReleaseBlockedOpen(path));

    /// <summary>
    /// Opening a FIFO for reading blocks until a writer appears. Opening it ourselves read-write
    /// (which never blocks on Linux) counts as that writer, so the stuck open returns, sees EOF and fails.
    /// </summary>
    static void ReleaseBlockedOpen(string path)
    {
        try { using var _ = new FileStream(path, FileMode.Open, FileAccess.ReadWrite); }
        catch (Exception) { /* gone or not ours: nothing is blocked on it then */ }
    }
}
