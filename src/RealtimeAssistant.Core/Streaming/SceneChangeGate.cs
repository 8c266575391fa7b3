using OpenCvSharp;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// The cheap test in front of the model: a frame goes on only when it differs from the last frame
/// that went on. It compares 16×16 colour thumbnails, so an unchanged scene costs a resize and
/// nothing else: no vision encoder, no decoder. A frame differs when the mean absolute difference
/// (over the cells and their three channels, in levels of 0–255) exceeds the threshold G, or when
/// any one cell (1/256 of the frame) changed by more than <see cref="CellFactor"/>·G in a channel:
/// a small object that appears, leaves or moves by its own size moves the mean by well under a
/// level but its cells by tens. Colour, not grey: a red object on an olive ground can differ from
/// it by 14 grey levels and by 140 in red. Comparing against the last accepted frame, not the
/// previous one, lets slow drift add up until it counts.
/// </summary>
public sealed class SceneChangeGate : IDisposable
{
    const int Side = 16;
    /// <summary>
    /// A cell's change, in multiples of the threshold, that counts on its own. At the default
    /// threshold (1) that is 32 levels: on the demo clip a triangle leaving the frame moved the grey
    /// mean 0.6 and its cells 59–69, while a cross drifting slowly moved no grey cell more than 11.
    /// A cell averages about 900 pixels of a 480² frame, so sensor noise moves it far less.
    /// </summary>
    public const double CellFactor = 32;
    readonly double _threshold;
    Mat? _last;

    /// <param name="threshold">Mean absolute difference (0–255) a frame must exceed; 0 lets every frame through.</param>
    public SceneChangeGate(double threshold)
    {
        if (!(threshold >= 0 && threshold <= 255)) throw new UserError($"scene-change threshold must be 0..255 levels, got {threshold}");
        _threshold = threshold;
    }

    /// <summary>Difference of the last frame tested from the last accepted one (∞ for the first frame).</summary>
    public double LastDistance { get; private set; } = double.PositiveInfinity;
    /// <summary>The largest change of one thumbnail cell's channel in that comparison (∞ for the first frame).</summary>
    public double LastCellChange { get; private set; } = double.PositiveInfinity;

    public bool Accept(Mat frame)
    {
        if (frame.Empty()) throw new UserError("empty frame");
        var thumb = Thumbnail(frame);
        if (_last is null) { _last = thumb; LastDistance = LastCellChange = double.PositiveInfinity; return true; }
        using (var diff = new Mat())
        {
            Cv2.Absdiff(thumb, _last, diff);
            var mean = Cv2.Mean(diff);
            LastDistance = (mean.Val0 + mean.Val1 + mean.Val2) / 3;
            using var values = diff.Reshape(1);
            Cv2.MinMaxLoc(values, out _, out double most);
            LastCellChange = most;
        }
        // 0: every frame, an identical one too
        if (_threshold > 0 && LastDistance <= _threshold && LastCellChange <= CellFactor * _threshold) { thumb.Dispose(); return false; }
        _last.Dispose();
        _last = thumb;
        return true;
    }

    /// <summary>The frame at 16×16 in BGR, whatever its channels, so that a source whose frames change between grey and colour still compares.</summary>
    static Mat Thumbnail(Mat frame)
    {
        var thumb = frame.Resize(new Size(Side, Side), 0, 0, InterpolationFlags.Area);
        if (thumb.Channels() == 3) return thumb;
        using (thumb) return thumb.CvtColor(thumb.Channels() == 1 ? ColorConversionCodes.GRAY2BGR : ColorConversionCodes.BGRA2BGR);
    }

    public void Dispose() { _last?.Dispose(); _last = null; }
}
