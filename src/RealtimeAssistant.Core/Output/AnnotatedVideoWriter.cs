using OpenCvSharp;

namespace RealtimeAssistant.Output;

/// <summary>Which encoder <see cref="AnnotatedVideoWriter"/> uses.</summary>
public enum VideoEncoder
{
    /// <summary>ffmpeg H.264 when ffmpeg is on PATH, else OpenCV mp4v.</summary>
    Auto,
    /// <summary>Debian's ffmpeg, libx264, fragmented MP4 (plays everywhere; survives a kill).</summary>
    FfmpegH264,
    /// <summary>OpenCV's VideoWriter with MPEG-4 part 2 (always there; this OpenCV cannot write H.264).</summary>
    OpenCvMp4v,
}

/// <summary>
/// Writes annotated BGR frames to an .mp4. The frame size is taken from the first frame;
/// later frames must match. Dispose finishes the file. When the encoder fails (cannot open the
/// file, ffmpeg dies or exits with an error) it throws a <see cref="UserError"/> naming the file:
/// the cause is the output path or the machine's ffmpeg, not a bug.
/// </summary>
public sealed class AnnotatedVideoWriter : IDisposable
{
    readonly string path;
    readonly double fps;
    readonly string? ffmpeg;
    FfmpegPipe? pipe;
    VideoWriter? writer;
    Size size;
    bool finished;

    public VideoEncoder Encoder { get; }
    /// <summary>For logs and the run report: "ffmpeg libx264 (fragmented mp4)" or "OpenCV mp4v".</summary>
    public string EncoderDescription => Encoder == VideoEncoder.FfmpegH264 ? $"ffmpeg libx264 (fragmented mp4){(sound is null ? "" : ", with the source's sound in AAC")}" : "OpenCV mp4v";
    readonly string? sound;

    public long FramesWritten { get; private set; }
    public string Path => path;
    /// <summary>The ffmpeg child, once started (tests kill it to play a crash).</summary>
    internal int? EncoderProcessId => pipe?.ProcessId;

    /// <param name="soundFrom">a video file with sound (<see cref="MediaProbe"/>) whose sound goes with
    /// the video (H.264 only), from the time of the first frame written: the sound of the frames annotated</param>
    public AnnotatedVideoWriter(string path, double fps, VideoEncoder encoder = VideoEncoder.Auto, string? soundFrom = null)
    {
        if (fps is not (> 0 and < 1000)) throw new ArgumentOutOfRangeException(nameof(fps), fps, "fps must be in (0, 1000)");
        this.path = path;
        this.fps = fps;
        ffmpeg = encoder == VideoEncoder.OpenCvMp4v ? null : Executables.Find("ffmpeg");
        if (encoder == VideoEncoder.FfmpegH264 && ffmpeg is null)
            throw new UserError("H.264 output needs ffmpeg on PATH (Debian: apt-get install ffmpeg)");
        Encoder = ffmpeg is null ? VideoEncoder.OpenCvMp4v : VideoEncoder.FfmpegH264;
        sound = ffmpeg is not null ? soundFrom : null;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        try { if (dir is not null) Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UserError($"cannot write {path}: {e.Message}", e); }
    }

    /// <summary>Frames written twice or more to fill a gap in the source's times (see <see cref="Write(Mat, TimeSpan)"/>).</summary>
    public long FramesRepeated { get; private set; }
    /// <summary>Frames left out where the source's came faster than the video's rate.</summary>
    public long FramesLeftOut { get; private set; }
    TimeSpan? start;
    Mat? held;

    /// <summary>
    /// Writes <paramref name="frame"/>, shown in the source from <paramref name="at"/>. The video
    /// has one rate; where the source's changes (a phone's or a browser's recording) its frames are
    /// repeated where they came slower and left out where they came faster, so that the video keeps
    /// the source's timing, which the caption files keep too. A source at the video's rate is
    /// written frame for frame.
    /// </summary>
    public void Write(Mat frame, TimeSpan at)
    {
        start ??= at;
        var due = (long)Math.Round((at - start.Value).TotalSeconds * fps);
        if (FramesWritten > due) FramesLeftOut++;
        else
        {
            for (; FramesWritten < due; FramesRepeated++) Write(held!);
            Write(frame);
        }
        held ??= new Mat();
        frame.CopyTo(held);
    }

    public unsafe void Write(Mat frame)
    {
        ObjectDisposedException.ThrowIf(finished, this);
        if (frame.Type() != MatType.CV_8UC3) throw new ArgumentException($"expected a BGR 8UC3 frame, got {frame.Type()}", nameof(frame));
        if (FramesWritten == 0) Begin(frame.Size());
        else if (frame.Size() != size) throw new ArgumentException($"frame size {frame.Width}x{frame.Height} differs from the video's {size.Width}x{size.Height}", nameof(frame));

        if (pipe is not null)
        {
            using var owned = frame.IsContinuous() ? null : frame.Clone();
            var m = owned ?? frame;
            pipe.Write(new ReadOnlySpan<byte>((void*)m.Data, checked((int)(m.Total() * m.ElemSize()))));
        }
        else writer!.Write(frame);
        FramesWritten++;
    }

    void Begin(Size first)
    {
        size = first;
        if (ffmpeg is not null)
        {
            pipe = new FfmpegPipe(ffmpeg, path, size.Width, size.Height, fps, sound is null ? null : (sound, start ?? TimeSpan.Zero));
            return;
        }
        writer = new VideoWriter(path, FourCC.MP4V, fps, size);
        if (!writer.IsOpened()) throw new UserError($"OpenCV could not open {path} for writing (mp4v)");
    }

    /// <summary>Finishes the file. Throws a <see cref="UserError"/> if ffmpeg failed, with its error output.</summary>
    public void Finish()
    {
        if (finished) return;
        finished = true;
        if (pipe is not null)
        {
            var code = pipe.Finish(TimeSpan.FromSeconds(60));
            var errors = pipe.Errors;
            pipe.Dispose();
            if (code != 0) throw new UserError($"ffmpeg failed writing {path} (exit {code}): {errors}");
        }
        writer?.Release();
        writer?.Dispose();
    }

    /// <summary>Why finishing failed, when it failed inside <see cref="Dispose"/> (which must not throw).</summary>
    public string? Error { get; private set; }

    public void Dispose()
    {
        held?.Dispose();
        try { Finish(); }
        catch (UserError e) { Error = e.Message; }
    }
}
