using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>
/// A generated video clip with ground truth. Each frame stores every tracked object, including
/// ones partly outside the picture (entering or leaving); the scene graph of a frame holds only
/// objects whose centre is inside the picture, with cells derived from their actual centres.
/// </summary>
public sealed class Clip
{
    private readonly SceneObject[][] _frames;

    internal Clip(int seed, int fps, Backdrop backdrop, SceneObject[][] frames, IReadOnlyList<ClipEvent> events)
    {
        Seed = seed; Fps = fps; Backdrop = backdrop; _frames = frames; Events = events;
    }

    public int Seed { get; }
    public int Fps { get; }
    public Backdrop Backdrop { get; }
    public int FrameCount => _frames.Length;
    public IReadOnlyList<ClipEvent> Events { get; }

    /// <summary>The scene graph at a frame: objects with their centre inside the picture.</summary>
    public Scene SceneAt(int frame) => new(_frames[Check(frame)].Where(o => o.InFrame).ToList(), Backdrop);

    /// <summary>Every object drawn at a frame (partly visible ones too).</summary>
    public IReadOnlyList<SceneObject> ObjectsAt(int frame) => _frames[Check(frame)];

    public Mat Render(int frame, int width, int height) =>
        SceneRenderer.Render(new Scene(_frames[Check(frame)], Backdrop), width, height, unchecked(Seed * 7919 + frame));

    /// <summary>Events with <paramref name="fromFrame"/> &lt; frame ≤ <paramref name="toFrame"/>.</summary>
    public IEnumerable<ClipEvent> EventsBetween(int fromFrame, int toFrame) =>
        Events.Where(e => e.Frame > fromFrame && e.Frame <= toFrame);

    /// <summary>
    /// A streaming caption segment: sentences for the events in (fromFrame, toFrame], then the
    /// canonical caption of the scene at toFrame.
    /// </summary>
    public string CaptionFor(int fromFrame, int toFrame) =>
        string.Join(" ", EventsBetween(fromFrame, toFrame).Select(e => e.Sentence)
            .Append(CaptionGrammar.Canonical(SceneAt(toFrame))));

    private int Check(int frame) => frame >= 0 && frame < _frames.Length
        ? frame
        : throw new ArgumentOutOfRangeException(nameof(frame), $"Frame {frame} is outside 0..{_frames.Length - 1}.");
}
