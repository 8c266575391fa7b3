using OpenCvSharp;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// Draws a stream's overlay (caption, HUD, kept-token heatmap) onto its video for the MJPEG
/// endpoint. The server knows no GL: `ra serve` passes one backed by the app's OverlayRenderer
/// (EGL, headless). Made on the video thread and used only there (a GL context is one thread's).
/// </summary>
public interface IStreamOverlay : IDisposable
{
    /// <summary>The frame as a viewer sees it (BGR 8UC3; the caller disposes it).</summary>
    Mat Draw(Mat video, CaptionView caption);
}

/// <summary>Makes the overlay for one stream's video, <paramref name="width"/>×<paramref name="height"/> pixels.</summary>
public delegate IStreamOverlay StreamOverlayFactory(FrameLoop loop, int width, int height);
