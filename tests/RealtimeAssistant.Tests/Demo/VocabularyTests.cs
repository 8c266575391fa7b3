using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class VocabularyTests
{
    [Fact]
    public void EveryProducedWordIsInTheVocabulary()
    {
        var texts = new List<string> { DemoVocabulary.CaptionPrompt, DemoVocabulary.StreamingPrompt, CaptionGrammar.Empty };
        var rng = new Random(9);
        for (int seed = 0; seed < 300; seed++)
        {
            var scene = Scene.FromSeed(seed);
            texts.Add(CaptionGrammar.Canonical(scene));
            texts.Add(CaptionGrammar.Caption(scene, rng));
            texts.AddRange(QuestionGenerator.All(scene, rng).SelectMany(g => g).SelectMany(p => new[] { p.Question, p.Answer }));
        }
        for (int seed = 0; seed < 10; seed++)
        {
            var clip = ClipGenerator.Generate(seed, 20, 15);
            texts.AddRange(clip.Events.Select(e => e.Sentence));
            texts.Add(clip.CaptionFor(0, clip.FrameCount - 1));
        }
        var unknown = texts.SelectMany(t => t.Split(' ')).Where(w => !DemoVocabulary.Contains(w)).Distinct().ToList();
        Assert.Empty(unknown);
    }

    [Fact]
    public void VocabularyIsSmallAndHasNoDuplicates()
    {
        Assert.Equal(DemoVocabulary.Words.Count, DemoVocabulary.Words.Distinct().Count());
        Assert.InRange(DemoVocabulary.Size, 60, 150);
        Assert.Contains("four", DemoVocabulary.Words);
        Assert.Contains(DemoVocabulary.FrameMarker, DemoVocabulary.Words);
    }
}
