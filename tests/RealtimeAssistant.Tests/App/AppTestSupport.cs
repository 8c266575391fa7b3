using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.App;

/// <summary>Tiny models and a stand-in session for the app tests.</summary>
internal static class AppTestSupport
{
    static readonly Lazy<string> TinyDir = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), "ra-app-tests", $"tiny-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        // Our frame layout, as the demo model: the marker and instruction are words of the tiny vocabulary.
        SyntheticCheckpoint.Write(dir, SyntheticCheckpoint.Config(tLayers: 4), SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)),
            extraConfig: new JsonObject { ["ra_frame_marker"] = "w5", ["ra_instruction"] = "w1 w2 w3", ["ra_group_positions"] = true });
        TinySchedule.Save(Path.Combine(dir, "pruning.json"));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return dir;
    });

    /// <summary>A schedule the tiny model can run, shaped like the demo model's: newest frame spared, filter at 1, older frames exit at 3.</summary>
    public static readonly PruningConfig TinySchedule = new()
    {
        ShallowLayers = 0, FilterFrom = 1, DeadlineLayer = 1, ExitLayer = 3, KeepNewestFrame = true, OlderFramesExitLayer = 3,
    };

    /// <summary>A random-weight model folder in our frame layout (4 decoder layers, 16 visual tokens a frame), made once per test run.</summary>
    public static string TinyModel => TinyDir.Value;

    public static Engine TinyEngine() => Engine.Load(TinyModel, new EngineOptions { Device = "cpu" });

    /// <summary>Session options for the tiny model: captions capped at a few tokens so tests stay quick.</summary>
    public static StreamingOptions TinyOptions(int window = 2, PruningConfig? pruning = null) =>
        new() { WindowFrames = window, Pruning = pruning, Generation = new GenerationOptions { MaxNewTokens = 6 } };

    public static FrameLoopOptions Loop(Pacing pacing, int stride = 3, string policy = "every:1", double gate = 0, double? budgetMs = null, PruningConfig? schedule = null) => new()
    {
        Pacing = pacing, Stride = stride,
        Driver = new DriverOptions { Policy = WritePolicy.Parse(policy), GateThreshold = gate, FrameBudgetMs = budgetMs, Schedule = schedule },
    };
}

/// <summary>
/// A stand-in session for the frame loop's pacing tests: a fixed time per read and per write, and
/// a record of what it was given (each frame's index stamp, questions, how many calls overlapped).
/// The model's own behaviour is tested on real sessions elsewhere.
/// </summary>
internal sealed class SlowSession(TimeSpan read, TimeSpan write, int window = 2) : ICaptionSession
{
    int _inFlight, _window;
    public int MaxInFlight;
    public readonly List<int> Seen = new();
    public readonly List<string?> Questions = new();
    public Action? OnWrite;
    static readonly string[] Words = ["a", "red", "circle", "moves", "left"];

    public string Mode => "gpe";
    public Engine Engine => throw new NotSupportedException("a stand-in session has no engine");
    public StreamingOptions Options { get; } = new() { WindowFrames = window };
    public int FramesInWindow => _window;
    public long FramesRead { get; private set; }
    public KvCache Cache { get; } = new(0);
    public long? MaxPixels { get; set; }
    public PruningConfig? Pruning { get; set; }
    public UpdateReport Last { get; private set; } = new();

    /// <summary>Stamps a frame with its index in the top-left pixel's three channels (base 256).</summary>
    public static void MarkFrame(Mat m, long index) =>
        m.Set(0, 0, new Vec3b((byte)(index & 255), (byte)((index >> 8) & 255), (byte)((index >> 16) & 255)));

    public static int ReadMark(Mat m)
    {
        var v = m.At<Vec3b>(0, 0);
        return v.Item0 | (v.Item1 << 8) | (v.Item2 << 16);
    }

    public void Read(Mat frame)
    {
        var now = Interlocked.Increment(ref _inFlight);
        try
        {
            lock (Seen) { MaxInFlight = Math.Max(MaxInFlight, now); Seen.Add(ReadMark(frame)); }
            Thread.Sleep(read);
            _window = Math.Min(_window + 1, Options.WindowFrames);
            FramesRead++;
            Last = new UpdateReport { Kind = "read", ReadMs = read.TotalMilliseconds, VisionFrames = 1, VisualTokens = 16, KeptTokens = 16 };
        }
        finally { Interlocked.Decrement(ref _inFlight); }
    }

    public void Read(EncodedImage frame) => throw new NotSupportedException();
    public IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) => throw new NotSupportedException();

    public IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null)
    {
        Read(frame);
        return Write(question);
    }

    public IEnumerable<TokenEvent> Write(string? question = null)
    {
        lock (Seen) Questions.Add(question);
        for (int i = 0; i < Words.Length; i++)
        {
            Thread.Sleep(write / Words.Length);
            yield return new TokenEvent(i + 10, (i == 0 ? "" : " ") + Words[i], write.TotalMilliseconds / Words.Length);
        }
        OnWrite?.Invoke();
        Last = new UpdateReport
        {
            Kind = "write", Text = string.Join(' ', Words), WriteMs = write.TotalMilliseconds, VisualTokens = 16, KeptTokens = 8,
            KeptGrid = Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? 1f : 0f).ToArray(), GridW = 4, GridH = 4,
        };
    }

    public void Dispose() => Cache.Dispose();
}
