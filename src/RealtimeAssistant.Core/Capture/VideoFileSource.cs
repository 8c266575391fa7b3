using System.Diagnostics;
using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>
/// A video file read through OpenCV's bundled FFmpeg. The file is checked when it is opened:
/// a missing file, a file FFmpeg cannot open, and a codec that opens but yields no frame (AV1 in
/// this build) all become a <see cref="UserError"/>, within <see cref="FrameSourceOptions.OpenTimeout"/>.
/// </summary>
public sealed class VideoFileSource : IFrameSource
{
    readonly string path;
    readonly FrameSourceOptions options;
    readonly Pacer? pacer;
    VideoCapture capture;
    Mat? first;       // the frame read while validating, handed out by the first Read
    long index;       // frames delivered, across loops: timestamps keep rising when looping
    bool ended;

    public string Description { get; }
    public double Fps { get; }
    public bool IsLive => options.Realtime;
    public long? FrameCount { get; }
    public Size FrameSize { get; }
    public string Status => ended ? "ended" : options.Realtime ? "playing (realtime)" : "playing";

    public VideoFileSource(string path, FrameSourceOptions? options = null)
    {
        this.path = path;
        this.options = options ?? new FrameSourceOptions();
        if (!File.Exists(path)) throw new UserError($"video file not found: {path}");
        (capture, first) = OpenValidated(path, this.options.OpenTimeout);
        Fps = capture.Fps is > 0 and < 1000 ? capture.Fps : 30;
        var count = (long)capture.Get(VideoCaptureProperties.FrameCount);
        FrameCount = count > 0 ? count : null;
        FrameSize = first.Size();
        Description = $"file {Path.GetFileName(path)} ({FrameSize.Width}x{FrameSize.Height}, {Fps:0.##} fps{(FrameCount is { } n ? $", {n} frames" : "")})";
        if (this.options.Realtime) pacer = new Pacer(Fps);
        if (this.options.FirstFrame(Fps) is > 0 and var start) SkipTo(start);
    }

    /// <summary>
    /// Starts at frame <paramref name="target"/> (within the file when it loops): frames are grabbed,
    /// not sought, since seeking is unreliable across codecs; indices and times count from the target.
    /// </summary>
    void SkipTo(long target)
    {
        long within = options.Loop && FrameCount is { } n ? target % n : target;
        if (Skip(within) < within) ended = !options.Loop;
        index = target;
    }

    /// <summary>Opens the file and reads its first frame, both with a bounded wait.</summary>
    static (VideoCapture, Mat) OpenValidated(string path, TimeSpan timeout)
    {
        try { return TryOpenValidated(path, timeout); }
        catch (OpenCVException e) { throw new UserError($"cannot decode {Path.GetFileName(path)}: {e.Message}", e); }
    }

    static (VideoCapture, Mat) TryOpenValidated(string path, TimeSpan timeout)
    {
        var name = Path.GetFileName(path);
        if (!Bounded.TryRun(() => new VideoCapture(path, VideoCaptureAPIs.FFMPEG), timeout, out var capture))
            throw new UserError($"cannot decode {name}: opening it took longer than {timeout.TotalSeconds:0.#} s");
        if (capture is null || !capture.IsOpened())
        {
            capture?.Dispose();
            throw new UserError($"cannot decode {name}: not a video this build can open (corrupt, truncated or not a video file)");
        }
        var codec = Codecs.Describe(capture);
        var frame = new Mat();
        if (!Bounded.TryRun(() => capture.Read(frame), timeout, out var ok))
            // The read is still running on its thread: leave the capture and Mat to it, never free them under it.
            throw new UserError($"cannot decode {name}: codec {codec} gave no frame within {timeout.TotalSeconds:0.#} s; " +
                                $"this build decodes {Codecs.Supported} (re-encode: ffmpeg -i \"{path}\" -c:v libx264 out.mp4)");
        if (!ok || frame.Empty())
        {
            frame.Dispose();
            capture.Dispose();
            throw new UserError($"cannot decode {name}: codec {codec} gave no frames; " +
                                $"this build decodes {Codecs.Supported} (re-encode: ffmpeg -i \"{path}\" -c:v libx264 out.mp4)");
        }
        return (capture, frame);
    }

    public Frame? Read(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (ended) return null;
        var late = pacer?.WaitForNext(ct) ?? 0;
        // A slow consumer of a realtime file behaves like one of a camera: frames it was too slow for are gone.
        for (; late > 0 && first is null && capture.Grab(); late--) { index++; pacer!.Skipped(1); }

        var image = first ?? new Mat();
        first = null;
        if (image.Empty() && !Next(image) && !Rewind(image))
        {
            image.Dispose();
            ended = true;
            return null;
        }
        var frame = new Frame(image, index, TimeSpan.FromSeconds(index / Fps), Stopwatch.GetTimestamp());
        index++;
        return frame;
    }

    /// <summary>
    /// Passes over the next <paramref name="frames"/> frames without handing them out: each is
    /// grabbed (demuxed and decoded) but never converted to BGR or copied, which is most of a
    /// read's cost beside the decode. For a reader that samples a file; returns how many frames
    /// there were (fewer at the end of the file, which a looping source does not pass).
    /// </summary>
    public long Skip(long frames, CancellationToken ct = default)
    {
        long skipped = 0;
        if (frames > 0 && first is not null)
        {
            first.Dispose();
            first = null;
            index++;
            skipped = 1;
        }
        for (; skipped < frames && !ended; skipped++)
        {
            if ((skipped & 255) == 0) ct.ThrowIfCancellationRequested();
            if (!capture.Grab()) break;
            index++;
        }
        return skipped;
    }

    /// <summary>At the end of a looping file, reopens it (seeking back is unreliable across codecs).</summary>
    bool Rewind(Mat image)
    {
        if (!options.Loop) return false;
        capture.Dispose();
        capture = new VideoCapture(path, VideoCaptureAPIs.FFMPEG);
        options.Logger?.LogLoop(path);
        return capture.IsOpened() && Next(image);
    }

    /// <summary>A read that "succeeds" with an empty image is no frame either.</summary>
    bool Next(Mat image) => capture.Read(image) && !image.Empty();

    public void Dispose()
    {
        first?.Dispose();
        capture.Dispose();
        ended = true;
    }
}
