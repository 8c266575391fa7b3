using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Tests.App;

/// <summary>Tiny models and stand-in captioners for the app tests.</summary>
internal static class AppTestSupport
{
    static readonly Lazy<string> TinyDir = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), "ra-app-tests", $"tiny-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "config.json")))
        {
            Directory.CreateDirectory(dir);
            // Two frames per caption, as the demo model: the marker and instruction are words of the tiny vocabulary.
            SyntheticCheckpoint.Write(dir, SyntheticCheckpoint.Config(), SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)),
                extraConfig: new JsonObject { ["ra_frame_marker"] = "w5", ["ra_instruction"] = "w1 w2 w3" });
        }
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return dir;
    });

    /// <summary>A random-weight llava-layout model folder (2 frames per caption), made once per test run.</summary>
    public static string TinyModel => TinyDir.Value;

    /// <summary>The real captioner over the tiny model, capped at a few tokens so tests stay quick.</summary>
    public static IFrameCaptioner TinyCaptioner(int stride = 3)
    {
        var engine = LlavaEngine.Load(TinyModel, new EngineOptions { Device = "cpu" });
        return new EngineOwner(new LlavaFrameCaptioner(engine, frameStride: stride, options: new GenerationOptions { MaxNewTokens = 6 }), engine);
    }

    sealed class EngineOwner(IFrameCaptioner inner, LlavaEngine engine) : IFrameCaptioner
    {
        public int FramesPerCaption => inner.FramesPerCaption;
        public int FrameStride => inner.FrameStride;
        public bool PruningEnabled { get => inner.PruningEnabled; set => inner.PruningEnabled = value; }
        public CaptionResult Caption(CaptionRequest r, Action<string>? d, CancellationToken ct) => inner.Caption(r, d, ct);
        public void Dispose() { inner.Dispose(); engine.Dispose(); }
    }
}

/// <summary>
/// A captioner that takes a fixed time per caption and reports what it was given: the frames'
/// marker values (see <see cref="MarkFrame"/>) and how many requests were in flight at once.
/// </summary>
internal sealed class SlowCaptioner(TimeSpan delay, int framesPerCaption = 2, int stride = 3) : IFrameCaptioner
{
    int inFlight;
    public int MaxInFlight;
    public readonly List<int[]> Seen = new();
    public readonly List<string?> Questions = new();
    public Action? OnCaption;

    public int FramesPerCaption => framesPerCaption;
    public int FrameStride => stride;
    public bool PruningEnabled { get; set; }

    /// <summary>Stamps a frame with its index in the top-left pixel's three channels (base 256).</summary>
    public static void MarkFrame(Mat m, long index) =>
        m.Set(0, 0, new Vec3b((byte)(index & 255), (byte)((index >> 8) & 255), (byte)((index >> 16) & 255)));

    public static int ReadMark(Mat m)
    {
        var v = m.At<Vec3b>(0, 0);
        return v.Item0 | (v.Item1 << 8) | (v.Item2 << 16);
    }

    public CaptionResult Caption(CaptionRequest request, Action<string>? onDelta, CancellationToken ct)
    {
        var now = Interlocked.Increment(ref inFlight);
        lock (Seen)
        {
            MaxInFlight = Math.Max(MaxInFlight, now);
            Seen.Add(request.Frames.Select(ReadMark).ToArray());
            Questions.Add(request.Question);
        }
        try
        {
            var words = new[] { "a", "red", "circle", "moves", "left" };
            foreach (var w in words)
            {
                ct.WaitHandle.WaitOne(delay / words.Length);
                ct.ThrowIfCancellationRequested();
                onDelta?.Invoke(" " + w);
            }
            OnCaption?.Invoke();
            var t = new CaptionTimings { PreprocessMs = 1, VisionMs = 2, PrefillMs = 3 };
            t.DecodeMs.AddRange([1, 1, 1, 1, 1]);
            return new CaptionResult(string.Join(' ', words), t, 16, 8, Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? 1f : 0f).ToArray(), 4, 4);
        }
        finally { Interlocked.Decrement(ref inFlight); }
    }

    public void Dispose() { }
}
