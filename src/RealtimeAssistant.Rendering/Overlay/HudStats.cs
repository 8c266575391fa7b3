namespace RealtimeAssistant.Rendering;

/// <summary>
/// The numbers the HUD shows, as plain data (the renderer knows nothing of the profiler).
/// Times are milliseconds.
/// </summary>
public sealed record HudStats
{
    /// <summary>The pipeline's stages in the order the HUD lists them; other keys follow, in their own order.</summary>
    public static readonly IReadOnlyList<string> StageOrder = ["capture", "preprocess", "vision", "prefill", "decode", "render"];

    /// <summary>Per stage: the latest time and the median.</summary>
    public IReadOnlyDictionary<string, (double LastMs, double P50Ms)> Stages { get; init; } =
        new Dictionary<string, (double, double)>();

    public double Fps { get; init; }

    /// <summary>Caption updates per second (how often new words arrive).</summary>
    public double CaptionHz { get; init; }
    public double LatencyP50Ms { get; init; }
    public double LatencyP95Ms { get; init; }
    /// <summary>From a frame's capture to its caption's first word on screen (0: not measured).</summary>
    public double FirstWordP50Ms { get; init; }
    public double FirstWordP95Ms { get; init; }
    public long DroppedFrames { get; init; }

    /// <summary>Time one frame may take (e.g. 33.3 at 30 fps): drawn as a line on the bars and graph.</summary>
    public double BudgetMs { get; init; } = 1000.0 / 30;

    /// <summary>The session's mode (gpe, reencode), if any.</summary>
    public string? Mode { get; init; }
    /// <summary>The model's frame budget: what a frame read may take (null: no governor).</summary>
    public double? ReadBudgetMs { get; init; }
    /// <summary>The last frame read's time.</summary>
    public double? ReadMs { get; init; }
    /// <summary>The pruning level the governor chose (e.g. "k=16 exit 3"); null: unpruned.</summary>
    public string? Level { get; init; }
    /// <summary>VisiPruner's token budget k per frame at that level.</summary>
    public int? Budget { get; init; }
    /// <summary>Frames the governor skipped because no level could fit the budget.</summary>
    public long SkippedFrames { get; init; }
    /// <summary>
    /// Whether the loop's pacing skips frames when no level fits: file and headless pacing do; live
    /// pacing never does (the source's newer frames replace the one not read, and count as dropped).
    /// </summary>
    public bool SkipsFrames { get; init; }
    /// <summary>Frames read under the frame budget, and how many of those reads ran over it.</summary>
    public long Reads { get; init; }
    public long ReadsOverBudget { get; init; }

    /// <summary>Recent whole-frame times, oldest first; the graph shows the last 120.</summary>
    public IReadOnlyList<double> FrameTimesMs { get; init; } = [];

    /// <summary>
    /// A frame that came late: more than a quarter past its display interval. Frames paced at the
    /// interval measure a little over or under it tick to tick; a frame a refresh late measures twice it.
    /// </summary>
    public static bool IsLateFrame(double frameMs, double budgetMs) => frameMs > 1.25 * budgetMs;

    /// <summary>
    /// What a stage's time is held to, for its bar's colour: the render to one display frame; a
    /// model stage (on the inference thread) to the frame budget a read may take, where there is
    /// one; capture to nothing, since it is the wait for the source's next frame, not a cost.
    /// </summary>
    public double? StageBudgetMs(string stage) => stage switch
    {
        "render" => BudgetMs,
        "preprocess" or "vision" or "prefill" or "decode" => ReadBudgetMs,
        "capture" => null,
        _ => BudgetMs,
    };
}
