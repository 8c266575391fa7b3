using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class QuestionTests
{
    [Fact]
    public void AnswersAgreeWithTheSceneGraph()
    {
        var rng = new Random(5);
        var kinds = new HashSet<string>();
        for (int seed = 0; seed < 500; seed++)
        {
            var scene = Scene.FromSeed(seed);
            var (q, a) = QuestionGenerator.Sample(scene, rng);
            var w = q.Split(' ');
            kinds.Add(string.Join(' ', w.Take(2)));
            if (q.StartsWith("how many objects"))
                Assert.Equal(QuestionGenerator.Count(scene.Objects.Count), a);
            else if (q.StartsWith("how many"))
                Assert.Equal(QuestionGenerator.Count(scene.Objects.Count(o => o.Shape.Plural() == w[2])), a);
            else if (q.StartsWith("what colour is the"))
                Assert.Equal(scene.Objects.Single(o => o.Shape.Word() == w[4]).Color.Word(), a);
            else if (q.StartsWith("what shape is the"))
                Assert.Equal(scene.Objects.Single(o => o.Color.Word() == w[4]).Shape.Word(), a);
            else if (q.StartsWith("where is the"))
                Assert.Equal(scene.Objects.Single(o => o.Name == $"{w[3]} {w[4]}").Position, a);
            else if (q.StartsWith("which way"))
                Assert.Equal(scene.Objects.Single(o => o.Name == $"{w[4]} {w[5]}").Motion.Word(), a);
            else if (q.StartsWith("is there"))
                Assert.Equal(scene.Objects.Any(o => o.Name == $"{w[3]} {w[4]}") ? "yes" : "no", a);
            else if (q.StartsWith("what is at"))
            {
                var cell = Array.IndexOf(Grid.Names, string.Join(' ', w[3..^1]));
                var here = scene.Objects.SingleOrDefault(o => o.Cell == cell);
                Assert.Equal(here == null ? "nothing" : $"{here.Color.Article()} {here.Name}", a);
            }
            else Assert.Fail("unexpected question: " + q);
        }
        Assert.Equal(7, kinds.Count); // every question type came up ("how many" covers two)
    }

    [Fact]
    public void AbsentShapesCountAsZeroAndStillImagesSkipMotion()
    {
        var scene = new Scene([new SceneObject(Shape.Star, DemoColor.Cyan, true, 0.5, 0.5, Motion.Left)], Backdrop.Plain);
        var all = QuestionGenerator.All(scene, new Random(1)).SelectMany(g => g).ToList();
        Assert.Contains(new QaPair("how many circles are there ?", "zero"), all);
        Assert.Contains(new QaPair("how many stars are there ?", "one"), all);
        Assert.Contains(new QaPair("which way does the cyan star move ?", "left"), all);
        var still = QuestionGenerator.All(scene, new Random(1), withMotion: false).SelectMany(g => g);
        Assert.DoesNotContain(still, p => p.Question.StartsWith("which way"));
    }

    [Fact]
    public void AmbiguousReferencesAreNeverAsked()
    {
        var scene = new Scene(
        [
            new SceneObject(Shape.Star, DemoColor.Red, true, 0.15, 0.15, Motion.Left),
            new SceneObject(Shape.Star, DemoColor.Blue, true, 0.5, 0.5, Motion.Left),
        ], Backdrop.Plain);
        var all = QuestionGenerator.All(scene, new Random(1)).SelectMany(g => g).ToList();
        Assert.DoesNotContain(all, p => p.Question == "what colour is the star ?");
        Assert.Contains(new QaPair("how many stars are there ?", "two"), all);
        Assert.Contains(new QaPair("what shape is the red object ?", "star"), all);
    }

    [Fact]
    public void QaScorerIsExactMatchUpToCaseAndSpacing()
    {
        Assert.True(QaScorer.Correct(" Top  Left .", "top left"));
        Assert.False(QaScorer.Correct("top", "top left"));
        Assert.False(QaScorer.Correct(null, "red"));
        Assert.Equal(0.5, QaScorer.Accuracy([("red", "red"), ("blue", "red")]));
    }
}
