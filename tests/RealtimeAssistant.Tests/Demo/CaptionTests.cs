using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class CaptionTests
{
    private static readonly SceneObject RedCircle = new(Shape.Circle, DemoColor.Red, true, 0.15, 0.15, Motion.Right);
    private static readonly SceneObject BlueSquare = new(Shape.Square, DemoColor.Blue, false, 0.85, 0.85, Motion.Still);
    private static readonly Scene Two = new([BlueSquare, RedCircle], Backdrop.Plain);

    [Fact]
    public void CanonicalCaptionReadsInGridOrder() =>
        Assert.Equal("a red circle at top left moving right and a blue square at bottom right staying still .",
            CaptionGrammar.Canonical(Two));

    [Fact]
    public void CanonicalWithoutMotionDropsMotionWords() =>
        Assert.Equal("a red circle at top left and a blue square at bottom right .", CaptionGrammar.Canonical(Two, withMotion: false));

    [Fact]
    public void CaptionsVaryButAreWellFormed()
    {
        var rng = new Random(3);
        var seen = new HashSet<string>();
        for (int seed = 0; seed < 300; seed++)
        {
            string c = CaptionGrammar.Caption(Scene.FromSeed(seed), rng);
            seen.Add(c);
            Assert.Equal(c.ToLowerInvariant(), c);
            Assert.DoesNotContain("  ", c);
            Assert.EndsWith(" .", c);
            Assert.All(c.Split(' '), w => Assert.True(w is "." or "," || w.All(char.IsLetter), w));
        }
        // Variants of one scene differ (opening, order, wording).
        var variants = Enumerable.Range(0, 40).Select(i => CaptionGrammar.Caption(Two, new Random(i))).ToHashSet();
        Assert.True(variants.Count > 10, $"{variants.Count} variants");
        Assert.Contains(variants, v => v.StartsWith("i see ") || v.StartsWith("there is ") || v.StartsWith("i can see "));
    }

    [Fact]
    public void CaptionsOfEveryVariantScorePerfectlyAgainstTheirScene()
    {
        var rng = new Random(11);
        var total = new FactScore();
        for (int seed = 0; seed < 400; seed++)
        {
            var scene = Scene.FromSeed(seed);
            foreach (bool motion in new[] { true, false })
            {
                Assert.Equal(1.0, AttributeScorer.Score(CaptionGrammar.Canonical(scene, motion), scene, motion).F1);
                var varied = CaptionGrammar.Caption(scene, rng, motion);
                var score = AttributeScorer.Score(varied, scene, motion);
                Assert.True(score.F1 == 1.0, $"{varied} -> {score}");
                total += score;
            }
        }
        Assert.Equal(0, total.FalsePositives + total.FalseNegatives);
    }

    [Fact]
    public void ParserReadsFactsFromCaptions()
    {
        var facts = CaptionParser.Facts("i see a blue square getting smaller in the middle , an orange ring heading up at bottom left .");
        Assert.Equal(
            ["obj:blue square", "motion:blue square=shrinking", "pos:blue square=centre",
             "obj:orange ring", "motion:orange ring=up", "pos:orange ring=bottom left"], facts);
    }

    [Fact]
    public void WrongColourPositionOrMotionScoresBelowOne()
    {
        Assert.True(AttributeScorer.Score("a green circle at top left moving right and a blue square at bottom right staying still .", Two).F1 < 1);
        Assert.True(AttributeScorer.Score("a red circle at top right moving right and a blue square at bottom right staying still .", Two).F1 < 1);
        Assert.True(AttributeScorer.Score("a red circle at top left moving up and a blue square at bottom right staying still .", Two).F1 < 1);
        var missing = AttributeScorer.Score("a red circle at top left moving right .", Two);
        Assert.Equal(1.0, missing.Precision);
        Assert.Equal(0.5, missing.Recall);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("the the the . , ? ! zebra 42 top left moving")]
    [InlineData("red red circle circle circle getting")]
    [InlineData("a red")]
    public void GarbageNeverThrows(string? caption)
    {
        var s = AttributeScorer.Score(caption, Two);
        Assert.InRange(s.F1, 0, 1);
        Assert.True(s.F1 < 1);
    }

    [Fact]
    public void ScoresAggregateByCountsAndCompareCaptions()
    {
        var a = AttributeScorer.Score("a red circle at top left moving right .", Two);
        var b = AttributeScorer.Score("a green star at centre still .", Two);
        var sum = a + b;
        Assert.Equal(a.TruePositives + b.TruePositives, sum.TruePositives);
        Assert.Equal(a.FalseNegatives + b.FalseNegatives, sum.FalseNegatives);
        Assert.Equal(1.0, AttributeScorer.Score("there is a red circle going right in the top left .", "a red circle at top left moving right .").F1);
        Assert.Equal(1.0, new FactScore(0, 0, 0).F1);
    }
}
