using System.Diagnostics;
using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Streaming;

/// <summary>A caption segment or an answer, and when in the stream it was written.</summary>
public sealed record StreamSegment(TimeSpan At, string? Question, string Text, int Tokens, double Ms);

/// <summary>Counts over a stream: how much work the gate saved and where the time went.</summary>
public sealed record StreamStats
{
    public long Frames { get; init; }
    public long Read { get; init; }
    public long Skipped { get; init; }
    public long Writes { get; init; }
    public long Answers { get; init; }
    /// <summary>Reads done in one pass with a write (their time is in <see cref="WriteMs"/>, not <see cref="ReadMs"/>).</summary>
    public long ReadWithWrite { get; init; }
    public double ReadMs { get; init; }
    public double WriteMs { get; init; }
}

/// <summary>
/// Raw frames in, caption segments out: the scene-change gate decides whether a frame is read at
/// all, the <see cref="StreamingSession"/> reads it (vision encoder + one append), and the
/// <see cref="WritePolicy"/> decides when to write. Questions asked with <see cref="Ask"/> are
/// answered at the next frame, and the stream goes on.
/// </summary>
public sealed class StreamingDriver : IDisposable
{
    readonly StreamingSession _session;
    readonly SceneChangeGate _gate;
    readonly WritePolicy _policy;
    readonly Queue<string> _questions = new();
    int _readsSinceWrite;
    StreamStats _stats = new();

    /// <param name="gateThreshold">Mean grey-level change a frame needs to be read (0 reads every frame; the change policy needs more than 0).</param>
    public StreamingDriver(StreamingSession session, WritePolicy policy, double gateThreshold)
    {
        if (policy.Trigger == WriteTrigger.SceneChange && gateThreshold <= 0)
            throw new UserError("the change write policy needs a scene-change threshold above 0");
        _session = session;
        _policy = policy;
        _gate = new SceneChangeGate(gateThreshold);
    }

    public StreamStats Stats => _stats;
    public StreamingSession Session => _session;

    public void Ask(string question)
    {
        if (string.IsNullOrWhiteSpace(question)) throw new UserError("empty question");
        _questions.Enqueue(question);
    }

    /// <summary>One frame of the stream; returns what was written because of it (often nothing).</summary>
    public List<StreamSegment> Push(Mat frame, TimeSpan at, Action<string>? onDelta = null)
    {
        var written = new List<StreamSegment>();
        _stats = _stats with { Frames = _stats.Frames + 1 };
        bool fused = false;
        if (_gate.Accept(frame))
        {
            _readsSinceWrite++;
            // When this frame triggers the policy's write and no question waits, the frame and the
            // instruction go through the decoder in one pass (StreamingSession.ReadAndWrite).
            if (_questions.Count == 0 && _policy.ShouldWrite(_readsSinceWrite))
            {
                var sw = Stopwatch.StartNew();
                written.Add(Segment(at, null, _session.ReadAndWrite(frame), onDelta, sw));
                _stats = _stats with { Read = _stats.Read + 1, ReadWithWrite = _stats.ReadWithWrite + 1 };
                fused = true;
            }
            else
            {
                var sw = Stopwatch.StartNew();
                _session.Read(frame);
                _stats = _stats with { Read = _stats.Read + 1, ReadMs = _stats.ReadMs + sw.Elapsed.TotalMilliseconds };
            }
        }
        else _stats = _stats with { Skipped = _stats.Skipped + 1 };
        if (_session.FramesInWindow == 0) return written; // nothing to talk about yet
        while (_questions.Count > 0)
        {
            var question = _questions.Dequeue();
            written.Add(Segment(at, question, _session.Write(question), onDelta, Stopwatch.StartNew()));
            _stats = _stats with { Answers = _stats.Answers + 1 };
        }
        if (fused || _policy.ShouldWrite(_readsSinceWrite))
        {
            if (!fused) written.Add(Segment(at, null, _session.Write(), onDelta, Stopwatch.StartNew()));
            _readsSinceWrite = 0;
            _stats = _stats with { Writes = _stats.Writes + 1 };
        }
        return written;
    }

    StreamSegment Segment(TimeSpan at, string? question, IEnumerable<TokenEvent> events, Action<string>? onDelta, Stopwatch sw)
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
        _stats = _stats with { WriteMs = _stats.WriteMs + ms };
        return new StreamSegment(at, question, text.ToString().Trim(), tokens, ms);
    }

    public void Dispose() => _gate.Dispose();
}
