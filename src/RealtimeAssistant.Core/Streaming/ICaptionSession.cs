using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

/// <summary>What one update (a READ, a WRITE, or both in one pass) did and where its time went.</summary>
public sealed record UpdateReport
{
    /// <summary>read, write or read+write.</summary>
    public string Kind { get; init; } = "read";
    public double PreprocessMs { get; init; }
    public double VisionMs { get; init; }
    /// <summary>The decoder pass over the new source tokens (the frame, the write's prompt, or both).</summary>
    public double DecoderMs { get; init; }
    /// <summary>Every decode step of the answer, in order.</summary>
    public IReadOnlyList<double> DecodeMs { get; init; } = Array.Empty<double>();
    /// <summary>Tokens run through the decoder: the frame's, the prompt's and the fed-back answer's.</summary>
    public int DecoderTokens { get; init; }
    public int VisionFrames { get; init; }
    /// <summary>The frame's visual tokens and those still present at each decoder layer (no pruning: all of them at every layer).</summary>
    public int VisualTokens { get; init; }
    public int[] VisualPerLayer { get; init; } = Array.Empty<int>();
    /// <summary>Visual tokens that survived filtering (or all, unpruned).</summary>
    public int KeptTokens { get; init; }
    /// <summary>Fraction of frames that kept each cell of the main visual grid (row-major), for the heatmap.</summary>
    public float[]? KeptGrid { get; init; }
    public int GridW { get; init; }
    public int GridH { get; init; }
    /// <summary>What pruning did to the frame read (null: no pruning).</summary>
    public PruneReport? Prune { get; init; }
    /// <summary>The pruning level the read ran at (the governor's choice, e.g. "schedule", "k=16 exit 3"); null: unpruned.</summary>
    public string? Level { get; init; }
    /// <summary>The read's share: preprocessing, vision and the decoder pass that appended the frame.</summary>
    public double ReadMs { get; init; }
    /// <summary>The write's share: the prompt's pass (unless fused with the read) and the decode steps.</summary>
    public double WriteMs { get; init; }
    public string Text { get; init; } = "";
}

/// <summary>
/// The one inference seam below the frame loop: frames in, token events out, and a report after
/// every update. READ vision-encodes a frame once and adds it to the session; WRITE answers the
/// instruction (a caption) or a question from what the session holds. The GPE session is the
/// default for every model; re-encoding (and, in the benches, interleaved positions) are the
/// baselines behind the same interface.
/// </summary>
public interface ICaptionSession : IDisposable
{
    /// <summary>gpe, reencode or interleaved.</summary>
    string Mode { get; }
    /// <summary>The model the session runs on; null for the simulated stand-in, which has none (and so no governor).</summary>
    Engine? Engine { get; }
    StreamingOptions Options { get; }
    int FramesInWindow { get; }
    long FramesRead { get; }
    KvCache Cache { get; }
    /// <summary>The pruning the next READ runs with (the governor changes it per read); null: none.</summary>
    PruningConfig? Pruning { get; set; }
    /// <summary>The pixel bound the next READ's frame is prepared at (the governor's resolution rung); null: the model's own.</summary>
    long? MaxPixels { get; set; }
    /// <summary>The last update's report (complete once a WRITE's tokens have all been read).</summary>
    UpdateReport Last { get; }
    /// <summary>The drafts its writes verified (<see cref="GenerationOptions.DraftTokens"/>), over the session's life; null where it decodes no model.</summary>
    DraftStats? Drafts => null;

    /// <summary>
    /// Runs the model once on a throwaway copy of this session (<see cref="SessionModes.WarmUp"/>),
    /// before a stream's first frame; this session is left as it was. The ms it took (0: nothing
    /// to warm, or the engine already warm in this mode).
    /// </summary>
    double WarmUp() => 0;

    void Read(Mat frame);
    /// <summary>READ from an image already encoded (the benches and tests; the session takes ownership).</summary>
    void Read(EncodedImage frame);
    IEnumerable<TokenEvent> Write(string? question = null);
    /// <summary>READ then WRITE; GPE does both in one decoder pass where it can.</summary>
    IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null);
    IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null);
}

/// <summary>The two modes a user picks between.</summary>
public static class SessionModes
{
    public const string Gpe = "gpe", ReEncode = "reencode", Interleaved = "interleaved";

    public static string Parse(string? text) => (text ?? Gpe).Trim().ToLowerInvariant() switch
    {
        Gpe => Gpe,
        "reencode" or "re-encode" or "re-encoding" => ReEncode,
        var other => throw new UserError($"--mode '{other}' is not one of gpe, reencode"),
    };

    /// <summary>The modes each engine has been warmed up in (an engine's entry goes with it).</summary>
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Engine, HashSet<string>> Warm = new();

    /// <summary>The warm-up caption's most tokens: after 4 the first real write still took 16–20 ms where the next took 4.5; after 16, 5.5.</summary>
    const int WarmUpTokens = 16;

    /// <summary>
    /// Runs a model once in a mode, on a throwaway session: a synthetic frame read at the given
    /// pruning and pixel bound, and a caption of up to 16 tokens written. A model's first pass pays
    /// one-time costs (libtorch's first calls, the JIT, the allocator's first blocks): on the demo
    /// model a stream's first read took about 100 ms where the next took 10, and its first write
    /// about 45 ms more than the next. Run before capture starts, those costs no longer land on a
    /// stream's first frame, its first caption and the governor's first measurement. Once per
    /// engine and mode; returns the ms it took (0: already warm).
    /// </summary>
    public static double WarmUp(string mode, Engine engine, StreamingOptions options, PruningConfig? pruning = null, long? maxPixels = null)
    {
        var modes = Warm.GetOrCreateValue(engine);
        lock (modes)
        {
            if (modes.Contains(mode)) return 0;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            // Greedy and short: the copy draws on no random state and decodes past the prompt.
            var generation = options.Generation with { MaxNewTokens = Math.Min(WarmUpTokens, options.Generation.MaxNewTokens), Temperature = 0, LogProbs = null };
            using (var twin = Create(mode, engine, options with { Generation = generation }))
            using (var frame = new Mat(224, 224, MatType.CV_8UC3))
            {
                twin.Pruning = pruning;
                twin.MaxPixels = maxPixels;
                // A few shapes on a grey ground: a frame the vision tower reads like any other.
                frame.SetTo(new Scalar(128, 128, 128));
                Cv2.Circle(frame, new Point(70, 80), 30, new Scalar(40, 40, 220), -1);
                Cv2.Rectangle(frame, new Rect(130, 120, 60, 60), new Scalar(200, 120, 30), -1);
                foreach (var _ in twin.ReadAndWrite(frame)) { }
            }
            modes.Add(mode);
            return sw.Elapsed.TotalMilliseconds;
        }
    }

    /// <summary>
    /// The most parameters at which a stream's warm-up pays on a CPU. There it costs about one
    /// read and a short caption, and takes a cold cost of about 0.1 s off the first frame: on the
    /// demo model (2.1 M) a first read of 84 ms became 7.5; at 104 M (the LLaVA shape) it cost
    /// 1.25 s where a cold read is no slower than a warm one, and at 2.2 B (Qwen2-VL-2B) 2.5 s for
    /// 0.25 s (docs/BENCHMARKS.md, "The warm-up on larger models").
    /// </summary>
    public const long WarmUpMaxCpuParameters = 20_000_000;

    /// <summary>
    /// Whether a stream warms <paramref name="engine"/> up before its first frame by default: on a
    /// GPU always (the first calls load kernels and libraries), on a CPU up to
    /// <see cref="WarmUpMaxCpuParameters"/>. Null when it does; else why not, for the header.
    /// </summary>
    public static string? WhyNoWarmUp(Engine engine)
    {
        if (engine.Device.type != TorchSharp.DeviceType.CPU) return null;
        long parameters = engine.Parameters;
        return parameters <= WarmUpMaxCpuParameters ? null : $"{parameters / 1e6:N0} M parameters on the CPU: a warm-up would cost about a read";
    }

    public static ICaptionSession Create(string mode, Engine engine, StreamingOptions options) => mode switch
    {
        Gpe => new GpeSession(engine, options),
        ReEncode => new ReEncodingSession(engine, options),
        Interleaved => new InterleavedSession(engine, options),
        _ => throw new UserError($"unknown session mode '{mode}'"),
    };
}
