using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

public sealed class LetterboxTests
{
    [Theory]
    [InlineData(640, 480, 640, 480, 0, 0, 640, 480)]     // same size
    [InlineData(320, 240, 640, 480, 0, 0, 640, 480)]     // same aspect, scaled up
    [InlineData(1920, 1080, 640, 480, 0, 60, 640, 360)]  // 16:9 into 4:3: bars above and below
    [InlineData(480, 640, 640, 480, 140, 0, 360, 480)]   // portrait: bars left and right
    [InlineData(548, 342, 640, 480, 0, 40, 640, 399)]    // odd sizes round to whole pixels
    public void Fits_centred_keeping_aspect(int sw, int sh, int dw, int dh, float x, float y, float w, float h) =>
        Assert.Equal(new RectF(x, y, w, h), Letterbox.Fit(sw, sh, dw, dh));

    [Fact]
    public void Empty_source_gives_an_empty_rectangle() =>
        Assert.True(Letterbox.Fit(0, 0, 640, 480).IsEmpty);
}
