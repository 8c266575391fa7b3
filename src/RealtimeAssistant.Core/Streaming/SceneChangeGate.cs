using OpenCvSharp;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// The cheap test in front of the model: a frame goes on only when it differs from the last frame
/// that went on. It compares 16×16 grey thumbnails (mean absolute difference, in grey levels), so
/// an unchanged scene costs a resize and nothing else: no vision encoder, no decoder. Comparing
/// against the last accepted frame, not the previous one, lets slow drift add up until it counts.
/// </summary>
public sealed class SceneChangeGate : IDisposable
{
    const int Side = 16;
    readonly double _threshold;
    Mat? _last;

    /// <param name="threshold">Mean absolute grey difference (0–255) a frame must exceed; 0 lets every frame through.</param>
    public SceneChangeGate(double threshold)
    {
        if (!(threshold >= 0 && threshold <= 255)) throw new UserError($"scene-change threshold must be 0..255 grey levels, got {threshold}");
        _threshold = threshold;
    }

    /// <summary>Difference of the last frame tested from the last accepted one (∞ for the first frame).</summary>
    public double LastDistance { get; private set; } = double.PositiveInfinity;

    public bool Accept(Mat frame)
    {
        if (frame.Empty()) throw new UserError("empty frame");
        var thumb = Thumbnail(frame);
        if (_last is null) { _last = thumb; LastDistance = double.PositiveInfinity; return true; }
        using (var diff = new Mat())
        {
            Cv2.Absdiff(thumb, _last, diff);
            LastDistance = Cv2.Mean(diff).Val0;
        }
        if (_threshold > 0 && LastDistance <= _threshold) { thumb.Dispose(); return false; } // 0: every frame, an identical one too
        _last.Dispose();
        _last = thumb;
        return true;
    }

    static Mat Thumbnail(Mat frame)
    {
        using var grey = frame.Channels() == 1 ? frame.Clone() : frame.CvtColor(ColorConversionCodes.BGR2GRAY);
        return grey.Resize(new Size(Side, Side), 0, 0, InterpolationFlags.Area);
    }

    public void Dispose() { _last?.Dispose(); _last = null; }
}
