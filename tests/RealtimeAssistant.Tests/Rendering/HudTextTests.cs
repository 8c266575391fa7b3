using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

/// <summary>The HUD's level line: a governor rung's name, broken where it reads well.</summary>
public class HudTextTests
{
    [Theory]
    [InlineData("exit 6", "exit 6")]
    [InlineData("k=60, max 100352 px", "k=60, max 100352 px")]
    // A pixel rung of a schedule that spares the newest frame: its bound goes to a second line, not cut off.
    [InlineData("newest spared, older exit 7, max 100352 px", "newest spared, older exit 7\nmax 100352 px")]
    // Two lines at most; what is still too long is cut at the width.
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, b, c", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nb, c")]
    public void ALevelsName_BreaksAfterACommaToFitTheWidth(string level, string expected) =>
        Assert.Equal(expected, HudLayer.LevelLines(level, 34));
}
