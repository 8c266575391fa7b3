using System.CommandLine;
using System.Globalization;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>A command's real-time path, resolved: the session mode and options, the loop's options, and the line that says so.</summary>
public sealed record Realtime(string Mode, StreamingOptions Streaming, FrameLoopOptions Loop, string Header);

/// <summary>
/// The flags every command that streams through the session shares (live, annotate, profile,
/// demo, stream): the session mode, the frame budget, the window and band, the stride, the write
/// policy and the gate, questions, and the pruning flags. By default the GPE session runs with
/// the governor holding each read to a budget of one stride of the source's frames, pruning
/// within the model's own schedule.
/// </summary>
public sealed class RealtimeFlags(string defaultPolicy, bool questions = true)
{
    public readonly Option<string> Mode = new("--mode") { Description = "gpe (stream through group position encoding, the default) or reencode (re-encode the window at each caption: the baseline)", DefaultValueFactory = _ => "gpe" };
    public readonly Option<string?> Budget = new("--frame-budget-ms")
    {
        Description = "milliseconds a frame read may take; the governor reads a Qwen2-VL frame at fewer pixels, prunes harder (VisiPruner's k, earlier exits), and where even that cannot fit, a video file or stream skips frames (live keeps reading the newest frame, at the hardest level). Default: one stride of the source's frames (1000 × stride / fps); 0 or 'off': no governor",
    };
    public readonly Option<int> Stride = new("--stride") { Description = "the model reads every Nth source frame (live: at most one per N); default 5, or fewer for a source under 5 fps, so that the model reads at least one frame a second", DefaultValueFactory = _ => DefaultStride };

    public const int DefaultStride = 5;

    /// <summary>
    /// --stride as given, or by default 5, but never more frames than a second of the source holds:
    /// a 1 fps time-lapse is read frame by frame, not once every 5 s of its video.
    /// </summary>
    public int StrideFor(ParseResult pr, double sourceFps) =>
        Cli.IsExplicit(pr, Stride) || !(sourceFps is > 0 and < 1000) ? pr.GetValue(Stride) : Math.Clamp((int)Math.Floor(sourceFps), 1, DefaultStride);

    public readonly Option<int> Window = new("--window") { Description = "frames kept in the model's memory (W)", DefaultValueFactory = _ => 2 };
    public readonly Option<string?> FrameBand = Cli.FrameBandOption();
    public readonly Option<int> History = new("--caption-history") { Description = "caption tokens kept across writes (M; models trained with GPE)", DefaultValueFactory = _ => 0 };
    public readonly Option<string> Policy = new("--policy") { Description = "when to write a caption: every:N (frames read), change (scene-change gate) or finished (back to back)", DefaultValueFactory = _ => defaultPolicy };
    public readonly Option<double> Gate = new("--gate") { Description = "scene-change threshold: the mean colour change (levels of 0–255) on 16x16 thumbnails a frame needs to be read, or 32× it in any one cell, as when a small object comes or goes; a change of the whole frame's light (flicker, auto-exposure) is discounted first and counts past 16× it (0 = read every frame)", DefaultValueFactory = _ => 1.0 };
    public readonly Option<int> MaxTokens = new("--max-new-tokens") { Description = "longest caption or answer, in tokens", DefaultValueFactory = _ => 48 };
    /// <summary>Drafts a verify pass checks by default: chosen on validation clips (docs/BENCHMARKS.md, "Captions drafted from the last caption"); with the token before them, one fused pass of <see cref="Model.Kernels.Gemv.MaxRows"/> rows.</summary>
    public const int DefaultDraftTokens = 7;
    public readonly Option<int> Draft = new("--draft-tokens")
    {
        Description = "the most caption tokens drafted from the last caption and checked in one decoder pass (prompt-lookup decoding: the same captions in fewer passes); 0: one token a pass",
        DefaultValueFactory = _ => DefaultDraftTokens,
    };
    public readonly Option<string> WarmUp = new("--warm-up")
    {
        Description = "run the model once on a synthetic frame before the first frame, so the first read pays no one-time costs: auto (on a GPU, and on the CPU for models of at most 20 M parameters, where it costs less than it saves), on or off",
        DefaultValueFactory = _ => "auto",
    };
    public readonly Option<string[]> Ask = new("--ask") { Description = "ask a question at a stream time: SECONDS:question (repeatable)" };
    public readonly PruningOptions Prune = new();

    public Command AddTo(Command c)
    {
        foreach (var o in new Option[] { Mode, Budget, Stride, Window, FrameBand, History, Policy, Gate, MaxTokens, Draft, WarmUp }) c.Options.Add(o);
        if (questions) c.Options.Add(Ask);
        Prune.AddTo(c);
        return c;
    }

    /// <summary>Checks what needs no model (fail fast, before loading one).</summary>
    public void Check(ParseResult pr)
    {
        SessionModes.Parse(pr.GetValue(Mode));
        WritePolicy.Parse(pr.GetValue(Policy)!);
        WarmUpGiven(pr);
        BudgetMs(pr, 30);
        if (pr.GetValue(Stride) is < 1 or > 10_000) throw new UserError($"--stride must be 1..10000, got {pr.GetValue(Stride)}");
        if (pr.GetValue(Gate) is not (>= 0 and <= 255)) throw new UserError($"--gate is a mean colour change, 0..255 (0 reads every frame), got {pr.GetValue(Gate)}");
        if (pr.GetValue(MaxTokens) is < 1 or > 4096) throw new UserError($"--max-new-tokens must be 1..4096, got {pr.GetValue(MaxTokens)}");
        if (pr.GetValue(Draft) is < 0 or > GenerationOptions.MaxDraftTokens) throw new UserError($"--draft-tokens must be 0..{GenerationOptions.MaxDraftTokens}, got {pr.GetValue(Draft)}");
        if (questions) Questions(pr);
    }

    /// <summary>--frame-budget-ms as given: null for the default, 0 for off.</summary>
    static double? ParseBudget(string? text) => text switch
    {
        null => null,
        "off" => 0,
        _ when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0 && v < 1e7 => v,
        _ => throw new UserError($"--frame-budget-ms takes a number of milliseconds ≥ 0 (0 or 'off' for no budget), got '{text}'"),
    };

    double? BudgetMs(ParseResult pr, double sourceFps) => ParseBudget(pr.GetValue(Budget)) switch
    {
        null => FrameLoopOptions.DefaultBudgetMs(sourceFps, StrideFor(pr, sourceFps)),
        0 => null,
        var v => v,
    };

    /// <summary>--warm-up as given: null for auto.</summary>
    bool? WarmUpGiven(ParseResult pr) => pr.GetValue(WarmUp)?.Trim().ToLowerInvariant() switch
    {
        "auto" => null,
        "on" => true,
        "off" => false,
        var other => throw new UserError($"--warm-up takes auto, on or off, got '{other}'"),
    };

    public IReadOnlyList<(TimeSpan At, string Question)> Questions(ParseResult pr) =>
        questions ? (pr.GetValue(Ask) ?? []).Select(ParseQuestion).OrderBy(q => q.At).ToList() : [];

    public static (TimeSpan At, string Question) ParseQuestion(string text)
    {
        int colon = text.IndexOf(':');
        if (colon <= 0 || !double.TryParse(text[..colon], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            || !(seconds >= 0 && seconds <= MaxAskSeconds) || string.IsNullOrWhiteSpace(text[(colon + 1)..]))
            throw new UserError($"--ask takes SECONDS:question (0 ≤ SECONDS ≤ {MaxAskSeconds:0}), e.g. \"5:what colour is the star ?\"; got '{text}'");
        return (TimeSpan.FromSeconds(seconds), text[(colon + 1)..].Trim());
    }

    /// <summary>A year of stream time: later is a typo, not a question.</summary>
    public const double MaxAskSeconds = 365 * 86400;

    /// <summary>
    /// One stderr line when the budget was not held: the governor skipped a tenth or more of the
    /// frames it was given (file and headless pacing), or a tenth or more of the reads ran over it
    /// though no level is expected to fit (live pacing, which drops frames rather than skip them).
    /// It says what the cheapest read allowed takes on this machine, and what would change that.
    /// </summary>
    public static void ReportBudget(StreamStats s, bool cancelled, string command)
    {
        if (cancelled || s.BudgetMs is not { } budget) return;
        long due = s.Read + s.BudgetSkipped;
        var cheapest = s.CheapestLevel is { } level && s.CheapestReadMs is { } ms ? $": its cheapest read allowed ({level}) takes about {ms:N0} ms here" : "";
        long? least = s.CheapestMaxPixels;
        if (s.BudgetSkipped > 0 && s.BudgetSkipped * 10 >= due)
            Console.Error.WriteLine($"{command}: {s.BudgetSkipped} of {due} frames due a read were skipped to hold the {budget:0.###} ms frame budget{cheapest}; "
                + "a larger --frame-budget-ms or --stride skips fewer" + (least is null ? "" : $", and so does a --min-frame-pixels below {least}"));
        else if (s.OverBudget > 0 && s.OverBudget * 10 >= s.Read && s.CheapestReadMs > budget)
            Console.Error.WriteLine($"{command}: {s.OverBudget} of {s.Read} reads ran over the {budget:0.###} ms frame budget{cheapest}; "
                + "frames that arrived during a read were dropped; a --frame-budget-ms above that" + (least is null ? "" : $" (or a --min-frame-pixels below {least})") + " is one the reads can hold");
    }

    /// <summary>One stderr line per question the stream ended before reaching, so a late --ask is not lost without a word.</summary>
    public static void ReportUnasked(IReadOnlyList<(TimeSpan At, string Question)> unasked, bool cancelled, string command)
    {
        if (cancelled) return;
        foreach (var (at, q) in unasked)
            Console.Error.WriteLine($"{command}: --ask at {at.TotalSeconds:0.###} s was not asked: the stream ended before it (\"{q}\")");
    }

    /// <summary>
    /// The run's session and loop settings for <paramref name="engine"/> on a source of
    /// <paramref name="sourceFps"/>. Pruning: a pruning flag sets the schedule (the model's own fills
    /// what the flags leave unset); --prune-method none turns pruning and the governor off; without
    /// a budget the schedule runs as it is.
    /// </summary>
    public Realtime Resolve(ParseResult pr, Engine engine, double sourceFps, Pacing pacing, string? policyOverride = null)
    {
        var mode = SessionModes.Parse(pr.GetValue(Mode));
        int stride = StrideFor(pr, sourceFps), window = pr.GetValue(Window);
        var policy = WritePolicy.Parse(policyOverride ?? pr.GetValue(Policy)!);
        var requested = Prune.Given(pr) ? Prune.Read(pr, engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers)) : null;
        bool pruningOff = requested is { Method: "none" };
        if (requested is not null && !pruningOff) StreamingOptions.ValidatePruning(requested, engine.Text.NumHiddenLayers); // before anything is written
        var schedule = requested ?? engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers);
        // The governor prunes along VisiPruner's ladder; another method (FastV, random) runs as asked, without it.
        double? budget = pruningOff || schedule.Method is not ("visipruner") && requested is not null ? null : BudgetMs(pr, sourceFps);
        PruningConfig? fixedPruning = pruningOff ? null : budget is null ? requested : null;
        if (budget is not null) FrameGovernor.CheckSchedule(schedule, engine);
        var streaming = new StreamingOptions
        {
            WindowFrames = window, FrameBand = Cli.FrameBand(pr.GetValue(FrameBand), window), CaptionHistoryTokens = pr.GetValue(History),
            Generation = new GenerationOptions { MaxNewTokens = pr.GetValue(MaxTokens), DraftTokens = pr.GetValue(Draft) },
            Pruning = fixedPruning, // with a budget the driver sets the level per read
        };
        streaming.Validate(engine);
        var warmUp = WarmUpGiven(pr);
        var noWarmUp = warmUp switch { true => null, false => "--warm-up off", null => SessionModes.WhyNoWarmUp(engine) };
        var loop = new FrameLoopOptions
        {
            Pacing = pacing, Stride = stride, Questions = Questions(pr), WarmUp = noWarmUp is null,
            Driver = new DriverOptions { Policy = policy, GateThreshold = pr.GetValue(Gate), FrameBudgetMs = budget, Schedule = schedule },
        };
        loop.Validate();
        var fps = sourceFps is > 0 and < 1000 ? sourceFps : 30;
        var pruneText = pruningOff ? "pruning off"
            : budget is { } b ? $"frame budget {b:0.#} ms{(pr.GetValue(Budget) is null ? $" (one stride: 1000 × {stride} / {fps:0.##} fps)" : "")}, governor pruning within {(requested is null ? engine.Layout.Schedule is null ? "the reference schedule" : "pruning.json" : "the given schedule")}{(engine.Model is IPixelBoundedVision pv && PixelRungs.Floor(pv, schedule.MinFramePixels) is var least && least < pv.MaxPixels ? $", frames read at down to {least:N0} pixels" : "")}"
            : fixedPruning is { } fp ? $"pruning {SessionBase.LevelName(fp)}, no frame budget" : "no pruning, no frame budget";
        var draftText = pr.GetValue(Draft) is > 0 and var k ? $"captions drafted from the last, up to {k} tokens a pass" : "one caption token a pass";
        var header = $"{(mode == SessionModes.Gpe ? "GPE session" : "re-encoding (baseline)")} · window {window} · {(stride == 1 ? "every frame" : $"every {Ordinal(stride)} frame")} · policy {policy} · gate {pr.GetValue(Gate):0.##} · {pruneText} · {draftText}{(noWarmUp is null ? "" : $" · no warm-up ({noWarmUp})")}";
        return new Realtime(mode, streaming, loop, header);
    }

    static string Ordinal(int n) => n % 10 == 2 && n % 100 != 12 ? $"{n}nd" : n % 10 == 3 && n % 100 != 13 ? $"{n}rd" : n % 10 == 1 && n % 100 != 11 ? $"{n}st" : $"{n}th";
}
