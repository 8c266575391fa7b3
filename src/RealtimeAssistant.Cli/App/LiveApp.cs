using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Rendering;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.App;

public sealed record LiveAppOptions
{
    /// <summary>Camera index, file, FIFO, image folder or "synthetic".</summary>
    public required string Source { get; init; }
    /// <summary>Replay files when they end.</summary>
    public bool Loop { get; init; }
    /// <summary>Pace files at their frame rate, as a camera would deliver them.</summary>
    public bool Realtime { get; init; } = true;
    /// <summary>The render loop's rate (frames drawn per second, whatever the model does).</summary>
    public double DisplayFps { get; init; } = 60;
    /// <summary>Stop after this long (null: until the source ends, Q/Esc or Ctrl+C).</summary>
    public TimeSpan? Duration { get; init; }
    public bool ShowHud { get; init; } = true;
    /// <summary>Print each finished caption on stdout with its video time (headless runs).</summary>
    public bool PrintCaptions { get; init; }
    /// <summary>Headless drawing size (a window keeps its own).</summary>
    public int Width { get; init; } = 640;
    public int Height { get; init; } = 480;
    public string ScreenshotDir { get; init; } = ".";
    /// <summary>When the run ends, save its last overlay frame as this PNG.</summary>
    public string? SnapshotPath { get; init; }
    /// <summary>Profiler window (samples per stage kept for percentiles and plots).</summary>
    public int ProfileWindow { get; init; } = 4096;
    /// <summary>Seconds at the start that do not count toward fps, frame times and RSS-start (warm-up).</summary>
    public double WarmupSeconds { get; init; }
    /// <summary>
    /// Captions that must be on screen before measuring starts, beside <see cref="WarmupSeconds"/>:
    /// the model's first passes pay one-time costs (JIT, allocation) a steady stream does not. With
    /// either warm-up, the profiler forgets what it recorded before.
    /// </summary>
    public int WarmupCaptions { get; init; }
    public ILogger? Logger { get; init; }
    /// <summary>A camera or stream that gives no frame for this long is lost for good (null: retry forever).</summary>
    public TimeSpan? GiveUpAfter { get; init; }
}

/// <summary>What a live run measured.</summary>
public sealed record LiveStats(string Source, string Context, long FramesRendered, TimeSpan Measured, double RenderFps,
    double FrameMsP50, double FrameMsP99, double FrameMsMax, long Captions, double CaptionHz, double WordsHz,
    double LatencyP50, double LatencyP95, double LatencyP99, long DroppedForInference, long DroppedForDisplay, long FramesCaptured,
    double RssStartMb, double RssEndMb, double RssMaxMb, IReadOnlyList<(double Seconds, double Mb)> Rss,
    IReadOnlyList<double> FrameTimesMs, ProfilerSnapshot Profile, Profiler Profiler, string? Error,
    IReadOnlyList<double> Latencies, long BudgetSkipped, StreamStats Stream, bool SourceLost = false, bool UserMistake = false)
{
    /// <summary>After the warm-up: from each caption's frame leaving its source to the first render showing a word of it.</summary>
    public IReadOnlyList<double> FirstWordLatencies { get; init; } = [];
    /// <summary>Frames read at each pruning level after the warm-up (<see cref="StreamStats.Levels"/> counts the whole run).</summary>
    public IReadOnlyDictionary<string, long> LevelsMeasured { get; init; } = Stream.Levels;
    /// <summary>The cold start: when the first caption reached the screen (seconds after the run began) and its glass-to-caption (ms); null when none did.</summary>
    public (double AtSeconds, double LatencyMs)? FirstCaption { get; init; }
    /// <summary>Captions that warmed the model up before the measured record began (<see cref="LiveAppOptions.WarmupCaptions"/>).</summary>
    public int WarmupCaptions { get; init; }
    /// <summary>Set when the run ended before its warm-up did (captions shown, captions the warm-up asked for): the record is then the whole run.</summary>
    public (int Shown, int Asked)? WarmupUnfinished { get; init; }
}

/// <summary>
/// The live app's render thread: draws at display rate (window or headless), takes the newest
/// frame and the caption board's view each tick and never waits on the model. Keys: H HUD,
/// P pruning, S screenshot, Q/Esc quit; typing (or Enter, then typing) asks a question.
/// </summary>
public static class LiveApp
{
    static readonly HashSet<string> QuietStatuses = ["live", "playing", "playing (realtime)", "generating"];

    /// <summary>
    /// How a run that played ends, for the commands: a source lost for good is one line and
    /// <see cref="Cli.SourceLostCode"/>; a source that was bad input (it never gave a frame, an
    /// image that does not decode) is a user's mistake, exit 2; anything else that stopped it is 1.
    /// </summary>
    public static int ExitCode(string command, LiveStats stats, bool interrupted)
    {
        if (stats.SourceLost) { Console.Error.WriteLine($"{command}: {stats.Error}"); return Cli.SourceLostCode; }
        if (stats.Error is not null && !interrupted)
        {
            Console.Error.WriteLine($"error: {stats.Error}");
            return stats.UserMistake ? Cli.UserErrorCode : 1;
        }
        return interrupted ? 130 : 0;
    }

    /// <summary>A window, or null with the reason there is none (no DISPLAY, GLFW failed).</summary>
    public static IGlContext? TryOpenWindow(int width, int height, string title, out string? why)
    {
        try
        {
            why = null;
            return new GlfwWindowContext(width, height, title);
        }
        catch (UserError e) { why = e.Message; return null; }
    }

    /// <summary>
    /// Runs the frame loop with live pacing over <paramref name="session"/> until the source ends,
    /// Q/Esc, the duration or Ctrl+C. Takes ownership of <paramref name="window"/>; the session stays the caller's.
    /// </summary>
    public static LiveStats Run(IGlContext? window, LiveAppOptions o, ICaptionSession session, FrameLoopOptions loopOptions, CancellationToken ct)
    {
        var profiler = new Profiler(window: o.ProfileWindow);
        var source = FrameSources.Open(o.Source, AppSources.Options(o.Realtime, o.Loop) with { Logger = o.Logger, GiveUpAfter = o.GiveUpAfter });
        using var loop = new FrameLoop(source, session, profiler, loopOptions with { Pacing = Pacing.Live, CaptionsOnScreen = true }, o.Logger);
        var context = window ?? GlContextFactory.Create(false, o.Width, o.Height, out _);
        using var presenter = OverlayPresenterFor(context);
        presenter.ShowHud = o.ShowHud;
        var ui = new InputState(loop, presenter, o.ScreenshotDir);
        context.Key += ui.OnKey;
        context.Char += ui.OnChar;

        var budgetMs = 1000.0 / o.DisplayFps;
        var feed = new HudFeed(profiler, budgetMs);
        // From the start, the warm-up included (the HUD's fps needs it); the record is what follows the warm-up (the *AtMeasure indices).
        var frameTimes = new List<double>(4096);
        var rss = new List<(double, double)>();
        long rendered = 0, lastCompleted = 0;
        int framesAtMeasure = 0, latenciesAtMeasure = 0, firstWordsAtMeasure = 0;
        Frame? current = null;
        string? error = null;
        var clock = Stopwatch.StartNew();
        double measureFrom = -1, nextRss = 0, lastTick = 0, nextTick = 0;
        long capturedAtMeasure = 0, captionsAtMeasure = 0, wordsAtMeasure = 0, droppedAtMeasure = 0, skippedAtMeasure = 0;
        IReadOnlyDictionary<string, long> levelsAtMeasure = new Dictionary<string, long>();
        var latencies = new List<double>();
        var firstWords = new List<double>();
        long firstWordOf = -1; // the capture time of the caption whose first word was last seen
        int shown = 0; // captions on screen so far
        (double, double)? firstCaption = null;
        double rssStart = 0;

        loop.Start();
        try
        {
            while (!ct.IsCancellationRequested && !context.ShouldClose)
            {
                var now = clock.Elapsed.TotalSeconds;
                if (o.Duration is { } d && now >= d.TotalSeconds) break;
                if (measureFrom < 0 && now >= o.WarmupSeconds && shown >= o.WarmupCaptions)
                {
                    measureFrom = now;
                    if (o.WarmupSeconds > 0 || o.WarmupCaptions > 0) profiler.Restart();
                    rssStart = RssMb();
                    captionsAtMeasure = loop.Captions;
                    (framesAtMeasure, latenciesAtMeasure, firstWordsAtMeasure) = (frameTimes.Count, latencies.Count, firstWords.Count);
                    wordsAtMeasure = profiler.Snapshot().Counter(CaptionStages.CaptionWords)?.Total ?? 0;
                    capturedAtMeasure = loop.FramesCaptured;
                    droppedAtMeasure = loop.DroppedForInference;
                    skippedAtMeasure = loop.Driver.Stats.BudgetSkipped;
                    levelsAtMeasure = loop.Driver.Stats.Levels;
                }
                if (now >= nextRss) { rss.Add((now, RssMb())); nextRss = now + 1; }

                context.PollEvents();
                if (loop.TryTakeDisplayFrame(out var fresh)) { current?.Dispose(); current = fresh; }
                var view = loop.Board.View;
                // The first render that shows a word of a new caption (streaming in, or already whole
                // when it finished between two renders); answers to questions are not captions.
                if (view.Question is null && view.CapturedAt != firstWordOf && (view.Streaming || view.Completed > lastCompleted))
                {
                    firstWordOf = view.CapturedAt;
                    var ms = profiler.RecordLatency(view.CapturedAt, Profiler.GlassToFirstWord);
                    firstWords.Add(ms);
                }
                if (view.Completed > lastCompleted)
                {
                    lastCompleted = view.Completed;
                    // Glass-to-caption: the frame left its source; now its finished caption is on screen.
                    var ms = profiler.RecordLatency(view.CapturedAt);
                    latencies.Add(ms);
                    if (shown++ == 0) firstCaption = (now, ms);
                    if (o.PrintCaptions) PrintCaption(view, ms);
                }
                var fps = RecentFps(frameTimes);
                var hud = presenter.ShowHud ? feed.Stats(fps, loop, TimeSpan.FromMilliseconds(250)) : null;
                using (profiler.Time(Profiler.Render))
                {
                    presenter.Render(current?.Image, view, hud, ui.Status(loop));
                    ui.AfterRender();
                    if (context.IsWindow) context.SwapBuffers(); else context.Gl.Finish();
                }
                rendered++;
                var after = clock.Elapsed.TotalSeconds;
                if (rendered > 1)
                {
                    var frameMs = (after - lastTick) * 1000;
                    feed.AddFrameTime(frameMs);
                    frameTimes.Add(frameMs);
                }
                lastTick = after;

                if (loop.Ended && loop.InferenceStopped) break;          // a file that ended, fully shown and captioned
                if (loop.InferenceError is { } ie) { error = $"inference failed: {ie.Message}"; break; }

                // Display pacing: sleep to the next tick; when late, start again from now (no catch-up burst).
                nextTick += 1.0 / o.DisplayFps;
                var wait = nextTick - clock.Elapsed.TotalSeconds;
                if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds(wait));
                else nextTick = clock.Elapsed.TotalSeconds;
            }
        }
        finally
        {
            if (o.SnapshotPath is { } snapshotPath && !ct.IsCancellationRequested)
            {
                // Drawn again without a swap, so a window's back buffer still holds it.
                presenter.RefreshHudNow();
                presenter.Render(current?.Image, loop.Board.View, presenter.ShowHud ? feed.Stats(RecentFps(frameTimes), loop, TimeSpan.Zero) : null, ui.Status(loop));
                presenter.Renderer.SavePng(snapshotPath);
            }
            context.Key -= ui.OnKey;
            context.Char -= ui.OnChar;
            loop.Stop();
            current?.Dispose();
        }
        if (loop.CaptureError is { } ce && error is null) error = ce.Message;
        var lost = error is null && source is IReconnectingSource { LostReason: { } reason } ? reason : null;

        var end = clock.Elapsed.TotalSeconds;
        // A run that ended before its warm-up did: its record is the whole run, the cold start included
        // (the profiler never restarted), rather than a record of nothing.
        bool warmupUnfinished = measureFrom < 0 && (o.WarmupSeconds > 0 || o.WarmupCaptions > 0);
        if (measureFrom < 0)
        {
            measureFrom = 0;
            rssStart = rss.Count > 0 ? rss[0].Item2 : RssMb();
        }
        // The record: what followed the warm-up (all of it for a run that ended during the warm-up).
        (frameTimes, latencies, firstWords) = (frameTimes[framesAtMeasure..], latencies[latenciesAtMeasure..], firstWords[firstWordsAtMeasure..]);
        long measuredFrames = frameTimes.Count;
        var measured = TimeSpan.FromSeconds(Math.Max(1e-6, end - measureFrom));
        var snap = profiler.Snapshot();
        var sorted = frameTimes.Order().ToArray();
        var lat = latencies.Order().ToArray();
        var rssEnd = RssMb();
        var words = (snap.Counter(CaptionStages.CaptionWords)?.Total ?? 0) - wordsAtMeasure;
        // Everything from the warm-up on is left out: dropped frames, latencies, frame times, RSS at the start.
        var stats = new LiveStats(source.Description, context.Description, measuredFrames, measured,
            measuredFrames / measured.TotalSeconds, Pct(sorted, 0.5), Pct(sorted, 0.99), sorted.Length > 0 ? sorted[^1] : 0,
            loop.Captions - captionsAtMeasure, (loop.Captions - captionsAtMeasure) / measured.TotalSeconds, words / measured.TotalSeconds,
            Pct(lat, 0.5), Pct(lat, 0.95), Pct(lat, 0.99), loop.DroppedForInference - droppedAtMeasure, loop.DroppedForDisplay, loop.FramesCaptured,
            rssStart, rssEnd, rss.Select(r => r.Item2).DefaultIfEmpty(rssEnd).Max(), rss, frameTimes, snap, profiler, error ?? lost,
            latencies, loop.Driver.Stats.BudgetSkipped - skippedAtMeasure, loop.Driver.Stats, SourceLost: lost is not null,
            UserMistake: error is not null && loop.InferenceError is null && loop.CaptureError is UserError)
        {
            FirstWordLatencies = firstWords,
            FirstCaption = firstCaption,
            WarmupCaptions = warmupUnfinished ? 0 : o.WarmupCaptions,
            WarmupUnfinished = warmupUnfinished ? (shown, o.WarmupCaptions) : null,
            LevelsMeasured = loop.Driver.Stats.Levels.Select(kv => (kv.Key, N: kv.Value - levelsAtMeasure.GetValueOrDefault(kv.Key)))
                .Where(l => l.N > 0).ToDictionary(l => l.Key, l => l.N),
        };
        return stats;
    }

    static OverlayPresenter OverlayPresenterFor(IGlContext context) => OverlayPresenter.For(context);

    /// <summary>The HUD's fps: frames over the time the last (up to) 120 frame times cover.</summary>
    static double RecentFps(List<double> frameTimes)
    {
        double s = 0;
        int n = 0;
        for (int i = Math.Max(0, frameTimes.Count - 120); i < frameTimes.Count; i++, n++) s += frameTimes[i];
        return s > 0 ? n * 1000 / s : 0;
    }

    /// <summary>Nearest-rank percentile of sorted samples.</summary>
    internal static double Pct(double[] sorted, double p) => Percentile.OfSorted(sorted, p);

    public static double RssMb()
    {
        using var p = Process.GetCurrentProcess();
        return p.WorkingSet64 / (1024.0 * 1024.0);
    }

    static void PrintCaption(CaptionView v, double latencyMs)
    {
        var t = v.FrameTime;
        Console.Out.WriteLine($"[{(int)t.TotalMinutes:00}:{t.Seconds:00}.{t.Milliseconds / 100}] {v.Text}  ({latencyMs:0} ms)");
    }

    public static void PrintSummary(LiveStats s)
    {
        AnsiConsole.MarkupLine($"[grey]{Markup.Escape(s.Source)} on {Markup.Escape(s.Context)}[/]");
        AnsiConsole.MarkupLine($"render {s.RenderFps:0.0} fps (frame p50 {s.FrameMsP50:0.0} ms, p99 {s.FrameMsP99:0.0} ms), " +
            $"{s.Captions} captions ({s.CaptionHz:0.00}/s), glass-to-caption p50 {s.LatencyP50:0} ms p95 {s.LatencyP95:0} ms, " +
            $"dropped {s.DroppedForInference} frames for inference, {s.DroppedForDisplay} for display");
        PrintColdStart(s);
        if (s.Stream.ReadsByLevelLine is { } levels) AnsiConsole.MarkupLine(Markup.Escape(levels));
        if (s.Error is not null) AnsiConsole.MarkupLine($"[red]{Markup.Escape(s.Error)}[/]");
    }

    /// <summary>The cold start, when the run kept it out of its record: when the first caption was on screen and its glass-to-caption.</summary>
    public static void PrintColdStart(LiveStats s)
    {
        if (s.WarmupUnfinished is { } w)
            AnsiConsole.MarkupLine($"the run ended during its warm-up{(w.Asked > 0 ? $" ({w.Shown} of {w.Asked} captions)" : "")}: the figures above count from the start, the cold start included");
        else if (s.FirstCaption is { } first && s.WarmupCaptions > 0)
            AnsiConsole.MarkupLine($"cold start: the first caption was on screen {first.AtSeconds:0.00} s in, {first.LatencyMs:0} ms after its frame; " +
                $"the figures above count from caption {s.WarmupCaptions + 1} on");
    }

    /// <summary>Keyboard state: commands, the question being typed, and short status messages.</summary>
    sealed class InputState(FrameLoop loop, OverlayPresenter presenter, string screenshotDir)
    {
        readonly StringBuilder typed = new();
        bool typing, screenshotWanted;
        string? message;
        long messageUntil;

        public void OnKey(KeyEvent e)
        {
            if (e.Action == KeyAction.Release) return;
            switch (e.Key)
            {
                case Keys.Enter:
                    if (typing && typed.Length > 0) { loop.Ask(typed.ToString()); Flash($"asked: {typed}"); typed.Clear(); typing = false; }
                    else typing = !typing || typed.Length > 0;
                    break;
                case Keys.Backspace:
                    if (typed.Length > 0) typed.Length--;
                    break;
                case Keys.Escape:
                    if (typing) { typing = false; typed.Clear(); }
                    else presenter.Context.RequestClose();
                    break;
            }
        }

        public void OnChar(int codepoint)
        {
            var c = char.ConvertFromUtf32(codepoint);
            if (!typing)
            {
                switch (c.ToLowerInvariant())
                {
                    case "h": presenter.ShowHud = !presenter.ShowHud; return;
                    case "p":
                        loop.Driver.PruningEnabled = !loop.Driver.PruningEnabled;
                        Flash($"pruning {(loop.Driver.PruningEnabled ? "on" : "off")}");
                        return;
                    case "s": screenshotWanted = true; return;
                    case "q": presenter.Context.RequestClose(); return;
                    case " ": return;
                }
                typing = true;   // any other key starts a question
            }
            typed.Append(c);
        }

        public void AfterRender()
        {
            if (!screenshotWanted) return;
            screenshotWanted = false;
            var path = Path.Combine(screenshotDir, $"ra-screenshot-{DateTime.Now:yyyyMMdd-HHmmss-fff}.png");
            try { presenter.Renderer.SavePng(path); Flash($"saved {path}"); }
            catch (IOException e) { Flash($"screenshot failed: {e.Message}"); }
        }

        void Flash(string text)
        {
            message = text;
            messageUntil = Stopwatch.GetTimestamp() + 2 * Stopwatch.Frequency;
        }

        public string? Status(FrameLoop l)
        {
            if (typing) return $"ask: {typed}_";
            if (message is not null && Stopwatch.GetTimestamp() < messageUntil) return message;
            var s = l.SourceStatus;
            return QuietStatuses.Contains(s) ? null : s;
        }
    }
}
