using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Streaming;

/// <summary>A session that passes every call to another; a decorator overrides only the calls it changes.</summary>
public abstract class SessionDecorator(ICaptionSession inner) : ICaptionSession
{
    protected ICaptionSession Inner { get; } = inner;

    public string Mode => Inner.Mode;
    public Engine? Engine => Inner.Engine;
    public StreamingOptions Options => Inner.Options;
    public int FramesInWindow => Inner.FramesInWindow;
    public long FramesRead => Inner.FramesRead;
    public KvCache Cache => Inner.Cache;
    public PruningConfig? Pruning { get => Inner.Pruning; set => Inner.Pruning = value; }
    public long? MaxPixels { get => Inner.MaxPixels; set => Inner.MaxPixels = value; }
    public virtual UpdateReport Last => Inner.Last;
    public DraftStats? Drafts => Inner.Drafts;

    public virtual double WarmUp() => Inner.WarmUp();
    public virtual void Read(Mat frame) => Inner.Read(frame);
    public virtual void Read(EncodedImage frame) => Inner.Read(frame);
    public virtual IEnumerable<TokenEvent> Write(string? question = null) => Inner.Write(question);
    public virtual IEnumerable<TokenEvent> ReadAndWrite(Mat frame, string? question = null) => Inner.ReadAndWrite(frame, question);
    public virtual IEnumerable<TokenEvent> ReadAndWrite(EncodedImage frame, string? question = null) => Inner.ReadAndWrite(frame, question);
    public void Dispose() => Inner.Dispose();
}
