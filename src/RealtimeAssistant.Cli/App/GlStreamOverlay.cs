using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Server.Streams;

namespace RealtimeAssistant.Cli.App;

/// <summary>
/// `ra serve`'s overlay for a stream's MJPEG video: the live app's own OverlayRenderer (caption,
/// HUD, kept-token heatmap) on a headless EGL context, read back as pixels. One per stream video,
/// made and used on that video's thread.
/// </summary>
public sealed class GlStreamOverlay : IStreamOverlay
{
    static readonly HashSet<string> QuietStatuses = ["live", "playing", "playing (realtime)"];

    readonly OverlayPresenter _presenter;
    readonly HudFeed _feed;
    readonly FrameLoop _loop;
    readonly Mat _pixels = new();
    long _last;
    readonly Queue<double> _recent = new();

    GlStreamOverlay(FrameLoop loop, int width, int height, double videoFps)
    {
        _loop = loop;
        _presenter = OverlayPresenter.Headless(width, height);
        _presenter.ShowHud = true;
        _feed = new HudFeed(loop.Profiler, 1000 / videoFps);
    }

    /// <summary>The factory `ra serve` hands the server (<paramref name="videoFps"/>: the video's rate, the HUD's frame budget).</summary>
    public static StreamOverlayFactory Factory(double videoFps) => (loop, w, h) => new GlStreamOverlay(loop, w, h, videoFps);

    public Mat Draw(Mat video, CaptionView caption)
    {
        var now = Stopwatch.GetTimestamp();
        if (_last != 0)
        {
            var ms = Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds;
            _feed.AddFrameTime(ms);
            _recent.Enqueue(ms);
            while (_recent.Count > 30) _recent.Dequeue();
        }
        _last = now;
        var fps = _recent.Count > 0 ? 1000 * _recent.Count / _recent.Sum() : 0;
        var status = _loop.SourceStatus;
        _presenter.Render(video, caption, _feed.Stats(fps, _loop, TimeSpan.FromMilliseconds(250)), QuietStatuses.Contains(status) ? null : status);
        _presenter.Renderer.ReadPixels(_pixels);
        return _pixels.Clone();
    }

    public void Dispose()
    {
        _presenter.Dispose();
        _pixels.Dispose();
    }
}
