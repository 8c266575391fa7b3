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
/// A camera's light changes the whole frame at once: mains flicker beating with the frame rate,
/// auto-exposure hunting. Where the last accepted thumbnail has structure, each channel of the
/// new one is first fitted to it as gain·old + offset (least squares over the cells, refitted
/// without the cells an object changed), and the two rules above apply to what the fit leaves:
/// what objects did. The lighting change itself counts only beyond
/// <see cref="LightingFactor"/>·G (the lights went out, a door opened onto daylight). A flat
/// thumbnail has nothing to tell light from content by, and is compared as it is.
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
    /// <summary>
    /// A change of the light alone (the mean over cells and channels of what the gain and offset
    /// explain), in multiples of G, that counts: 16 levels at the default threshold, above the
    /// ±1–5 levels of the flicker clips in docs/BENCHMARKS.md ("The gate under a camera's
    /// changing light") and below a light turned on or off.
    /// </summary>
    public const double LightingFactor = 16;
    /// <summary>The spread of a channel's cells (standard deviation, levels) below which the thumbnail is flat and no light is fitted.</summary>
    const double MinStructure = 4;
    const int Cells = Side * Side;
    readonly double _threshold;
    Mat? _last;
    readonly byte[] _old = new byte[Cells * 3], _new = new byte[Cells * 3];

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
    /// <summary>How much of that comparison's change the light explains, in levels (0 where nothing was fitted; ∞ for the first frame).</summary>
    public double LastLightingChange { get; private set; } = double.PositiveInfinity;

    public bool Accept(Mat frame)
    {
        if (frame.Empty()) throw new UserError("empty frame");
        var thumb = Thumbnail(frame);
        if (_last is null) { _last = thumb; LastDistance = LastCellChange = LastLightingChange = double.PositiveInfinity; return true; }
        Compare(_last, thumb);
        // 0: every frame, an identical one too
        if (_threshold > 0 && LastDistance <= _threshold && LastCellChange <= CellFactor * _threshold && LastLightingChange <= LightingFactor * _threshold)
        {
            thumb.Dispose();
            return false;
        }
        _last.Dispose();
        _last = thumb;
        return true;
    }

    /// <summary>Sets the three Last* measures for <paramref name="current"/> against <paramref name="last"/> (both 16×16 BGR, continuous).</summary>
    void Compare(Mat last, Mat current)
    {
        System.Runtime.InteropServices.Marshal.Copy(last.Data, _old, 0, _old.Length);
        System.Runtime.InteropServices.Marshal.Copy(current.Data, _new, 0, _new.Length);
        double sum = 0, most = 0, light = 0;
        Span<bool> moved = stackalloc bool[Cells];
        for (int c = 0; c < 3; c++)
        {
            moved.Clear();
            var (gain, offset) = FitLight(c, moved);
            if (gain != 1 || offset != 0)
            {
                // Refit without the cells an object changed (more than 8·G off the first fit).
                for (int i = 0; i < Cells; i++) moved[i] = Math.Abs(_new[i * 3 + c] - (gain * _old[i * 3 + c] + offset)) > CellFactor * Math.Max(_threshold, 0.25) / 4;
                (gain, offset) = FitLight(c, moved);
            }
            // The light is taken as changed only where that leaves less: a fit to a scene whose light
            // held still matches the noise and the motion a little, and would leave more.
            double fitted = 0, plain = 0;
            for (int i = 0; i < Cells; i++)
            {
                fitted += Math.Abs(_new[i * 3 + c] - (gain * _old[i * 3 + c] + offset));
                plain += Math.Abs(_new[i * 3 + c] - _old[i * 3 + c]);
            }
            if (fitted >= plain) (gain, offset) = (1, 0);
            for (int i = 0; i < Cells; i++)
            {
                double x = _old[i * 3 + c], lit = gain * x + offset, left = Math.Abs(_new[i * 3 + c] - lit);
                sum += left;
                most = Math.Max(most, left);
                light += Math.Abs(lit - x);
            }
        }
        LastDistance = sum / (3 * Cells);
        LastCellChange = most;
        LastLightingChange = light / (3 * Cells);
    }

    /// <summary>
    /// Least squares new ≈ gain·old + offset over channel <paramref name="c"/>'s cells not marked
    /// <paramref name="moved"/>; (1, 0) where those cells of the old thumbnail are flat or too few.
    /// </summary>
    (double Gain, double Offset) FitLight(int c, ReadOnlySpan<bool> moved)
    {
        double n = 0, sx = 0, sy = 0;
        for (int i = 0; i < Cells; i++)
            if (!moved[i]) { n++; sx += _old[i * 3 + c]; sy += _new[i * 3 + c]; }
        if (n < Cells / 2) return (1, 0);
        double mx = sx / n, my = sy / n, sxx = 0, sxy = 0;
        for (int i = 0; i < Cells; i++)
        {
            if (moved[i]) continue;
            double dx = _old[i * 3 + c] - mx;
            sxx += dx * dx;
            sxy += dx * (_new[i * 3 + c] - my);
        }
        if (sxx / n < MinStructure * MinStructure) return (1, 0);
        double gain = Math.Clamp(sxy / sxx, 0.5, 2);
        return (gain, my - gain * mx);
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
