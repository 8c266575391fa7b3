using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.Streaming;

/// <summary>
/// The test hook: a session whose reads are slowed by <see cref="ExtraMs"/> (of the read's report
/// and its index in the session), or in proportion to the visual tokens each layer processed
/// (the cost pruning saves) by <see cref="MsPerTokenLayer"/>.
/// </summary>
internal sealed class SlowedSession(ICaptionSession inner) : SessionDecorator(inner)
{
    public Func<UpdateReport, int, double> ExtraMs = (_, _) => 0;
    public double MsPerTokenLayer { set => ExtraMs = (r, _) => value * r.VisualPerLayer.Sum(); }
    int _reads;
    double _extra; // the slow-down of the read a write follows: a read that writes too reports it
    UpdateReport _last = new();
    public override UpdateReport Last => _last;

    void Slow()
    {
        var r = Inner.Last;
        _extra = ExtraMs(r, _reads++);
        if (_extra > 0) Thread.Sleep(TimeSpan.FromMilliseconds(_extra));
        _last = r with { ReadMs = r.ReadMs + _extra };
    }

    public override void Read(Mat frame) { Inner.Read(frame); Slow(); }
    public override void Read(EncodedImage frame) { Inner.Read(frame); Slow(); }
    public override IEnumerable<TokenEvent> Write(string? question = null)
    {
        foreach (var e in Inner.Write(question)) yield return e;
        _last = Inner.Last with { ReadMs = Inner.Last.ReadMs + _extra };
        _extra = 0;
    }
    public override IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null) { Read(frame); return Write(question); }
    public override IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) { Read(frame); return Write(question); }
}
