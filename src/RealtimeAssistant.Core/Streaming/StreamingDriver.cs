using System.Diagnostics;
using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

/// <summary>A caption segment or an answer, and what it cost: the outputs' and the HUD's record of one write.</summary>
/// <param name="FrameIndex">The source frame the write came with (the caption is shown from it on).</param>
/// <param name="ReadsSince">Frames read since the previous caption (this write's frame included when it came with it).</param>
/// <param name="ReadMs">The read that came with the write (0 when it came alone).</param>
public sealed record StreamSegment(TimeSpan At, long FrameIndex, string? Question, string Text, int Tokens, double Ms,
    string Mode, int ReadsSince, string? Level, int? Budget, double ReadMs, double WriteMs, UpdateReport Report);

/// <summary>Counts over a stream: how much work the gate and the governor saved, and where the time went.</summary>
public sealed record StreamStats
{
    public long Frames { get; init; }
    public long Read { get; init; }
    /// <summary>Frames the scene-change gate let pass unread (the scene had not changed).</summary>
    public long Skipped { get; init; }
    /// <summary>Frames the governor skipped because even its most aggressive level could not fit the budget.</summary>
    public long BudgetSkipped { get; init; }
    public long OverBudget { get; init; }
    /// <summary>The frame budget (null: none), the governor's most aggressive level, and what the governor expects that level's read to take (null: never read).</summary>
    public double? BudgetMs { get; init; }
    public string? CheapestLevel { get; init; }
    public double? CheapestReadMs { get; init; }
    /// <summary>The pixel bound of the governor's most aggressive level (null: the model's own).</summary>
    public long? CheapestMaxPixels { get; init; }
    public long Writes { get; init; }
    public long Answers { get; init; }
    /// <summary>Reads done in one pass with a write (their time is in <see cref="WriteMs"/>, not <see cref="ReadMs"/>).</summary>
    public long ReadWithWrite { get; init; }
    public double ReadMs { get; init; }
    public double WriteMs { get; init; }
    /// <summary>Frames read at each pruning level, by the level's name ("unpruned": none): where the governor held the reads.</summary>
    public IReadOnlyDictionary<string, long> Levels { get; init; } = new Dictionary<string, long>();
    /// <summary>Under a frame budget, the line the commands end with: where the governor held the reads (null: no budget, or nothing read).</summary>
    public string? ReadsByLevelLine => BudgetMs is not null && ReadsByLevel is { } levels ? $"frames read at: {levels}" : null;
    /// <summary>The levels frames were read at, most read first ("exit 6 ×9 · exit 7 ×1"); null: none read.</summary>
    public string? ReadsByLevel => Levels.Count == 0 ? null : string.Join(" · ", Levels.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} ×{kv.Value}"));
    /// <summary>Caption tokens drafted from the last caption, and those the model's pass confirmed (<see cref="GenerationOptions.DraftTokens"/>).</summary>
    public long Drafted { get; init; }
    public long DraftsTaken { get; init; }
}

/// <summary>How a driver decides: when to write, which frames are worth reading, and the frame budget.</summary>
public sealed record DriverOptions
{
    public WritePolicy Policy { get; init; } = new(WriteTrigger.WhenFinished);
    /// <summary>The scene-change gate's threshold (<see cref="SceneChangeGate"/>; 0 reads every frame; the change policy needs more than 0).</summary>
    public double GateThreshold { get; init; } = 1.0;
    /// <summary>Milliseconds a read may take (null: no governor; pruning stays as the session has it).</summary>
    public double? FrameBudgetMs { get; init; }
    /// <summary>The schedule the governor's ladder is built from (the model's pruning.json, or the defaults).</summary>
    public PruningConfig? Schedule { get; init; }

    /// <summary>Settings that cannot work together, as a user's error (before anything runs or is written).</summary>
    public void Validate()
    {
        if (Policy.Trigger == WriteTrigger.SceneChange && GateThreshold <= 0)
            throw new UserError("the change write policy needs a scene-change threshold above 0");
        if (FrameBudgetMs is { } b && !(b > 0 && b < 1e7)) throw new UserError($"--frame-budget-ms must be a positive number, got {b}");
    }
}

/// <summary>
/// Raw frames in, caption segments out, for one session: the scene-change gate decides whether a
/// frame is read at all (an unchanged scene costs a resize, no vision encoder), the governor
/// chooses how hard to prune the read (or skips the frame) to hold the frame budget, the session
/// reads it (vision encoder once + one append), and the <see cref="WritePolicy"/> decides when to
/// write. Questions asked with <see cref="Ask"/> are answered at the next frame, and the stream goes on.
/// Every frame loop pacing (live, file, headless) runs its frames through this.
/// </summary>
public sealed class StreamingDriver : IDisposable
{
    readonly ICaptionSession _session;
    readonly SceneChangeGate _gate;
    readonly DriverOptions _o;
    readonly Queue<string> _questions = new();
    FrameGovernor? _governor;
    int _readsSinceWrite;   // what the write policy counts (every:N starts one short of N: the first read writes)
    int _readSinceCaption;  // frames actually read since the last caption, for the record
    StreamStats _stats = new();

    public StreamingDriver(ICaptionSession session, DriverOptions options)
    {
        options.Validate();
        _session = session;
        _o = options;
        _gate = new SceneChangeGate(options.GateThreshold);
        // every:N writes at the first frame read (a caption from the start), then after every N reads.
        if (options.Policy.Trigger == WriteTrigger.EveryNFrames) _readsSinceWrite = options.Policy.Frames - 1;
    }

    public StreamStats Stats => _stats with
    {
        BudgetSkipped = _governor?.Skipped ?? 0, OverBudget = _governor?.OverBudget ?? 0,
        BudgetMs = _o.FrameBudgetMs, CheapestLevel = _governor?.Levels[^1].Name, CheapestReadMs = _governor?.Levels[^1].BaseEstimate,
        CheapestMaxPixels = _governor?.Levels[^1].MaxPixels,
        Drafted = _session.Drafts?.Drafted ?? 0, DraftsTaken = _session.Drafts?.Accepted ?? 0,
    };
    public ICaptionSession Session => _session;
    /// <summary>The governor, once the first read has told it a frame's size (null without a budget).</summary>
    public FrameGovernor? Governor => _governor;
    public int PendingQuestions => _questions.Count;

    /// <summary>
    /// Pruning (and with it the governor) on or off from the next read: the live app's P key.
    /// Off, reads run unpruned; on again, the governor (or the fixed pruning) resumes where it was.
    /// </summary>
    public bool PruningEnabled
    {
        get => _pruningEnabled;
        set
        {
            if (value == _pruningEnabled) return;
            if (!value) { (_pausedPruning, _pausedPixels) = (_session.Pruning, _session.MaxPixels); (_session.Pruning, _session.MaxPixels) = (null, null); }
            else (_session.Pruning, _session.MaxPixels) = _governor is { } g ? (g.CurrentLevel.Pruning, g.CurrentLevel.MaxPixels) : (_pausedPruning, _pausedPixels);
            _pruningEnabled = value;
        }
    }
    bool _pruningEnabled = true;
    PruningConfig? _pausedPruning;
    long? _pausedPixels;

    public void Ask(string question)
    {
        if (string.IsNullOrWhiteSpace(question)) throw new UserError("empty question");
        _questions.Enqueue(question.Trim());
    }

    /// <summary>
    /// One frame of the stream; returns what was written because of it (often nothing).
    /// <paramref name="onStart"/> is called when a write begins (its question, or null), <paramref name="onDelta"/> with each text delta.
    /// <paramref name="periods"/>: frame-budget periods since the previous frame given (live pacing: the clock's time since then over the budget, which pays back every overrun).
    /// </summary>
    public List<StreamSegment> Push(Mat frame, long index, TimeSpan at, Action<string?>? onStart = null, Action<string>? onDelta = null, double periods = 1)
    {
        var written = new List<StreamSegment>();
        _stats = _stats with { Frames = _stats.Frames + 1 };
        bool fused = false;
        UpdateReport? read = null;
        if (!_gate.Accept(frame))
        {
            _stats = _stats with { Skipped = _stats.Skipped + 1 };
            // An unchanged frame shows what the last read saw. Once a frame was read since the last
            // caption it counts toward every:N like a read, so a scene that changed and then
            // settled is captioned as it settles, not only when it next moves; with nothing read
            // since, there is nothing new to say.
            if (_readSinceCaption > 0 && _o.Policy.Trigger == WriteTrigger.EveryNFrames) _readsSinceWrite++;
        }
        else if (Govern(periods) is { } level)
        {
            _readsSinceWrite++;
            _readSinceCaption++;
            // When this frame triggers the policy's write and no question waits, the frame and the
            // instruction go through the decoder in one pass (the session fuses them where it can).
            if (_questions.Count == 0 && _o.Policy.ShouldWrite(_readsSinceWrite))
            {
                onStart?.Invoke(null);
                written.Add(Segment(at, index, null, _session.ReadAndWrite(frame), onDelta, Stopwatch.StartNew()));
                read = _session.Last;
                _stats = _stats with { Read = _stats.Read + 1, ReadWithWrite = _stats.ReadWithWrite + 1 };
                fused = true;
            }
            else
            {
                _session.Read(frame);
                read = _session.Last;
                _stats = _stats with { Read = _stats.Read + 1, ReadMs = _stats.ReadMs + read.ReadMs };
            }
            Observe(level, read, frame);
            // A new dictionary each read: a Stats snapshot taken earlier keeps its counts.
            var levels = new Dictionary<string, long>(_stats.Levels);
            var name = read.Level ?? "unpruned";
            levels[name] = levels.GetValueOrDefault(name) + 1;
            _stats = _stats with { Levels = levels };
        }
        if (_session.FramesInWindow == 0) return written; // nothing to talk about yet
        if (_questions.Count > 0)
        {
            while (_questions.Count > 0)
            {
                var question = _questions.Dequeue();
                onStart?.Invoke(question);
                written.Add(Segment(at, index, question, _session.Write(question), onDelta, Stopwatch.StartNew()));
                _stats = _stats with { Answers = _stats.Answers + 1 };
            }
            return written; // the answer has this frame; a caption due now follows at the next frame read
        }
        if (fused || _o.Policy.ShouldWrite(_readsSinceWrite))
        {
            if (!fused)
            {
                onStart?.Invoke(null);
                written.Add(Segment(at, index, null, _session.Write(), onDelta, Stopwatch.StartNew()));
            }
            _readsSinceWrite = 0;
            _stats = _stats with { Writes = _stats.Writes + 1 };
        }
        return written;
    }

    /// <summary>The governor's level for this frame's read (−1: no governor), or null to skip the frame.</summary>
    int? Govern(double periods)
    {
        if (_o.FrameBudgetMs is null || !_pruningEnabled) return -1;
        if (_governor is null) return 0; // the first read runs the schedule and sizes the ladder
        var choice = _governor.Choose(periods);
        if (choice.Skip) return null;
        _session.Pruning = choice.Rung!.Pruning;
        _session.MaxPixels = choice.Rung.MaxPixels;
        return choice.Level;
    }

    void Observe(int level, UpdateReport read, Mat frame)
    {
        if (_o.FrameBudgetMs is not { } budget || level < 0) return;
        if (_governor is null)
        {
            var engine = _session.Engine ?? throw new InvalidOperationException("the frame-budget governor prunes a model's layers; this session has no model (give it no budget)");
            var ladder = FrameGovernor.LadderFor(engine, _o.Schedule ?? new PruningConfig(), read.VisualTokens, frame.Rows, frame.Cols);
            _governor = new FrameGovernor(budget, ladder);
            (_session.Pruning, _session.MaxPixels) = (ladder[0].Pruning, ladder[0].MaxPixels);
            _governor.ObserveCold(read.ReadMs);
            return;
        }
        _governor.Observe(level, read.ReadMs);
    }

    /// <summary>Before the first read under a budget: the session starts at the schedule, the governor's first level.</summary>
    public void Start()
    {
        if (_o.FrameBudgetMs is not null) _session.Pruning = (_o.Schedule ?? new PruningConfig()) with { Method = "visipruner" };
    }

    StreamSegment Segment(TimeSpan at, long index, string? question, IEnumerable<TokenEvent> events, Action<string>? onDelta, Stopwatch sw)
    {
        var text = new StringBuilder();
        int tokens = 0;
        foreach (var ev in events)
        {
            if (ev.Id >= 0) tokens++;
            text.Append(ev.Text);
            if (ev.Text.Length > 0) onDelta?.Invoke(ev.Text);
        }
        var ms = sw.Elapsed.TotalMilliseconds;
        var r = _session.Last;
        _stats = _stats with { WriteMs = _stats.WriteMs + ms };
        int reads = question is null ? _readSinceCaption : 0;
        if (question is null) _readSinceCaption = 0;
        return new StreamSegment(at, index, question, text.ToString().Trim(), tokens, ms, _session.Mode, reads,
            r.Level, _session.Pruning?.Budget, r.Kind == "write" ? 0 : r.ReadMs, r.WriteMs, r);
    }

    public void Dispose() => _gate.Dispose();
}
