using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Turns the user's <c>--source</c> text into a frame source:
/// "0" or "/dev/video0" → V4L2 camera; rtsp://, rtmp://, http(s):// → network stream (through
/// Debian's ffmpeg), or a file where it names one or <see cref="FrameSourceOptions.UrlsAsFiles"/>
/// says; a FIFO, or "-" for standard input → a live stream, or a file where
/// <see cref="FrameSourceOptions.PipesAsFiles"/> says; a folder → images;
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
        if (NetworkFrameSource.IsUrl(spec))
            return options.UrlsAsFiles || IsRemoteFile(spec) ? VideoFileSource.OfUrl(spec, options) : new NetworkFrameSource(spec, options);

        if (CameraIndex(spec) is { } camera) return OpenCamera(camera, options);
        if (spec == StdinSpec) return OpenStdin(options);

        return FileKind.Of(spec) switch
        {
            FileKind.Kind.Directory => new ImageFolderSource(spec, options),
            FileKind.Kind.Fifo => options.PipesAsFiles ? OpenPipeAsFile(spec, $"fifo {Path.GetFileName(spec)}", options) : OpenFifo(spec, options),
            FileKind.Kind.CharDevice => throw new UserError($"{spec} is a device but not a camera (/dev/videoN)"),
            FileKind.Kind.Missing => throw new UserError(spec.StartsWith("/dev/video")
                ? $"camera {spec} not found; {CamerasHere()}"
                : $"video file not found: {spec}"),
            _ => new VideoFileSource(spec, options),
        };
    }

    /// <summary>
    /// Fails as <see cref="Open"/> would for a bad source (a missing file, an undecodable video, a
    /// device that is not a camera), before a command loads its model. A camera, a FIFO or a network
    /// stream is not opened: it is live, and a reader that connects and leaves would take a waiting
    /// writer's stream (ffmpeg writing into the FIFO dies of the broken pipe; a one-client server ends).
    /// </summary>
    /// <returns>The source's frame rate, where checking it opened the source or ffprobe gave it (a
    /// web server's file); null for a live source, which it leaves alone.</returns>
    public static double? Check(string spec, FrameSourceOptions? options = null)
    {
        options ??= new FrameSourceOptions();
        if (string.IsNullOrWhiteSpace(spec)) throw new UserError("no video source given (a camera index, a video file, a FIFO or an image folder)");
        if (NetworkFrameSource.IsUrl(spec)) return RemoteFile(spec)?.BaseFps; // a file's rate is ffprobe's; a camera is left alone
        if (!options.Schemes.ContainsKey(spec.Split(':', 2)[0])
            && (CameraIndex(spec) is not null || spec == StdinSpec || FileKind.Of(spec) == FileKind.Kind.Fifo)) return null;
        using var source = Open(spec, options);
        return source.Fps;
    }

    /// <summary>The extensions of a URL that may name a whole video (a download, or an HLS playlist of one) rather than a camera's stream.</summary>
    static readonly string[] FileExtensions = [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ogv", ".m3u8"];

    /// <summary>
    /// An HTTP(S) URL of a video with a length (a file on a web server, an HLS playlist that has
    /// ended), which plays at its own rate and ends, where a camera's stream has no end and is
    /// reconnected when it drops. Only a URL whose path names such a file is asked (ffprobe makes a
    /// connection of its own, which a camera serving one client at a time could not spare).
    /// </summary>
    static bool IsRemoteFile(string url) => RemoteFile(url) is not null;

    /// <summary>What ffprobe says of the file <paramref name="url"/> names; null for a camera's URL.</summary>
    static Output.MediaProbe? RemoteFile(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"
        && FileExtensions.Contains(Path.GetExtension(u.AbsolutePath), StringComparer.OrdinalIgnoreCase)
        && Output.MediaProbe.Of(url) is { Seconds: > 0 } probe ? probe : null;

    /// <summary>
    /// "0" → 0, "/dev/video2" → 2, only when the node exists. V4L2 opens index N as /dev/videoN, so
    /// on Linux a missing node is a clear error at once rather than half a minute of reconnecting
    /// to a camera that was never there (a camera that goes away later is retried).
    /// </summary>
    static int? CameraIndex(string spec)
    {
        if (int.TryParse(spec, out var index) && index >= 0 && !File.Exists(spec))
        {
            if (OperatingSystem.IsLinux() && !File.Exists($"/dev/video{index}"))
                throw new UserError($"camera {index} not found (no /dev/video{index}); {CamerasHere()}");
            return index;
        }
        if (spec.StartsWith("/dev/video") && int.TryParse(spec["/dev/video".Length..], out index) && File.Exists(spec)) return index;
        return null;
    }

    static string CamerasHere()
    {
        var nodes = Directory.Exists("/dev") ? Directory.GetFiles("/dev", "video*").Where(n => int.TryParse(n["/dev/video".Length..], out _)).Order(NaturalOrder.Instance).ToList() : [];
        return nodes.Count > 0
            ? $"cameras here: {string.Join(", ", nodes)}"
            : "this machine has no camera (no /dev/video*); give a video file, a stream URL, a FIFO, an image folder or 'synthetic'";
    }

    static IFrameSource OpenCamera(int index, FrameSourceOptions options) =>
        new LiveFrameSource($"camera {index}", () => new VideoCapture(index, VideoCaptureAPIs.V4L2), options);

    /// <summary>The source "-": the video piped into standard input.</summary>
    public const string StdinSpec = "-";

    static IFrameSource OpenStdin(FrameSourceOptions options)
    {
        const string stdin = "/dev/stdin";
        return FileKind.Of(stdin) switch
        {
            FileKind.Kind.Fifo => options.PipesAsFiles ? OpenPipeAsFile(stdin, "pipe stdin", options) : OpenFifo(stdin, options),
            FileKind.Kind.Regular => new VideoFileSource(stdin, options), // ra stream - < clip.mp4
            _ => throw new UserError("'-' reads a video piped into standard input, and nothing is piped in here (e.g. ffmpeg -i IN -f nut - | ra stream -)"),
        };
    }

    /// <summary>
    /// A FIFO or pipe read as a file: every frame in order, ffmpeg's own backpressure pacing the
    /// writer, ending when the writer closes. Opening waits for the writer to connect and send its
    /// header, up to <see cref="FrameSourceOptions.StreamOpenTimeout"/>.
    /// </summary>
    static IFrameSource OpenPipeAsFile(string path, string description, FrameSourceOptions options)
    {
        try { return new VideoFileSource(path, options with { OpenTimeout = options.StreamOpenTimeout }, description); }
        catch (UserError) { ReleaseBlockedOpen(path); throw; }
    }

    static IFrameSource OpenFifo(string path, FrameSourceOptions options) =>
        new LiveFrameSource($"fifo {Path.GetFileName(path)}", () => new VideoCapture(path, VideoCaptureAPIs.FFMPEG), options,
            unblock: () => ReleaseBlockedOpen(path));

    /// <summary>
    /// Opening a FIFO for reading blocks until a writer appears. Opening it ourselves read-write
    /// (which never blocks on Linux) counts as that writer, so the stuck open returns, sees EOF and fails.
    /// </summary>
    internal static void ReleaseBlockedOpen(string path)
    {
        try { using var _ = new FileStream(path, FileMode.Open, FileAccess.ReadWrite); }
        catch (Exception) { /* gone or not ours: nothing is blocked on it then */ }
    }
}
