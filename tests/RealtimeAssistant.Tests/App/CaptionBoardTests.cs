using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Tests.App;

public class CaptionBoardTests
{
    static readonly UpdateReport Report = new() { VisualTokens = 16, KeptTokens = 8, GridW = 4, GridH = 4 };

    [Fact]
    public void PreviousCaptionStaysUntilTheFirstWordOfTheNext_ThenWordsStreamIn()
    {
        var board = new CaptionBoard();
        board.Begin(0, TimeSpan.Zero, 1);
        board.Append("a");
        board.Append(" red circle");
        Assert.True(board.View.Streaming);
        Assert.Equal("a red circle", board.View.Text);
        board.Complete("a red circle .", Report);
        Assert.Equal(1, board.View.Completed);
        Assert.False(board.View.Streaming);

        board.Begin(5, TimeSpan.FromSeconds(1), 2);
        Assert.Equal("a red circle .", board.View.Text);   // nothing new yet: the old caption stays
        var before = board.View.Version;
        board.Append("two");
        Assert.Equal("two", board.View.Text);
        Assert.True(board.View.Version > before);
        Assert.Equal(5, board.View.FrameIndex);
    }

    [Fact]
    public void AnAnswerIsLabelledAndHeldForAWhile()
    {
        var board = new CaptionBoard { AnswerHold = TimeSpan.FromSeconds(30) };
        board.Begin(3, TimeSpan.Zero, 1, "how many squares ?");
        Assert.StartsWith("Q: how many squares ?", board.View.Text);
        board.Append("two");
        board.Complete("two", Report);
        Assert.Equal("Q: how many squares ?  A: two", board.View.Text);
        Assert.True(board.HoldingAnswer);
        board.Begin(9, TimeSpan.Zero, 2);
        board.Append("a");
        Assert.Equal("a", board.View.Text);
        Assert.Null(board.View.Question);
    }
}
