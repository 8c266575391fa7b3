using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class ScorerByAttributeTests
{
    [Fact]
    public void WrongShapeEarnsPartialCredit_RightCaptionScoresOne()
    {
        const string truth = "a purple triangle at top moving left and a red square at bottom staying still .";
        Assert.Equal(1.0, AttributeScorer.ScoreByAttribute(truth, truth).F1);
        var wrongShape = AttributeScorer.ScoreByAttribute("a purple circle at top moving left and a red square at bottom staying still .", truth);
        Assert.Equal(7, wrongShape.TruePositives);   // 8 facts, only the top object's shape is wrong
        Assert.Equal(1, wrongShape.FalsePositives);
        Assert.Equal(0.0, AttributeScorer.Score("a purple circle at top .", "a purple triangle at top .").F1);
        Assert.Equal(0.0, AttributeScorer.ScoreByAttribute("a purple triangle at bottom .", "a purple triangle at top .").F1);
    }

    [Fact]
    public void EachAttributeIsScoredOnItsOwn()
    {
        const string truth = "a purple triangle at top moving left and a red square at bottom staying still .";
        var each = AttributeScorer.ScoreEachAttribute("a purple circle at top moving right and a red square at bottom staying still .", truth);
        Assert.Equal(1.0, each["at"].F1);
        Assert.Equal(1.0, each["colour"].F1);
        Assert.Equal(0.5, each["shape"].F1);   // one of two shapes right
        Assert.Equal(0.5, each["motion"].F1);
        Assert.Equal(AttributeScorer.ScoreByAttribute(truth, truth).TruePositives, AttributeScorer.ScoreEachAttribute(truth, truth).Values.Sum(v => v.TruePositives));
    }
}
