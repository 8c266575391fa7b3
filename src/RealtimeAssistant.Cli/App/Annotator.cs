using System.Diagnostics;
using System.Text.Json;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Output;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.App;

/// <summary>How annotate talks to the terminal.</summary>
public enum AnnotateConsole
{
    /// <summary>A Spectre progress bar (a terminal), or a line every few seconds (redirected output).</summary>
    Progress,
    /// <summary>Each caption streams word by word with its video timestamp (the demo without a display).</summary>
    StreamCaptions,
    /// <summary>Nothing (tests, benchmarks).</summary>
    Quiet,
}

public sealed record AnnotateOptions
{
    public required string Input { get; init; }
    public required string OutputDir { get; init; }
    public bool Force { get; init; }
    public bool Resume { get; init; }
    /// <summary>Burn the latency HUD into the video as well.</summary>
    public bool Hud { get; init; }
    public VideoEncoder Encoder { get; init; } = VideoEncoder.Auto;
    public AnnotateConsole Console { get; init; } = AnnotateConsole.Progress;
}

public sealed record AnnotateReport(string OutputDir, OutputMode Mode, long StartFrame, long FramesRendered, int Captions, bool Cancelled,
    TimeSpan Elapsed, string Encoder, string Video, string Source, int Stride, ProfilerSnapshot Profile, StreamStats Stats, string SessionMode,
    IReadOnlyList<(TimeSpan At, string Question)> Unasked)
{
    public double Fps => FramesRendered / Math.Max(1e-9, Elapsed.TotalSeconds);
}

/// <summary>
/// annotate: a video file in, annotated.mp4 (overlay burned in through headless EGL) plus
/// captions.srt/.vtt/.jsonl out, at model speed: the frame loop with file pacing, so every frame
/// is rendered and written and the captions come from the same session every command uses. Every
/// output is flushed as it goes, so an interrupted run leaves valid files, and a later run can
/// --resume after its last caption.
/// </summary>
public static class Annotator
{
    /// <summary>The options annotate opens its input with: a pipe is read to its end, every frame.</summary>
    public static FrameSourceOptions SourceOptions => AppSources.Options(pipesAsFiles: true, urlsAsFiles: true);

    /// <param name="source">the input, already open (the run takes it); null: open <see cref="AnnotateOptions.Input"/></param>
    public static AnnotateReport Run(AnnotateOptions o, ICaptionSession session, FrameLoopOptions loopOptions, CancellationToken ct, IFrameSource? source = null)
    {
        OutputPlan plan;
        long start;
        try
        {
            plan = OutputFolder.Prepare(o.OutputDir, o.Force, o.Resume);
            start = plan.Mode == OutputMode.Resume ? ResumeFrame(plan) : 0;
        }
        catch { source?.Dispose(); throw; }
        source ??= FrameSources.Open(o.Input, SourceOptions);
        var profiler = new Profiler(window: 4096);
        var fps = source.Fps;
        var description = source.Description;
        using var loop = new FrameLoop(source, session, profiler, loopOptions with { Pacing = Pacing.File, StartFrame = start })
        {
            WriteStarted = o.Console == AnnotateConsole.StreamCaptions ? (_, t, q) => StreamStart(t, q) : null,
            Delta = o.Console == AnnotateConsole.StreamCaptions ? d => { System.Console.Out.Write(d); System.Console.Out.Flush(); } : null,
        };
        if (plan.Mode == OutputMode.Resume)
            Say(o, $"resuming {o.OutputDir} after {plan.Existing.Count} captions, from frame {start}");

        FrameLoopResult result;
        string encoder;
        // A file's sound goes with its annotated video, at the rate its timestamps are on: a
        // variable-rate recording's fastest stretch keeps every frame. So does a web server's file's
        // (fetched again for it); a pipe's or a live stream's cannot be read again.
        var probe = FileKind.Of(o.Input) == FileKind.Kind.Regular ? MediaProbe.Of(o.Input)
            : MediaProbe.IsHttp(o.Input) && MediaProbe.Of(o.Input) is { Seconds: > 0 } remote ? remote : null;
        var videoFps = probe?.VideoFps(fps) ?? fps;
        using (var captions = new CaptionFiles(plan))
        using (var video = new AnnotatedVideoWriter(plan.AnnotatedVideo, videoFps, o.Encoder, probe?.HasSound == true ? o.Input : null))
        {
            encoder = video.EncoderDescription;
            OverlayPresenter? presenter = null;
            var pixels = new Mat();
            var hud = new HudFeed(profiler, 1000.0 / fps);
            long lastPresent = 0;
            UserError? finishError = null;
            try
            {
                void Present(Frame frame, CaptionView view)
                {
                    presenter ??= OverlayPresenter.Headless(frame.Image.Width, frame.Image.Height);
                    presenter.ShowHud = o.Hud;
                    var now = Stopwatch.GetTimestamp();
                    if (lastPresent != 0) hud.AddFrameTime(Stopwatch.GetElapsedTime(lastPresent, now).TotalMilliseconds);
                    lastPresent = now;
                    presenter.Render(frame.Image, view, o.Hud ? hud.Stats(profiler.Snapshot().Counter(Profiler.FramesCaptured)?.PerSecond ?? 0, loop, TimeSpan.FromMilliseconds(250)) : null, null);
                    presenter.Renderer.ReadPixels(pixels);
                    video.Write(pixels, frame.Timestamp);
                }
                void Segment(CaptionSegment s) => captions.Write(Entry(s));
                // Progress in the video's frames, from the container's count at the video's rate: a
                // file that holds a picture over several frames' time counts them all.
                long? frames = loopOptions.MaxFrames > 0 ? Math.Min(source.FrameCount ?? long.MaxValue, loopOptions.MaxFrames) : source.FrameCount;
                long? total = frames is { } n ? (long)Math.Round(Math.Max(0, n - start) * videoFps / fps) : null;
                long Done() => total is { } t ? Math.Min(video.FramesWritten, t) : video.FramesWritten;
                // Finish the video as soon as the last frame is out (on Ctrl+C the process has little time left).
                void Stopped() { try { video.Finish(); } catch (UserError e) { finishError = e; } }
                result = o.Console == AnnotateConsole.Progress && !System.Console.IsOutputRedirected
                    ? WithProgressBar(loop, Present, Segment, total, Done, description, ct, Stopped)
                    : loop.RunFile(Present, Segment, o.Console == AnnotateConsole.Progress ? Ticker(total, Done) : null, ct, Stopped);
            }
            finally
            {
                presenter?.Dispose();
                pixels.Dispose();
            }
            if (finishError is not null) throw finishError;
            video.Finish();
            if (video.FramesRepeated + video.FramesLeftOut > 0)
                encoder += $"; the source's rate varies: {video.FramesRepeated} frames repeated and {video.FramesLeftOut} left out to keep its timing at {videoFps:0.##} fps";
        }
        if (o.Console == AnnotateConsole.StreamCaptions) System.Console.Out.WriteLine();
        return new AnnotateReport(o.OutputDir, plan.Mode, start, result.FramesRendered, result.Captions, result.Cancelled, result.Elapsed,
            encoder, plan.AnnotatedVideo, description, loopOptions.Stride, profiler.Snapshot(), result.Stats, session.Mode, result.Unasked);
    }

    /// <summary>The video's frame count when a resumed run's captions already reach its end, else null.</summary>
    public static long? IsComplete(OutputPlan plan, IFrameSource source) =>
        source.IsLive || source.FrameCount is not { } n || ResumeFrame(plan) < n ? null : n;

    /// <summary>The frame after the last caption's segment (its end_frame), so nothing is captioned twice.</summary>
    internal static long ResumeFrame(OutputPlan plan)
    {
        var last = plan.Existing.LastOrDefault();
        if (last?.Extra is { } extra && extra.TryGetValue("end_frame", out var v) && v is JsonElement { ValueKind: JsonValueKind.Number } e)
            return e.TryGetInt64(out var end) && end >= 0 ? end
                : throw new UserError($"cannot resume from {plan.Jsonl}: the last caption's end_frame {e.GetRawText()} is not a frame index (use --force to start over)");
        return plan.LastFrame + 1;
    }

    /// <summary>
    /// A segment's captions entry. SRT and VTT keep the text (an answer as "Q: … A: …"); the JSONL
    /// line also records the mode, the frames read since the last caption, the pruning level and
    /// its k, and the read and write times.
    /// </summary>
    public static CaptionEntry Entry(CaptionSegment s)
    {
        var w = s.Written;
        var r = w.Report;
        var extra = new Dictionary<string, object?>
        {
            ["end_frame"] = s.EndFrame,
            ["mode"] = w.Mode,
            ["frames_read"] = w.ReadsSince,
            ["k"] = w.Budget,
            ["level"] = w.Level,
            ["read_ms"] = Math.Round(w.ReadMs, 2),
            ["write_ms"] = Math.Round(w.WriteMs, 2),
            ["visual_tokens"] = r.VisualTokens,
            ["preprocess_ms"] = Math.Round(r.PreprocessMs, 2),
            ["vision_ms"] = Math.Round(r.VisionMs, 2),
            ["prefill_ms"] = Math.Round(r.DecoderMs, 2),
            ["decode_ms"] = Math.Round(r.DecodeMs.Sum(), 2),
            ["tokens"] = w.Tokens,
        };
        if (w.Question is { } q) extra["question"] = q;
        var text = w.Question is { } question ? $"Q: {question}  A: {w.Text}" : w.Text;
        return new CaptionEntry(s.Start, s.End, text, s.LatencyMs, r.KeptTokens, s.KeyFrame, extra);
    }

    static FrameLoopResult WithProgressBar(FrameLoop loop, Action<Frame, CaptionView> present, Action<CaptionSegment> segment, long? total, Func<long> done, string what,
        CancellationToken ct, Action stopped)
    {
        FrameLoopResult? result = null;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(what), maxValue: total ?? 1);
                task.IsIndeterminate = total is null;
                result = loop.RunFile(present, segment, _ => task.Value = total is null ? 0 : done(), ct, stopped);
                task.Value = task.MaxValue;
            });
        return result!;
    }

    /// <summary>For redirected output: one line every 5 seconds.</summary>
    static Action<long> Ticker(long? total, Func<long> done)
    {
        var sw = Stopwatch.StartNew();
        var next = 5.0;
        return _ =>
        {
            if (sw.Elapsed.TotalSeconds < next) return;
            next += 5;
            var n = done();
            System.Console.Error.WriteLine(total is { } t ? $"annotate: {n}/{t} frames ({100.0 * n / Math.Max(1, t):0}%)" : $"annotate: {n} frames");
        };
    }

    static void StreamStart(TimeSpan t, string? question)
    {
        System.Console.Out.Write($"\n[{(int)t.TotalMinutes:00}:{t.Seconds:00}.{t.Milliseconds / 100}] {(question is null ? "" : $"Q: {question}  A: ")}");
        System.Console.Out.Flush();
    }

    static void Say(AnnotateOptions o, string line)
    {
        if (o.Console != AnnotateConsole.Quiet) System.Console.Error.WriteLine($"annotate: {line}");
    }

    /// <summary>The summary printed after a run.</summary>
    public static void PrintSummary(AnnotateReport r)
    {
        var caption = r.Profile.Stage(CaptionStages.CaptionTotal);
        var latency = r.Profile.Stage(Profiler.GlassToCaption);
        var render = r.Profile.Stage(Profiler.Render);
        AnsiConsole.MarkupLine($"{(r.Cancelled ? "[yellow]interrupted[/]: partial outputs are valid" : "[green]done[/]")}: " +
            $"{r.FramesRendered} frames, {r.Captions} captions ({r.SessionMode}, {r.Stats.Read} frames read, {r.Stats.Skipped} unchanged, {r.Stats.BudgetSkipped} skipped for the budget{(r.Stats.Drafted > 0 ? $", {r.Stats.DraftsTaken} of {r.Stats.Drafted} drafted tokens taken" : "")}) in {r.Elapsed.TotalSeconds:0.0} s ({r.Fps:0.0} fps)");
        if (caption is not null)
            AnsiConsole.MarkupLine($"  caption p50 {caption.P50:0} ms, p95 {caption.P95:0} ms; glass-to-caption p50 {latency?.P50 ?? 0:0} ms; render+encode p50 {render?.P50 ?? 0:0.0} ms/frame");
        if (r.Stats.ReadsByLevelLine is { } levels) AnsiConsole.MarkupLine($"  {Markup.Escape(levels)}");
        AnsiConsole.MarkupLine($"  video: {Markup.Escape(r.Video)} ({Markup.Escape(r.Encoder)})");
        AnsiConsole.MarkupLine($"  captions: {Markup.Escape(Path.Combine(r.OutputDir, OutputFolder.SrtName))}, .vtt, .jsonl");
    }
}
