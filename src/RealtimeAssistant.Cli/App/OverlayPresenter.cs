using OpenCvSharp;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Cli.App;

/// <summary>
/// The GL side of the app: a context (window or headless) and the overlay renderer, used from one
/// thread. Builds the <see cref="OverlayState"/> from a video frame and the caption board's view.
/// </summary>
public sealed class OverlayPresenter : IDisposable
{
    public IGlContext Context { get; }
    public OverlayRenderer Renderer { get; }

    public bool ShowHud { get; set; }
    public bool ShowHeatmap { get; set; } = true;

    OverlayPresenter(IGlContext context)
    {
        Context = context;
        Context.MakeCurrent();
        try { Renderer = new OverlayRenderer(context); }
        catch { context.Dispose(); throw; }
    }

    /// <summary>A presenter on a context the caller made (it is disposed with the presenter).</summary>
    public static OverlayPresenter For(IGlContext context) => new(context);

    /// <summary>An off-screen presenter of exactly <paramref name="width"/>×<paramref name="height"/> (EGL).</summary>
    public static OverlayPresenter Headless(int width, int height) => new(GlContextFactory.Create(false, width, height, out _));

    /// <summary>A window when <paramref name="preferWindow"/> and a display allow it, else headless; <paramref name="fallback"/> says why not.</summary>
    public static OverlayPresenter Create(bool preferWindow, int width, int height, out string? fallback, string title = "RealtimeAssistant") =>
        new(GlContextFactory.Create(preferWindow, width, height, out fallback, title));

    public void Render(Mat? video, CaptionView caption, HudStats? hud, string? status)
    {
        Renderer.Render(new OverlayState
        {
            Video = video,
            Caption = caption.Text,
            ShowHud = ShowHud && hud is not null,
            Hud = hud,
            ShowHeatmap = ShowHeatmap && caption.KeptGrid is not null,
            KeptGrid = caption.KeptGrid,
            GridW = caption.GridW,
            GridH = caption.GridH,
            Status = status,
        });
    }

    public void RefreshHudNow() => Renderer.RefreshHudNow();

    public void Dispose()
    {
        Renderer.Dispose();
        Context.Dispose();
    }
}
