using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class QuestionTests
{
    [Theory]
    [InlineData(QuestionMix.Uniform)]
    [InlineData(QuestionMix.Focused)]
    public void AnswersAgreeWithTheSceneGraph(QuestionMix mix)
    {
        var rng = new Random(5);
        var kinds = new HashSet<string>();
        for (int seed = 0; seed < 500; seed++)
        {
            var scene = Scene.FromSeed(seed);
            var (q, a) = QuestionGenerator.Sample(scene, rng, mix: mix);
            kinds.Add(QuestionGenerator.Kind(q));
            AssertAgrees(scene, q, a);
        }
        Assert.Equal(7, kinds.Count); // every question type came up ("how many" covers two)
    }

    [Fact]
    public void TheFocusedMixAsksMoreBindingQuestionsWithHardNegatives()
    {
        int Count(QuestionMix mix, Func<Scene, QaPair, bool> pick)
        {
            var rng = new Random(9);
            return Enumerable.Range(0, 3000).Count(seed =>
            {
                var scene = Scene.FromSeed(seed);
                return pick(scene, QuestionGenerator.Sample(scene, rng, mix: mix));
            });
        }
        bool Colour(Scene _, QaPair p) => p.Question.StartsWith("what colour");
        // A "no" that shares a colour or a shape with an object present: only binding tells it from a "yes".
        static bool HardNo(Scene s, QaPair p)
        {
            if (!p.Question.StartsWith("is there") || p.Answer != "no") return false;
            var w = p.Question.Split(' ');
            return s.Objects.Any(o => o.Color.Word() == w[3] || o.Shape.Word() == w[4]);
        }
        int uniformColour = Count(QuestionMix.Uniform, Colour), focusedColour = Count(QuestionMix.Focused, Colour);
        Assert.True(focusedColour > 1.5 * uniformColour, $"colour questions: focused {focusedColour}, uniform {uniformColour}");
        int uniformHard = Count(QuestionMix.Uniform, HardNo), focusedHard = Count(QuestionMix.Focused, HardNo);
        Assert.True(focusedHard > 1.5 * uniformHard, $"hard negatives: focused {focusedHard}, uniform {uniformHard}");
    }

    static void AssertAgrees(Scene scene, string q, string a)
    {
        var w = q.Split(' ');
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
