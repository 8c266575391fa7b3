using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Capture;

/// <summary>
/// A video file read through OpenCV's bundled FFmpeg. The file is checked when it is opened: a
/// missing file and a file FFmpeg cannot open become a <see cref="UserError"/>, within
/// <see cref="FrameSourceOptions.OpenTimeout"/>. A codec the bundled FFmpeg opens but cannot decode
/// (AV1: it has no AV1 decoder) is decoded by Debian's ffmpeg instead, through an
/// <see cref="FfmpegRelay"/>, and is a <see cref="UserError"/> naming the codec where there is none.
/// </summary>
public sealed class VideoFileSource : IFrameSource
{
    readonly string path;
    readonly FrameSourceOptions options;
    readonly Pacer? pacer;
    readonly FfmpegRelay? relay;  // the decoder when OpenCV's has none for the codec
    readonly bool pipe;           // a FIFO or stdin: read once, front to back
    VideoCapture capture;
    Mat? first;       // the frame read while validating, handed out by the first Read
    long index;       // frames delivered, across loops: timestamps keep rising when looping
    bool ended;
    bool disposed;

    public string Description { get; }
    public double Fps { get; }
    public bool IsLive => options.Realtime;
    public long? FrameCount { get; }
    public Size FrameSize { get; }
    public string Status => ended ? "ended" : options.Realtime ? "playing (realtime)" : "playing";
    /// <summary>Who decodes the file: "opencv", or "ffmpeg" where OpenCV's FFmpeg lacks the codec.</summary>
    public string Decoder => relay is null ? "opencv" : "ffmpeg";

    /// <param name="description">what to call it (default "file NAME"); the frame size, rate and count are added</param>
    public VideoFileSource(string path, FrameSourceOptions? options = null, string? description = null)
    {
        this.path = path;
        this.options = options ?? new FrameSourceOptions();
        if (!File.Exists(path)) throw new UserError($"video file not found: {path}");
        (capture, first, relay, pipe, FrameCount, Fps, var codec) = OpenLocal(path, this.options);
        Description = Describe(description ?? $"file {Path.GetFileName(path)}", relay is null ? null : $"{codec} decoded by ffmpeg", out var size);
        FrameSize = size;
        if (this.options.Realtime) pacer = new Pacer(Fps);
        if (this.options.FirstFrame(Fps) is > 0 and var start) SkipTo(start);
    }

    /// <summary>
    /// A stream URL read as a file (<see cref="FrameSourceOptions.UrlsAsFiles"/>, or a URL that names a file): Debian's ffmpeg
    /// fetches and decodes it, and every frame comes in order, the download held back by the reader,
    /// to the stream's end. A looping one fetches it again. A URL that gives no video within
    /// <see cref="FrameSourceOptions.StreamOpenTimeout"/> is a <see cref="UserError"/> with ffmpeg's reason.
    /// </summary>
    public static VideoFileSource OfUrl(string url, FrameSourceOptions? options = null) => new(url, options ?? new FrameSourceOptions(), isUrl: true);

    VideoFileSource(string url, FrameSourceOptions options, bool isUrl)
    {
        path = NetworkFrameSource.Redact(url);
        this.options = options;
        var ffmpeg = Executables.Find("ffmpeg")
            ?? throw new UserError($"stream URLs need ffmpeg on PATH (Debian: apt-get install ffmpeg): {path}");
        relay = NetworkFrameSource.Relay(ffmpeg, url, TimeSpan.FromSeconds(10), resume: true);
        try { (capture, first) = OpenRelay(relay, options.StreamOpenTimeout); }
        catch (IOException e)
        {
            relay.Dispose();
            throw new UserError($"no video from {path}: {e.Message}", e);
        }
        // The relay's NUT carries the stream's rate, but no length.
        Fps = capture.Fps is > 0 and < 1000 ? capture.Fps : 30;
        Description = Describe($"url {path}", null, out var size);
        FrameSize = size;
        if (options.Realtime) pacer = new Pacer(Fps);
        if (options.FirstFrame(Fps) is > 0 and var start) SkipTo(start);
    }

    string Describe(string name, string? decoder, out Size size)
    {
        size = first!.Size();
        return $"{name} ({size.Width}x{size.Height}, {Fps:0.##} fps{(FrameCount is { } n ? $", {n} frames" : "")}{(decoder is null ? "" : $", {decoder}")})";
    }

    /// <summary>A local file or pipe through OpenCV's FFmpeg, or through Debian's ffmpeg where OpenCV's lacks the codec.</summary>
    static (VideoCapture, Mat, FfmpegRelay?, bool Pipe, long? Count, double Fps, string Codec) OpenLocal(string path, FrameSourceOptions options)
    {
        var name = Path.GetFileName(path);
        var timeout = options.OpenTimeout;
        // A pipe is read once, front to back: it has no length, and cannot be reopened to loop or to decode again.
        var pipe = FileKind.Of(path) == FileKind.Kind.Fifo;
        var opened = Open(path, timeout, pipe);
        // The container's rate and length, whoever decodes.
        var fps = opened.Capture.Fps is > 0 and < 1000 ? opened.Capture.Fps : 30;
        var count = (long)opened.Capture.Get(VideoCaptureProperties.FrameCount);
        long? frames = count > 0 && !pipe ? count : null;
        var codec = Codecs.Describe(opened.Capture);
        if (opened.First is { } frame) return (opened.Capture, frame, null, pipe, frames, fps, codec);

        if (opened.Finished) opened.Capture.Dispose(); // else the read still runs on its thread: leave the capture to it
        var cannot = $"cannot decode {name}: codec {codec} gave no frame{(opened.Finished ? "s" : $" within {timeout.TotalSeconds:0.#} s")} (OpenCV's FFmpeg has no decoder for it)";
        if (pipe)
            throw new UserError($"no frame came through {name}: its writer sent none, or codec {codec} is one OpenCV's FFmpeg cannot decode (decode it before the pipe: ffmpeg -i IN -c:v rawvideo -f nut -)");
        var ffmpeg = options.DecodeWithFfmpeg ? Executables.Find("ffmpeg") : null;
        if (ffmpeg is null)
            throw new UserError($"{cannot}; with ffmpeg on PATH (apt-get install ffmpeg) ra decodes it through ffmpeg");
        // The file may come from anyone (a chat request's video): ffmpeg reads it as one local
        // container, never as a playlist or concat list that reaches other files or the network.
        var relay = new FfmpegRelay(ffmpeg, ["-protocol_whitelist", "file", "-format_whitelist", RelayContainers, "-i", path]);
        try
        {
            var (capture, first) = OpenRelay(relay, timeout);
            return (capture, first, relay, pipe, frames, fps, codec);
        }
        catch (IOException e)
        {
            relay.Dispose();
            throw new UserError($"{cannot}, and ffmpeg could not either ({e.Message})", e);
        }
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

    /// <summary>The demuxers the relay may use: the containers a codec OpenCV's FFmpeg lacks (AV1) comes in.</summary>
    const string RelayContainers = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,ivf,obu,mpegts,nut,flv,avi";

    /// <param name="First">the first frame; null where none came</param>
    /// <param name="Finished">false where the first read was still running when the wait ended</param>
    readonly record struct Opened(VideoCapture Capture, Mat? First, bool Finished);

    /// <summary>Opens the file with OpenCV's FFmpeg and reads its first frame, both with a bounded wait.</summary>
    static Opened Open(string path, TimeSpan timeout, bool pipe)
    {
        var name = Path.GetFileName(path);
        try
        {
            if (!Bounded.TryRun(() => new VideoCapture(path, VideoCaptureAPIs.FFMPEG), timeout, out var capture))
                throw new UserError(pipe ? $"no video came through {name} within {timeout.TotalSeconds:0.#} s: nothing is writing into it"
                                         : $"cannot decode {name}: opening it took longer than {timeout.TotalSeconds:0.#} s");
            if (capture is null || !capture.IsOpened())
            {
                capture?.Dispose();
                throw new UserError($"cannot decode {name}: not a video this build can open (corrupt, truncated or not a video file)");
            }
            var frame = new Mat();
            // On a timeout the read is still running on its thread: the Mat stays with it, never freed under it.
            if (!Bounded.TryRun(() => capture.Read(frame), timeout, out var ok)) return new(capture, null, Finished: false);
            if (ok && !frame.Empty()) return new(capture, frame, true);
            frame.Dispose();
            return new(capture, null, true);
        }
        catch (OpenCVException e) { throw new UserError($"cannot decode {name}: {e.Message}", e); }
    }

    /// <summary>A fresh ffmpeg from the file's start, and its first frame.</summary>
    static (VideoCapture, Mat) OpenRelay(FfmpegRelay relay, TimeSpan timeout)
    {
        // ffmpeg probes a local file in well under a second; a slow disk gets the open's own bound at least.
        var giveUp = Stopwatch.StartNew();
        var wait = TimeSpan.FromSeconds(Math.Max(10, timeout.TotalSeconds));
        var capture = relay.Open(() => giveUp.Elapsed > wait);
        var frame = new Mat();
        if (capture.Read(frame) && !frame.Empty()) return (capture, frame);
        frame.Dispose();
        capture.Dispose();
        throw new IOException(relay.Error ?? "ffmpeg gave no frame");
    }

    public Frame? Read(CancellationToken ct = default)
    {
        Interlocked.Increment(ref reading);
        try { return ReadNext(ct); }
        finally { Interlocked.Decrement(ref reading); }
    }

    /// <summary>Reads under way: a pipe's writer that went quiet holds one in OpenCV for good.</summary>
    int reading;

    Frame? ReadNext(CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        if (ended) return null;
        if (pacer is not null && !options.Loop) return ReadOnTime(pacer, ct);
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
        var frame = new Frame(image, index, TimeOf(capture.Get(VideoCaptureProperties.PosMsec)), Stopwatch.GetTimestamp());
        index++;
        return frame;
    }

    /// <summary>
    /// A realtime file that does not loop, paced by its frames' own times, so that a variable-rate
    /// recording plays as it was shown: each frame is handed out when it is due, and one a frame
    /// late or more when it is decoded is passed over (grabbed, never converted), as a camera's
    /// frames a slow reader missed are gone.
    /// </summary>
    Frame? ReadOnTime(Pacer pacer, CancellationToken ct)
    {
        var image = first;
        first = null;
        TimeSpan at;
        if (image is not null) at = TimeOf(capture.Get(VideoCaptureProperties.PosMsec));
        else
        {
            while (true)
            {
                if (!capture.Grab()) { ended = true; return null; }
                at = TimeOf(capture.Get(VideoCaptureProperties.PosMsec));
                if (!pacer.IsLate(at)) break;
                index++;
                ct.ThrowIfCancellationRequested();
            }
            image = new Mat();
            if (!capture.Retrieve(image) || image.Empty()) { image.Dispose(); ended = true; return null; }
        }
        try { pacer.WaitUntil(at, ct); }
        catch (OperationCanceledException) { image.Dispose(); throw; }
        var frame = new Frame(image, index, at, Stopwatch.GetTimestamp());
        index++;
        return frame;
    }

    /// <summary>
    /// The time of the frame just read (<see cref="index"/>): where the container gives rising
    /// presentation times, those, since a phone's or a browser's recording changes its rate as it
    /// goes and the frame's index over the mean rate would drift from the picture by seconds; else
    /// the index over the rate. A looping file keeps the index's time, which goes on across loops.
    /// Counted from the first frame read, which keeps its index's time (a start part-way).
    /// </summary>
    TimeSpan TimeOf(double presentedMs)
    {
        var byIndex = TimeSpan.FromSeconds(index / Fps);
        if (options.Loop || !(presentedMs >= 0) || double.IsInfinity(presentedMs)) return lastTime = byIndex;
        presentedBase ??= presentedMs - byIndex.TotalMilliseconds;
        var at = TimeSpan.FromMilliseconds(presentedMs - presentedBase.Value);
        // A damaged stream's times can stall or go back: then one frame at the mean rate on.
        return lastTime = at > lastTime ? at : lastTime + TimeSpan.FromSeconds(1 / Fps);
    }
    double? presentedBase;
    TimeSpan lastTime = TimeSpan.MinValue;

    /// <summary>
    /// Passes over the next <paramref name="frames"/> frames without handing them out: each is
    /// grabbed (demuxed and decoded) but never converted to BGR or copied, which is most of a
    /// read's cost beside the decode. For a reader that samples a file; returns how many frames
    /// there were (fewer at the end of the file, which a looping source does not pass).
    /// </summary>
    public long Skip(long frames, CancellationToken ct = default)
    {
        Interlocked.Increment(ref reading);
        try { return SkipNext(frames, ct); }
        finally { Interlocked.Decrement(ref reading); }
    }

    long SkipNext(long frames, CancellationToken ct)
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
        if (!options.Loop || pipe) return false;
        capture.Dispose();
        if (relay is null) capture = new VideoCapture(path, VideoCaptureAPIs.FFMPEG);
        else
        {
            try { capture = relay.Open(() => disposed); }
            catch (IOException) { capture = new VideoCapture(); }
        }
        options.Logger?.LogLoop(path);
        return capture.IsOpened() && Next(image);
    }

    /// <summary>A read that "succeeds" with an empty image is no frame either.</summary>
    bool Next(Mat image) => capture.Read(image) && !image.Empty();

    public void Dispose()
    {
        disposed = ended = true;
        first?.Dispose();
        // A relay's ffmpeg stopped ends a read in progress; a capture still in a read of a pipe
        // whose writer went quiet is left to the process's end, not freed under that read.
        relay?.Dispose();
        if (relay is not null) SpinWait.SpinUntil(() => Volatile.Read(ref reading) == 0, 500);
        if (Volatile.Read(ref reading) == 0) capture.Dispose();
    }
}
