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

    /// <summary>
    /// The budget line says how well the budget is held. Live pacing never skips a frame (a newer
    /// frame replaces one not read, counted as dropped), so it shows the reads over budget and no
    /// "skipped" that could only read 0; file pacing, which skips what no level fits, shows both.
    /// </summary>
    [Fact]
    public void TheBudgetLine_CountsReadsOverBudget_AndSkippedFramesOnlyWherePacingSkips()
    {
        var live = new HudStats { ReadBudgetMs = 33.3, Reads = 120, ReadsOverBudget = 7, SkippedFrames = 0, SkipsFrames = false };
        Assert.Equal("over budget 7 of 120 reads", HudLayer.BudgetLine(live));
        var file = live with { SkipsFrames = true, SkippedFrames = 4 };
        Assert.Equal("over budget 7 of 120 reads  skipped 4", HudLayer.BudgetLine(file));
        Assert.Null(HudLayer.BudgetLine(live with { ReadBudgetMs = null })); // no governor: nothing to hold
    }
}
