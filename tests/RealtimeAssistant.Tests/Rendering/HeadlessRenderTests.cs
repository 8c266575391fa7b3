using OpenCvSharp;
using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

[Collection("GL")]
public sealed class HeadlessRenderTests(ITestOutputHelper output)
{
    private const int W = 640, H = 480;
    private const string Caption = "A person is holding a red mug next to a laptop on a wooden desk";

    [Fact]
    public void Context_is_a_core_profile_of_at_least_3_3()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        output.WriteLine(ctx.Description);
        Assert.False(ctx.IsWindow);
        Assert.NotEqual(0u, ctx.Framebuffer);
        Assert.Equal((W, H), (ctx.Width, ctx.Height));
        ctx.Gl.GetInteger(Silk.NET.OpenGL.GetPName.MajorVersion, out int major);
        ctx.Gl.GetInteger(Silk.NET.OpenGL.GetPName.MinorVersion, out int minor);
        Assert.True(major * 10 + minor >= 33, $"got OpenGL {major}.{minor}");
    }

    [Fact]
    public void Caption_and_hud_are_drawn_and_the_video_elsewhere_is_untouched()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);

        renderer.Render(new OverlayState { Video = video });
        using Mat plain = renderer.ReadPixels();

        renderer.Render(new OverlayState { Video = video, Caption = Caption, ShowHud = true, Hud = GlTestSupport.SampleHud() });
        OverlayLayout layout = renderer.LastLayout;
        using Mat full = renderer.ReadPixels();
        string png = GlTestSupport.TempPng("overlay");
        renderer.SavePng(png);
        output.WriteLine($"saved {png}; layout {layout}");

        // Same aspect as the output: the video fills it exactly and, untouched, matches the input
        // pixel for pixel (this also proves ReadPixels' vertical flip).
        Assert.Equal(new RectF(0, 0, W, H), layout.Video);
        Assert.True(GlTestSupport.MeanAbsDiff(plain, video, new Rect(0, 0, W, H)) < 1.0);

        // The caption band sits at the bottom, holds white text, and differs from the plain frame.
        Rect band = GlTestSupport.ToRect(layout.CaptionBand);
        Assert.Equal(H, band.Bottom);
        Assert.True(band.Height > 20, $"band {band}");
        int white = GlTestSupport.CountWhiteish(full, band);
        Assert.True(white > 300, $"only {white} white pixels in the caption band");
        Assert.True(GlTestSupport.CountWhiteish(plain, band) < white / 10);
        Assert.True(GlTestSupport.CountDiffering(full, plain, band) > band.Width * band.Height / 2,
            "the translucent band should darken most of its area");

        // The HUD panel, top left, is drawn over the video.
        Rect hud = GlTestSupport.ToRect(layout.Hud);
        Assert.True(hud.Width > 150 && hud.Height > 100, $"hud {hud}");
        Assert.True(GlTestSupport.CountDiffering(full, plain, hud) > hud.Width * hud.Height / 2);
        Assert.True(GlTestSupport.CountWhiteish(full, hud) > 300, "HUD text should be visible");

        // Away from both, the video is exactly as it was.
        var clear = new Rect(hud.Right + 10, hud.Bottom + 10, W - hud.Right - 20, band.Top - hud.Bottom - 20);
        Assert.True(clear.Width > 50 && clear.Height > 50, $"clear region {clear}");
        Assert.True(GlTestSupport.MeanAbsDiff(full, video, clear) < 1.0);
    }

    [Fact]
    public void An_empty_caption_draws_no_band_and_a_longer_caption_grows_it()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);

        renderer.Render(new OverlayState { Video = video, Caption = "" });
        Assert.True(renderer.LastLayout.CaptionBand.IsEmpty);

        renderer.Render(new OverlayState { Video = video, Caption = "A person" });
        float oneLine = renderer.LastLayout.CaptionBand.Height;

        // Streaming: the caption grows word by word until it wraps onto more lines.
        renderer.Render(new OverlayState { Video = video, Caption = string.Join(' ', Enumerable.Repeat(Caption, 2)) });
        float wrapped = renderer.LastLayout.CaptionBand.Height;
        Assert.True(wrapped > oneLine * 1.5, $"one line {oneLine}px, wrapped {wrapped}px");

        // A very long caption is capped at CaptionMaxLines, scrolling instead of covering the video.
        renderer.Render(new OverlayState { Video = video, Caption = string.Join(' ', Enumerable.Repeat(Caption, 20)) });
        float capped = renderer.LastLayout.CaptionBand.Height;
        Assert.True(capped < H / 3f, $"capped band {capped}px");
    }

    [Fact]
    public void Unchanged_caption_is_not_rasterised_again()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);

        renderer.Render(new OverlayState { Video = video, Caption = "A person" });
        int after1 = renderer.RasterCounts.Caption;
        for (int i = 0; i < 5; i++) renderer.Render(new OverlayState { Video = video, Caption = "A person" });
        Assert.Equal(after1, renderer.RasterCounts.Caption);

        renderer.Render(new OverlayState { Video = video, Caption = "A person is" });
        Assert.Equal(after1 + 1, renderer.RasterCounts.Caption);
    }

    [Fact]
    public void Hud_numbers_are_rasterised_at_most_once_per_refresh_interval()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx) { HudRefreshInterval = TimeSpan.FromHours(1) };
        HudStats hud = GlTestSupport.SampleHud();
        for (int i = 0; i < 10; i++)
            renderer.Render(new OverlayState { ShowHud = true, Hud = hud with { Fps = 20 + i } });
        Assert.Equal(1, renderer.RasterCounts.Hud);

        renderer.RefreshHudNow();
        renderer.Render(new OverlayState { ShowHud = true, Hud = hud with { Fps = 98 } });
        Assert.Equal(2, renderer.RasterCounts.Hud);

        renderer.HudRefreshInterval = TimeSpan.Zero;
        renderer.Render(new OverlayState { ShowHud = true, Hud = hud with { Fps = 99 } });
        Assert.Equal(3, renderer.RasterCounts.Hud);
    }

    [Fact]
    public void Hidden_hud_leaves_no_trace()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);
        renderer.Render(new OverlayState { Video = video, ShowHud = false, Hud = GlTestSupport.SampleHud() });
        Assert.True(renderer.LastLayout.Hud.IsEmpty);
        using Mat frame = renderer.ReadPixels();
        Assert.True(GlTestSupport.MeanAbsDiff(frame, video, new Rect(0, 0, W, H)) < 1.0);
    }

    [Fact]
    public void Status_line_is_drawn_top_right()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat video = GlTestSupport.Pattern(W, H);
        renderer.Render(new OverlayState { Video = video });
        using Mat plain = renderer.ReadPixels();
        renderer.Render(new OverlayState { Video = video, Status = "camera lost – retrying in 2s" });
        using Mat withStatus = renderer.ReadPixels();

        Rect status = GlTestSupport.ToRect(renderer.LastLayout.Status);
        Assert.True(status.X > W / 2 && status.Y < 40, $"status at {status}");
        Assert.True(GlTestSupport.CountDiffering(withStatus, plain, status) > status.Width * status.Height / 3);
    }

    [Fact]
    public void Other_aspect_ratios_are_letterboxed_with_black_bars()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        using Mat wide = GlTestSupport.Pattern(320, 120);   // 8:3 into 4:3: bars above and below
        renderer.Render(new OverlayState { Video = wide });
        using Mat frame = renderer.ReadPixels();

        RectF v = renderer.LastLayout.Video;
        Assert.Equal(new RectF(0, 120, 640, 240), v);
        Assert.Equal(0, Cv2.CountNonZero(new Mat(frame, new Rect(0, 0, W, 118)).CvtColor(ColorConversionCodes.BGR2GRAY)));
        Assert.Equal(0, Cv2.CountNonZero(new Mat(frame, new Rect(0, 362, W, 118)).CvtColor(ColorConversionCodes.BGR2GRAY)));

        // Upscaled 2×: compare against OpenCV's own bilinear resize, away from the edges.
        using var expected = new Mat();
        Cv2.Resize(wide, expected, new Size(640, 240), 0, 0, InterpolationFlags.Linear);
        using var shown = new Mat(frame, GlTestSupport.ToRect(v));
        Assert.True(GlTestSupport.MeanAbsDiff(shown, expected, new Rect(8, 8, 624, 224)) < 6.0);
    }

    [Fact]
    public void Odd_width_and_roi_frames_upload_correctly()
    {
        using var ctx = GlTestSupport.Headless(W, H);
        using var renderer = new OverlayRenderer(ctx);
        // 3-byte pixels and an odd width: rows are not 4-byte aligned. The ROI's stride exceeds its width.
        using Mat big = GlTestSupport.Pattern(1001, 800);
        using var roi = new Mat(big, new Rect(17, 30, 640, 480));
        renderer.Render(new OverlayState { Video = roi });
        using Mat frame = renderer.ReadPixels();
        Assert.True(GlTestSupport.MeanAbsDiff(frame, roi.Clone(), new Rect(0, 0, W, H)) < 1.0);
    }

    [Fact]
    public void No_video_draws_black()
    {
        using var ctx = GlTestSupport.Headless(320, 240);
        using var renderer = new OverlayRenderer(ctx);
        renderer.Render(new OverlayState());
        using Mat frame = renderer.ReadPixels();
        Assert.Equal(new Size(320, 240), frame.Size());
        Assert.Equal(0, Cv2.CountNonZero(frame.CvtColor(ColorConversionCodes.BGR2GRAY)));
    }

    [Fact]
    public void Wrong_pixel_type_is_rejected_clearly()
    {
        using var ctx = GlTestSupport.Headless(64, 64);
        using var renderer = new OverlayRenderer(ctx);
        using var gray = new Mat(10, 10, MatType.CV_8UC1, Scalar.All(0));
        var e = Assert.Throws<ArgumentException>(() => renderer.Render(new OverlayState { Video = gray }));
        Assert.Contains("8UC3", e.Message);
    }
}
