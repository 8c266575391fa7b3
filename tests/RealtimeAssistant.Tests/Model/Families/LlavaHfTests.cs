using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model.Families;

/// <summary>
/// LLaVA (LlavaForConditionalGeneration) against transformers' own outputs on the llava_clip
/// (llava-1.5 layout: CLIP, CLS dropped, layer −2, LLaMA) and llava_siglip (llava-interleave
/// layout: SigLIP, last layer, Qwen2) fixtures.
/// </summary>
public class LlavaHfTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "llava_clip", "image_landscape" }, { "llava_clip", "image_portrait" },
        { "llava_siglip", "image_landscape" }, { "llava_siglip", "image_portrait" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FromHfPixels_FeaturesLogitsAndGreedyTokensMatchTransformers(string family, string caseName)
    {
        var fx = new HfFixture(family);
        var c = fx.Case(caseName);
        using var e = Engine.Load(fx.Dir); // every tensor read, none missing or unexpected
        var llava = (LlavaFamily)e.Model;
        using var _ = torch.inference_mode();

        var feats = llava.Model.EncodeImages(fx.Tensor(caseName, "pixel_values"))[0];
        var hfFeats = fx.Tensor(caseName, "merged_image_embeds");
        Assert.True(HfFixture.RelErr(feats, hfFeats) < 1e-5, $"image features: rel err {HfFixture.RelErr(feats, hfFeats)}");

        var ids = e.Tokenizer.Encode((string)c["prompt_text"]!);
        int n = (int)feats.shape[0];
        using var image = new EncodedImage
        {
            Features = feats, TokenIds = Enumerable.Repeat(llava.Config.ImageTokenIndex, n).ToArray(),
            FeatureSlots = Enumerable.Range(0, n).ToArray(),
        };
        var block = MultimodalPrompt.Build(ids, e.ImageMarkerId, new[] { image });
        Assert.Equal(HfFixture.Ints(c["input_ids"]!), block.Ids.Select(i => (int)i).ToArray());

        var logits = HfFixture.FullLogits(e.Language, block);
        var last = logits[^3..];
        var hfLast = fx.Tensor(caseName, "logits_last");
        Assert.True(HfFixture.RelErr(last, hfLast) < 1e-5, $"last logits: rel err {HfFixture.RelErr(last, hfLast)}");

        var (tokens, steps) = HfFixture.Greedy(e.Language, block, 8);
        HfFixture.AssertGreedy(HfFixture.Ints(c["greedy_tokens"]!), HfFixture.Doubles(c["greedy_top2_margins"]!), tokens);
        var hfSteps = fx.Tensor(caseName, "step_logits");
        Assert.True(HfFixture.RelErr(steps, hfSteps) < 1e-5, $"step logits: rel err {HfFixture.RelErr(steps, hfSteps)}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Preprocessing_MatchesTheHfProcessorsPixels(string family, string caseName)
    {
        var fx = new HfFixture(family);
        var c = fx.Case(caseName);
        var cfg = LlavaConfig.Load(fx.Dir);
        using var pre = new ImagePreprocessor(PreprocessorConfig.Load(fx.Dir, cfg.Vision), torch.CPU, ScalarType.Float32);
        using var bgr = HfFixture.Image((string)c["images"]![0]!);
        using var ours = pre.Process(bgr);
        using var hf = fx.Tensor(caseName, "pixel_values");
        Assert.Equal(hf.shape, ours.shape);
        var diff = (ours - hf).abs().max().item<float>();
        Assert.True(diff < 1e-6, $"max abs diff {diff} (sum ours {ours.sum().item<float>()}, HF {hf.sum().item<float>()})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FromThePng_TheCaptionPathGivesHfsGreedyTokens(string family, string caseName)
    {
        var fx = new HfFixture(family);
        var c = fx.Case(caseName);
        using var e = Engine.Load(fx.Dir);
        using var bgr = HfFixture.Image((string)c["images"]![0]!);
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokens = Array.Empty<int>() };
        var tokens = new Captioner(e).Caption(bgr, (string)c["prompt_text"]!, options, new CaptionTimings())
            .Where(t => t.Id >= 0).Select(t => t.Id).ToArray();
        HfFixture.AssertGreedy(HfFixture.Ints(c["greedy_tokens"]!), HfFixture.Doubles(c["greedy_top2_margins"]!), tokens);
    }
}

public class PaddedVocabularyTests
{
    [Fact]
    public void A384PxTowerInPatchesOf14_Has729Patches_AsSigLIPSo400m()
    {
        // llava-interleave-qwen and LLaVA-OneVision use siglip-so400m-patch14-384: 384 is no multiple of 14.
        var root = System.Text.Json.Nodes.JsonNode.Parse("""
            {"model_type": "llava", "vision_feature_select_strategy": "full", "vision_feature_layer": -1,
             "vision_config": {"model_type": "siglip_vision_model", "image_size": 384, "patch_size": 14, "hidden_size": 16,
                               "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1},
             "text_config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                             "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": 64}}
            """)!;
        var cfg = RealtimeAssistant.Model.Checkpoint.LlavaConfig.Parse(root);
        Assert.Equal(729, cfg.ImageTokens);
        using var model = new RealtimeAssistant.Model.LlavaModel(cfg, RealtimeAssistant.Model.TensorSpec.Cpu32);
        using var _ = TorchSharp.torch.inference_mode();
        foreach (var p in model.parameters()) p.normal_(0, 0.02);
        var full = model.EncodeImages(TorchSharp.torch.randn(1, 3, 384, 384));
        Assert.Equal(new long[] { 1, 729, 32 }, full.shape);
        // "default" drops the first token whatever the tower: for SigLIP, as transformers does, a patch.
        var cfgDefault = cfg with { VisionFeatureSelectStrategy = "default" };
        Assert.Equal(728, cfgDefault.ImageTokens);
        using var tower = new RealtimeAssistant.Model.VisionTower(cfgDefault, RealtimeAssistant.Model.TensorSpec.Cpu32);
        foreach (var (n, p) in tower.named_parameters()) p.copy_(model.vision_tower.named_parameters().First(q => q.name == n).parameter);
        var pixels = TorchSharp.torch.randn(1, 3, 384, 384);
        Assert.True(tower.forward(pixels).equal(model.vision_tower.forward(pixels)[.., 1..]).all().item<bool>());
    }

    [Fact]
    public void AnIdPastTheTokenizersVocabulary_DecodesToNothing()
    {
        // The llava_siglip checkpoint has 320 embedding rows for a tokenizer of 300 ids, as real Qwen2 checkpoints pad theirs.
        var tok = RealtimeAssistant.Model.Checkpoint.TextTokenizer.Load(new HfFixture("llava_siglip").Dir);
        Assert.Null(tok.IdToTokenOrNull(310));
        var hello = tok.Encode("hello", addSpecialTokens: false);
        Assert.Equal("hello", tok.Decode(hello.Prepend(310).Append(311)));
    }
}
