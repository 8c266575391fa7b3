using System.Drawing;
using OpenCvSharp;
using Silk.NET.OpenGL;
using SkiaSharp;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// Draws one output frame into the context's framebuffer: the letterboxed video, the kept-token
/// heatmap, the caption on a band at the bottom, the status line and the HUD. Create, render and
/// dispose on the thread where the context is current.
/// </summary>
public sealed unsafe class OverlayRenderer : IDisposable
{
    private static readonly Color CaptionBand = Color.FromArgb(140, 0, 0, 0);
    private static readonly Color StatusBand = Color.FromArgb(170, 60, 30, 0);
    private static readonly SKColor StatusText = new(255, 200, 80);
    private const int Margin = 8;

    private readonly IGlContext _ctx;
    private readonly GL _gl;
    private readonly ShaderSet _shaders;
    private readonly QuadMesh _quad;
    private readonly SolidBatch _solids;
    private readonly Texture2D _video;
    private readonly HeatmapLayer _heatmap;
    private readonly TextRasterizer _captionFont, _statusFont, _monoFont;
    private readonly CachedText _caption, _status;
    private readonly HudLayer _hud;

    public OverlayLayout LastLayout { get; private set; }

    /// <summary>How often the HUD's numbers are re-rasterised (bars and graph follow every frame).</summary>
    public TimeSpan HudRefreshInterval { get => _hud.RefreshInterval; set => _hud.RefreshInterval = value; }

    /// <summary>The next frame shows the HUD's current numbers, whatever the refresh interval.</summary>
    public void RefreshHudNow() => _hud.RefreshNow();

    /// <summary>A long caption keeps only its last lines, so it scrolls as it streams.</summary>
    public int CaptionMaxLines { get; set; } = 3;

    public float HeatmapOpacity { get => _heatmap.Opacity; set => _heatmap.Opacity = value; }

    /// <summary>Skia rasterisations so far, per text block: evidence that the text cache works.</summary>
    internal (int Caption, int Status, int Hud) RasterCounts => (_caption.RasterCount, _status.RasterCount, _hud.RasterCount);

    /// <param name="shaderDirectory">The GLSL folder; null finds it with <see cref="ShaderDirectory.Locate"/>.</param>
    public OverlayRenderer(IGlContext context, string? shaderDirectory = null)
    {
        _ctx = context;
        _gl = context.Gl;
        _shaders = new ShaderSet(_gl, shaderDirectory ?? ShaderDirectory.Locate());
        _quad = new QuadMesh(_gl);
        _solids = new SolidBatch(_gl);
        _video = new Texture2D(_gl, smooth: true);
        _heatmap = new HeatmapLayer(_gl);
        _captionFont = new TextRasterizer(TextRasterizer.DejaVuSans, CaptionSize(context.Height));
        _statusFont = new TextRasterizer(TextRasterizer.DejaVuSans, 14);
        _monoFont = new TextRasterizer(TextRasterizer.DejaVuSansMono, 12);
        _caption = new CachedText(_gl, _captionFont);
        _status = new CachedText(_gl, _statusFont);
        _hud = new HudLayer(_gl, _monoFont);
    }

    private static float CaptionSize(int outH) => Math.Clamp(outH / 24f, 14f, 40f);

    public void Render(OverlayState state)
    {
        int w = _ctx.Width, h = _ctx.Height;
        _gl.BindFramebuffer(FramebufferTarget.Framebuffer, _ctx.Framebuffer);
        _gl.Viewport(0, 0, (uint)w, (uint)h);
        _gl.Disable(EnableCap.DepthTest);
        _gl.Disable(EnableCap.Blend);
        _gl.ClearColor(0, 0, 0, 1);
        _gl.Clear(ClearBufferMask.ColorBufferBit);

        RectF videoRect = DrawVideo(state.Video, w, h);

        // Everything after the video is translucent, in premultiplied alpha.
        _gl.Enable(EnableCap.Blend);
        _gl.BlendFunc(BlendingFactor.One, BlendingFactor.OneMinusSrcAlpha);

        if (state.ShowHeatmap && !videoRect.IsEmpty && _heatmap.Upload(state.KeptGrid, state.GridW, state.GridH))
        {
            Use(_shaders.Heatmap, w, h);
            _gl.Uniform1(_shaders.Heatmap.Uniform("uOpacity"), _heatmap.Opacity);
            _heatmap.Bind();
            _quad.Draw(videoRect);
        }

        // Flat quads first (bands, HUD panel, bars, graph), then all text on top.
        RectF captionRect = LayoutCaption(state.Caption, w, h, out RectF captionBand);
        RectF statusRect = LayoutStatus(state.Status, w, out RectF statusBand);
        RectF hudPanel = state.ShowHud && state.Hud is not null ? _hud.Layout(state.Hud, w, h, _solids) : RectF.Empty;
        Use(_shaders.Solid, w, h);
        _solids.Flush();

        Use(_shaders.Overlay, w, h);
        _gl.Uniform1(_shaders.Overlay.Uniform("uOpacity"), 1f);
        if (!captionRect.IsEmpty) { _caption.Bind(); _quad.Draw(captionRect); }
        if (!statusRect.IsEmpty) { _status.Bind(); _quad.Draw(statusRect); }
        if (!hudPanel.IsEmpty && _hud.HasText) { _hud.BindText(); _quad.Draw(_hud.TextRect); }

        LastLayout = new OverlayLayout(videoRect, captionBand, hudPanel, statusBand);
    }

    private RectF DrawVideo(Mat? video, int w, int h)
    {
        if (video is null || video.Empty()) return RectF.Empty;
        (PixelFormat format, int bpp) = video.Type() == MatType.CV_8UC3 ? (PixelFormat.Bgr, 3)
            : video.Type() == MatType.CV_8UC4 ? (PixelFormat.Bgra, 4)
            : throw new ArgumentException($"video frame must be BGR 8UC3 or BGRA 8UC4, not {video.Type()}");
        // Step is a whole number of pixels even for an ROI, so GL can read the rows in place.
        _video.Upload(video.Width, video.Height, InternalFormat.Rgb8, format, PixelType.UnsignedByte,
            video.DataPointer, (int)(video.Step() / bpp), bpp);
        RectF rect = Letterbox.Fit(video.Width, video.Height, w, h);
        Use(_shaders.Video, w, h);
        _video.Bind();
        _quad.Draw(rect);
        return rect;
    }

    private RectF LayoutCaption(string caption, int w, int h, out RectF band)
    {
        band = RectF.Empty;
        _caption.Set(caption ?? "", w - 2 * Margin, CaptionMaxLines, SKColors.White);
        if (_caption.IsEmpty) return RectF.Empty;
        band = new RectF(0, h - _caption.Height - 2 * Margin, w, _caption.Height + 2 * Margin);
        _solids.Add(band, CaptionBand);
        return new RectF(Margin, band.Y + Margin, _caption.Width, _caption.Height);
    }

    private RectF LayoutStatus(string? status, int w, out RectF band)
    {
        band = RectF.Empty;
        _status.Set(status ?? "", w / 2, 1, StatusText);
        if (_status.IsEmpty) return RectF.Empty;
        var text = new RectF(w - Margin - _status.Width, Margin, _status.Width, _status.Height);
        band = text;
        _solids.Add(band, StatusBand);
        return text;
    }

    private void Use(ShaderProgram program, int w, int h)
    {
        program.Use();
        _gl.Uniform2(program.Uniform("uViewport"), (float)w, h);
        int tex = program.Uniform("uTex");
        if (tex >= 0) _gl.Uniform1(tex, 0);
        int grid = program.Uniform("uGrid");
        if (grid >= 0) _gl.Uniform1(grid, 0);
    }

    /// <summary>The last rendered frame as a new BGR 8UC3 Mat, top row first.</summary>
    public Mat ReadPixels()
    {
        var mat = new Mat();
        ReadPixels(mat);
        return mat;
    }

    /// <summary>Reads into <paramref name="dst"/>, reallocating it only when the size changes.</summary>
    public void ReadPixels(Mat dst)
    {
        int w = _ctx.Width, h = _ctx.Height;
        dst.Create(h, w, MatType.CV_8UC3);
        _gl.BindFramebuffer(FramebufferTarget.ReadFramebuffer, _ctx.Framebuffer);
        // A window reads the back buffer, i.e. the frame just drawn and not yet swapped.
        _gl.ReadBuffer(_ctx.Framebuffer == 0 ? ReadBufferMode.Back : ReadBufferMode.ColorAttachment0);
        _gl.PixelStore(PixelStoreParameter.PackAlignment, 1);
        _gl.PixelStore(PixelStoreParameter.PackRowLength, (int)(dst.Step() / 3));
        _gl.ReadPixels(0, 0, (uint)w, (uint)h, PixelFormat.Bgr, PixelType.UnsignedByte, (void*)dst.DataPointer);
        _gl.PixelStore(PixelStoreParameter.PackRowLength, 0);
        // GL's rows run bottom-up; images run top-down.
        Cv2.Flip(dst, dst, FlipMode.X);
    }

    public void SavePng(string path)
    {
        using Mat frame = ReadPixels();
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        if (!Cv2.ImWrite(path, frame)) throw new IOException($"could not write PNG {path}");
    }

    public void Dispose()
    {
        _hud.Dispose();
        _caption.Dispose();
        _status.Dispose();
        _captionFont.Dispose();
        _statusFont.Dispose();
        _monoFont.Dispose();
        _heatmap.Dispose();
        _video.Dispose();
        _solids.Dispose();
        _quad.Dispose();
        _shaders.Dispose();
    }
}
