using System.Diagnostics;
using System.Globalization;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// The inference stand-in's costs (<c>--simulate-model-ms READ[,TOKEN]</c>): a frame read holds the
/// device for <see cref="ReadMs"/>, each generated token for <see cref="TokenMs"/>, and a caption or
/// an answer is <see cref="Tokens"/> tokens long.
/// </summary>
public sealed record SimulatedModel(double ReadMs, double TokenMs, int Tokens = 8)
{
    /// <summary>"20" (a token costs a tenth of a read) or "20,3".</summary>
    public static SimulatedModel Parse(string text)
    {
        var parts = (text ?? "").Split(',', StringSplitOptions.TrimEntries);
        static double Ms(string s, string what) =>
            double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0 && v <= 60_000 ? v
                : throw new UserError($"--simulate-model-ms takes READ[,TOKEN] milliseconds in 0..60000, got {what} '{s}'");
        if (parts.Length is < 1 or > 2 || parts[0].Length == 0)
            throw new UserError($"--simulate-model-ms takes READ[,TOKEN] milliseconds, e.g. 20 or 20,2; got '{text}'");
        double read = Ms(parts[0], "read");
        return new SimulatedModel(read, parts.Length == 2 ? Ms(parts[1], "token") : read / 10);
    }

    /// <summary>What a cluster compares so that every inference silo runs the same stand-in.</summary>
    public string Version => FormattableString.Invariant($"simulated read {ReadMs} ms, token {TokenMs} ms, {Tokens} tokens");

    public override string ToString() => Version;
}

/// <summary>
/// One accelerator shared by every simulated session of a process (or of an in-process silo). It
/// runs one step at a time, as a GPU runs one stream of kernels: a step submitted while the device
/// is busy starts when the steps before it end, and its caller waits until its own step ends. The
/// device's time is kept on the clock, not by a thread holding a lock, so a caller that wakes late
/// (a loaded host) delays only itself, never the steps queued behind it; the device does exactly
/// 1000 / ms steps a second when it is kept busy. A write takes the device token by token, so a
/// stream's read waits behind at most one step of another stream's answer per token. This is what
/// gives a silo a capacity, so that adding silos adds throughput.
/// </summary>
public sealed class SimulatedDevice
{
    readonly object _lock = new();
    long _freeAt;   // Stopwatch timestamp when the last step submitted ends
    long _steps;
    double _busyMs;

    public long Steps { get { lock (_lock) return _steps; } }
    public double BusyMs { get { lock (_lock) return _busyMs; } }

    /// <summary>Runs a step of <paramref name="ms"/> milliseconds; returns the time from submission to its end (waiting for the device included).</summary>
    public double Run(double ms, CancellationToken ct = default)
    {
        long now = Stopwatch.GetTimestamp(), end;
        lock (_lock)
        {
            end = Math.Max(now, _freeAt) + (long)(ms * Stopwatch.Frequency / 1000);
            _freeAt = end;
            _steps++;
            _busyMs += ms;
        }
        // Sleeping, not spinning: a device step costs the host no CPU, as a GPU kernel does.
        var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), end);
        if (left > TimeSpan.Zero) ct.WaitHandle.WaitOne(left);
        ct.ThrowIfCancellationRequested();
        return Stopwatch.GetElapsedTime(now).TotalMilliseconds;
    }
}

/// <summary>
/// An <see cref="ICaptionSession"/> with no model: a read costs the device <see cref="SimulatedModel.ReadMs"/>,
/// a write <see cref="SimulatedModel.Tokens"/> steps of <see cref="SimulatedModel.TokenMs"/>. The text
/// says which frame it saw and that frame's mean grey level, so a caption depends on its frames and a
/// test can tell captions apart. The same frame loop and driver run it as the real sessions (gate,
/// write policy, questions); there is no pruning, so no governor. It exists to measure what sits
/// around inference (placement, throughput and failover of a cluster) on a machine that cannot run
/// many models.
/// </summary>
public sealed class SimulatedSession : ICaptionSession
{
    readonly SimulatedModel _model;
    readonly SimulatedDevice _device;
    long _lastFrameGrey = -1;
    int _window;

    public SimulatedSession(SimulatedModel model, SimulatedDevice device, StreamingOptions options)
    {
        if (options.WindowFrames < 1) throw new UserError($"window must be at least 1 frame, got {options.WindowFrames}");
        if (model.Tokens < 1) throw new UserError($"a simulated caption needs at least one token, got {model.Tokens}");
        _model = model;
        _device = device;
        Options = options;
    }

    public string Mode => "simulated";
    public Engine? Engine => null;
    public StreamingOptions Options { get; }
    public int FramesInWindow => _window;
    public long FramesRead { get; private set; }
    public KvCache Cache { get; } = new(0);
    /// <summary>Ignored: the stand-in prunes nothing.</summary>
    public PruningConfig? Pruning { get; set; }
    /// <summary>Kept for the interface: the stand-in has no vision side to resize for.</summary>
    public long? MaxPixels { get; set; }
    public UpdateReport Last { get; private set; } = new();

    public void Read(Mat frame)
    {
        _lastFrameGrey = (long)Math.Round(Cv2.Mean(frame).Val0);
        ReadOne();
    }

    /// <summary>An image encoded elsewhere: the stand-in only counts it (and takes ownership).</summary>
    public void Read(EncodedImage frame)
    {
        frame.Dispose();
        ReadOne();
    }

    void ReadOne()
    {
        double ms = _device.Run(_model.ReadMs);
        FramesRead++;
        _window = Math.Min(_window + 1, Options.WindowFrames);
        Last = new UpdateReport { Kind = "read", ReadMs = ms, VisionFrames = 1 };
    }

    public IEnumerable<TokenEvent> Write(string? question = null) => Generate(question, "write", readMs: 0);

    public IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null)
    {
        Read(frame);
        return Generate(question, "read+write", Last.ReadMs);
    }

    public IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null)
    {
        Read(frame);
        return Generate(question, "read+write", Last.ReadMs);
    }

    IEnumerable<TokenEvent> Generate(string? question, string kind, double readMs)
    {
        var words = Words(question);
        var steps = new List<double>(words.Count);
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < words.Count; i++)
        {
            double ms = _device.Run(_model.TokenMs);
            steps.Add(ms);
            var delta = (i == 0 ? "" : " ") + words[i];
            text.Append(delta);
            yield return new TokenEvent(i, delta, ms);
        }
        Last = new UpdateReport { Kind = kind, ReadMs = readMs, WriteMs = steps.Sum(), DecodeMs = steps, DecoderTokens = words.Count, Text = text.ToString() };
    }

    /// <summary>Exactly <see cref="SimulatedModel.Tokens"/> words, naming the frame (or the question) they answer.</summary>
    List<string> Words(string? question)
    {
        var said = question is null
            ? new[] { "simulated", "caption", "of", "frame", FramesRead.ToString(CultureInfo.InvariantCulture), "grey", _lastFrameGrey.ToString(CultureInfo.InvariantCulture) }
            : new[] { "simulated", "answer", "to" }.Concat(question.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
        var words = new List<string>(_model.Tokens);
        for (int i = 0; i < _model.Tokens; i++) words.Add(i < said.Length ? said[i] : ".");
        return words;
    }

    public void Dispose() => Cache.Dispose();
}
