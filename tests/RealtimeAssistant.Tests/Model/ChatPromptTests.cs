using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Prompts in the checkpoint's own chat template, end to end: what `ra caption --prompt TEXT`
/// builds from a question equals the prompt transformers' processor rendered for the same
/// question (Fixtures/hf), and captioning through it gives transformers' greedy tokens.
/// </summary>
public class ChatPromptTests(ITestOutputHelper log)
{
    static string Root => RealtimeAssistant.Cli.Cli.FindRepoPath("tests/RealtimeAssistant.Tests/Fixtures/hf")
        ?? throw new InvalidOperationException("Fixtures/hf not found");

    static readonly string[] Questions = ["Describe the image.", "Describe this image in one word."];

    public static TheoryData<string> Families => new() { "qwen2_vl", "qwen2_5_vl", "smolvlm", "idefics3", "llava_clip", "llava_siglip", "llava_onevision" };

    [Theory]
    [MemberData(nameof(Families))]
    public void AQuestionBecomesTheTemplatesPrompt_AndCaptionsAsTransformersDid(string family)
    {
        var dir = Path.Combine(Root, family);
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")))!;
        using var engine = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        var captioner = new Captioner(engine);
        int checkedCases = 0;
        foreach (var c in expected["cases"]!.AsArray())
        {
            var images = c!["images"]?.AsArray().Select(i => (string)i!).ToList() ?? [];
            if (images.Count == 0 || (c["video_frames"] is JsonArray v && v.Count > 0)) continue;
            var prompt = (string)c["prompt_text"]!;
            var question = Questions.FirstOrDefault(q => engine.Prompt(q, images.Count) == prompt);
            Assert.True(question is not null, $"{family} {c["name"]}: no question renders to transformers' prompt {prompt}; ours: {engine.Prompt(Questions[0], images.Count)}");
            Assert.Equal(prompt, captioner.PromptText(question, images.Count));
            var mats = images.Select(i => Cv2.ImRead(Path.Combine(dir, "..", i), ImreadModes.Color)).ToList();
            try
            {
                var greedy = c["greedy_tokens"]!.AsArray().Select(t => (int)t!).ToArray();
                var options = new GenerationOptions { MaxNewTokens = greedy.Length, StopTokens = Array.Empty<int>() };
                var ours = captioner.Caption(mats, question, options, new CaptionTimings()).Where(e => e.Id >= 0).Select(e => e.Id).ToArray();
                log.WriteLine($"{family} {c["name"]}: {string.Join(",", ours)}");
                Assert.Equal(greedy, ours);
            }
            finally { foreach (var m in mats) m.Dispose(); }
            checkedCases++;
        }
        Assert.True(checkedCases > 0, $"{family}: no image case in the fixture");
    }

    [Fact]
    public void TheCheckpointsEndOfTurnTokensStopGeneration()
    {
        // generation_config.json's eos ids (a list for Qwen2-VL) join the tokenizer's end-of-sequence token.
        var dir = Path.Combine(Root, "qwen2_vl");
        using var engine = Engine.Load(dir, new EngineOptions { Device = "cpu" });
        var generation = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "generation_config.json")))!["eos_token_id"]!;
        var ids = generation is JsonArray a ? a.Select(x => (int)x!).ToArray() : new[] { (int)generation };
        Assert.All(ids, id => Assert.Contains(id, engine.StopTokens));
    }
}
