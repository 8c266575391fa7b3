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

    /// <summary>A bar turns red against its own stage's budget: the render against a display frame, the model's stages against the frame budget, capture (the wait for the source) never.</summary>
    [Fact]
    public void EachStage_IsHeldToItsOwnBudget()
    {
        var hud = new HudStats { BudgetMs = 16.7, ReadBudgetMs = 333.3 };
        Assert.Equal(16.7, hud.StageBudgetMs("render"));
        Assert.Equal(333.3, hud.StageBudgetMs("prefill"));
        Assert.Equal(333.3, hud.StageBudgetMs("vision"));
        Assert.Null(hud.StageBudgetMs("capture"));
        Assert.Null((hud with { ReadBudgetMs = null }).StageBudgetMs("decode")); // no governor: no budget to be over
        // The frame graph: a frame paced at 60 fps jitters about 16.7 ms and is on time; one a refresh late is not.
        Assert.False(HudStats.IsLateFrame(17.4, 16.7));
        Assert.True(HudStats.IsLateFrame(33.3, 16.7));
    }
}
