using Microsoft.Extensions.Logging;

namespace RealtimeAssistant.Capture;

/// <summary>How <see cref="FrameSources.Open"/> opens and runs a source.</summary>
public sealed record FrameSourceOptions
{
    /// <summary>Replay files and folders from the start when they end.</summary>
    public bool Loop { get; init; }

    /// <summary>Deliver file/folder frames at their fps, as if live (used by <c>profile</c>).</summary>
    public bool Realtime { get; init; }

    /// <summary>
    /// Start this far into a file or a generated clip, as if it had been playing since then (frame
    /// indices and times count from there). A cluster stream that moves to another silo resumes its
    /// source where a viewer would now see it, instead of at the start. A live source cannot seek:
    /// it numbers its frames and times from there, so a moved stream's log goes on, not back to 0.
    /// </summary>
    public TimeSpan StartAt { get; init; }

    /// <summary>
    /// The newest frame index an earlier run of this file or clip already delivered (-1: none). A
    /// resumed source starts after it even when <see cref="StartAt"/> rounds to that frame, so a
    /// moved stream never reads a frame twice. A live source numbers its frames after it.
    /// </summary>
    public long StartAfterFrame { get; init; } = -1;

    /// <summary>The index a file or clip at <paramref name="fps"/> starts at: <see cref="StartAt"/>'s frame, but never one already delivered.</summary>
    public long FirstFrame(double fps) => Math.Max((long)Math.Round(StartAt.TotalSeconds * fps), StartAfterFrame + 1);

    /// <summary>Frame rate for image folders (files and devices carry their own).</summary>
    public double Fps { get; init; } = 30;

    /// <summary>How long a file may take to open and give its first frame before we call it undecodable.
    /// AV1 in this OpenCV build opens fine and then never yields a frame, so this wait must be bounded.</summary>
    public TimeSpan OpenTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Where OpenCV's FFmpeg opens a file but cannot decode its codec (AV1), decode it with the
    /// ffmpeg on PATH instead. Off: such a file is a <see cref="UserError"/> naming the codec.
    /// </summary>
    public bool DecodeWithFfmpeg { get; init; } = true;

    /// <summary>
    /// Read a FIFO or a pipe ("-") as a file: every frame in order, the writer held back by the
    /// reader, ending when it closes (annotate, stream). Off, it stands in for a camera (live): the
    /// newest frame wins, and a writer that goes away is waited for again.
    /// </summary>
    public bool PipesAsFiles { get; init; }

    /// <summary>
    /// Read every stream URL as a file: every frame in order, ffmpeg's download held back by the
    /// reader, ending when the stream ends (annotate, which writes every frame). Off, only a URL
    /// naming a video file with a length is a file; a camera's is live, reconnected when it drops.
    /// </summary>
    public bool UrlsAsFiles { get; init; }

    /// <summary>How long a pipe or URL read as a file may take to give its first frame.</summary>
    public TimeSpan StreamOpenTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>First and longest wait between reconnect attempts of a live source.</summary>
    public TimeSpan RetryInitial { get; init; } = TimeSpan.FromSeconds(0.25);
    public TimeSpan RetryMax { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>A live source that has given no frame for this long ends (null = retry forever).</summary>
    public TimeSpan? GiveUpAfter { get; init; }

    /// <summary>Extra schemes, e.g. "synthetic" → the app's generated scene, matched on "NAME" or "NAME:args".</summary>
    public IReadOnlyDictionary<string, Func<string, FrameSourceOptions, IFrameSource>> Schemes { get; init; }
        = new Dictionary<string, Func<string, FrameSourceOptions, IFrameSource>>();

    public ILogger? Logger { get; init; }
}
