using System.Text.Json.Nodes;
using OpenCvSharp;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

public class EngineTests
{
    static LlavaModel RandomModel(LlavaConfig cfg, long seed = 1)
    {
        var m = new LlavaModel(cfg, TensorSpec.Cpu32);
        ModelInit.Initialize(m, seed);
        // Larger weights than GPT-2 init so differences are not hidden under tiny activations.
        using (torch.no_grad()) foreach (var p in m.parameters()) if (p.dim() == 2) p.mul_(10);
        m.eval();
        return m;
    }

    [Theory]
    [InlineData("llama", 4, 4)]
    [InlineData("qwen2", 4, 2)] // biases, grouped KV heads
    public void StackedQkvProjectionEqualsTheThreeLinears_AndFollowsTheirWeights(string text, int heads, int kvHeads)
    {
        using var model = RandomModel(SyntheticCheckpoint.Config(text: text, heads: heads, kvHeads: kvHeads, tLayers: 1));
        var attn = model.Decoder.layers[0].self_attn;
        var x = torch.randn(new long[] { 1, 5, model.Config.Text.HiddenSize }, generator: new Generator(3));
        var (cos, sin) = model.Decoder.Rope.Tables(torch.tensor(new long[] { 0, 1, 2, 7, 9 }), ScalarType.Float32);
        // HF's form, written out: each of q_proj, k_proj, v_proj, then x·cos + rotate_half(x)·sin.
        (Tensor, Tensor, Tensor) Reference()
        {
            using var _ = torch.no_grad();
            Tensor Heads(Linear l, int n) => l.forward(x).view(1, 5, n, -1).transpose(1, 2);
            Tensor Rotate(Tensor t)
            {
                long half = t.shape[^1] / 2;
                var rotated = torch.cat(new[] { -t.narrow(-1, half, half), t.narrow(-1, 0, half) }, -1);
                var s = sin.narrow(-1, half, half); // the table's second half is +sin
                return t * cos + rotated * torch.cat(new[] { s, s }, -1);
            }
            return (Rotate(Heads(attn.q_proj, heads)), Rotate(Heads(attn.k_proj, kvHeads)), Heads(attn.v_proj, kvHeads));
        }
        void Check()
        {
            using var _ = torch.no_grad(); // the stacked path
            var (q, k, v) = attn.Project(x, cos, sin);
            var (rq, rk, rv) = Reference();
            Assert.True(q.allclose(rq, 1e-5, 1e-5) && k.allclose(rk, 1e-5, 1e-5) && v.allclose(rv, 1e-5, 1e-5));
        }
        Check();
        // Weights changed in place (a checkpoint read, an optimiser step) reach the stacked matmul.
        using (torch.no_grad()) { attn.k_proj.weight.mul_(-2); attn.v_proj.weight.add_(0.5); }
        Check();
        // With gradients wanted, each parameter gets its own.
        foreach (var p in attn.parameters()) p.requires_grad = true;
        var (q2, k2, v2) = attn.Project(x, cos, sin);
        (q2.sum() + k2.sum() + v2.sum()).backward();
        Assert.All(new[] { attn.q_proj, attn.k_proj, attn.v_proj }, l => Assert.True(l.weight.grad is { } g && g.abs().sum().item<float>() > 0));
        // Moved to another dtype, the parameters get their own storage: the three linears are used again.
        foreach (var p in attn.parameters()) p.requires_grad = false;
        model.to(ScalarType.Float64);
        (x, cos, sin) = (x.to_type(ScalarType.Float64), cos.to_type(ScalarType.Float64), sin.to_type(ScalarType.Float64));
        using (torch.no_grad()) attn.q_proj.weight.mul_(3);
        Check();
    }

    [Theory]
    [InlineData("llama", 4, 4)]
    [InlineData("qwen2", 4, 2)]
    public void IncrementalDecodingMatchesFullForward(string text, int heads, int kvHeads)
    {
        using var _ = torch.no_grad();
        using var model = RandomModel(SyntheticCheckpoint.Config(text: text, heads: heads, kvHeads: kvHeads, tLayers: 3));
        var ids = torch.randint(4, 64, new long[] { 1, 12 }, dtype: ScalarType.Int64, generator: new Generator(7));
        var all = Enumerable.Range(0, 12).Select(i => (long)i).ToArray();
        var emb = model.Embed(ids, null, Array.Empty<long>());
        var full = model.language_model.Logits(model.Decoder.Forward(emb, new DecoderStep { Positions = all }));

        using var cache = new KvCache(3);
        var prefix = model.Decoder.Forward(emb[.., ..5], new DecoderStep { Positions = all[..5], Cache = cache });
        var steps = new List<Tensor> { model.language_model.Logits(prefix) };
        for (int t = 5; t < 12; t++)
            steps.Add(model.language_model.Logits(model.Decoder.Forward(emb[.., t..(t + 1)], new DecoderStep { Positions = new[] { (long)t }, Cache = cache })));
        var incremental = torch.cat(steps.ToArray(), 1);
        var diff = (full - incremental).abs().max().item<float>();
        Assert.True(diff <= 1e-4, $"max abs diff {diff}");
        Assert.All(cache.Layers, l => Assert.Equal(12, l.Source.Length));
        Assert.Equal(all, cache.Layers[0].Source.Positions.ToArray());
    }

    [Theory]
    [InlineData(4, 4, 1)]
    [InlineData(4, 2, 3)] // GQA, several target queries (causal among themselves)
    public void TargetQueriesReadingTheGroupsApartEqualTheJoinedCaches(int heads, int kvHeads, int t)
    {
        // Small sources are joined (one SDPA), large ones read in place: both must agree.
        using var _ = torch.no_grad();
        using var model = RandomModel(SyntheticCheckpoint.Config(heads: heads, kvHeads: kvHeads, tLayers: 1));
        var attn = model.Decoder.layers[0].self_attn;
        var g = new Generator(5);
        var q = torch.randn(new long[] { 1, heads, t, attn.HeadDim }, generator: g);
        var ks = torch.randn(new long[] { 1, kvHeads, 40, attn.HeadDim }, generator: g);
        var vs = torch.randn(new long[] { 1, kvHeads, 40, attn.HeadDim }, generator: g);
        var kt = torch.randn(new long[] { 1, kvHeads, 6, attn.HeadDim }, generator: g);
        var vt = torch.randn(new long[] { 1, kvHeads, 6, attn.HeadDim }, generator: g);
        var apart = attn.AttendTwoGroups(q, ks, vs, kt, vt);
        var joined = attn.Attend(q, torch.cat(new[] { ks, kt }, 2), torch.cat(new[] { vs, vt }, 2), null);
        Assert.True(apart.allclose(joined, 1e-5, 1e-5), $"max abs diff {(apart - joined).abs().max().item<float>()}");
    }

    [Fact]
    public void NonContiguousPositionsChangeTheResult_AndCacheStoresThem()
    {
        using var _ = torch.no_grad();
        using var model = RandomModel(SyntheticCheckpoint.Config());
        var emb = model.Embed(torch.tensor(new long[] { 5, 6, 7 }).view(1, 3), null, Array.Empty<long>());
        using var cache = new KvCache(2);
        var a = model.Decoder.Forward(emb, new DecoderStep { Positions = new long[] { 0, 1, 2 } });
        var b = model.Decoder.Forward(emb, new DecoderStep { Positions = new long[] { 0, 7, 40 }, Cache = cache });
        Assert.False(a.allclose(b, 1e-4, 1e-4));
        Assert.Equal(new long[] { 0, 7, 40 }, cache.Layers[1].Source.Positions.ToArray());
    }

    [Fact]
    public void KvGroupAppendEvictKeep()
    {
        using var g = new KvGroup();
        var k = torch.arange(0, 10, ScalarType.Float32).view(1, 1, 10, 1);
        g.Append(k, k * 2, Enumerable.Range(100, 10).Select(i => (long)i).ToArray());
        g.Evict(2, 3);
        Assert.Equal(7, g.Length);
        Assert.Equal(new float[] { 0, 1, 5, 6, 7, 8, 9 }, g.Keys.flatten().data<float>().ToArray());
        Assert.Equal(new long[] { 100, 101, 105, 106, 107, 108, 109 }, g.Positions.ToArray());
        g.Keep(new long[] { 0, 3, 6 });
        Assert.Equal(new float[] { 0, 12, 18 }, g.Values.flatten().data<float>().ToArray());
        Assert.Equal(new long[] { 100, 106, 109 }, g.Positions.ToArray());
        g.Append(k.narrow(2, 0, 200 > 10 ? 10 : 0), k.narrow(2, 0, 10), Enumerable.Range(0, 10).Select(i => (long)i).ToArray());
        Assert.Equal(13, g.Length);
    }

    [Fact]
    public void TargetGroupSeesSource_SourceNeverSeesTarget()
    {
        using var _ = torch.no_grad();
        using var model = RandomModel(SyntheticCheckpoint.Config());
        var src = model.Embed(torch.tensor(new long[] { 5, 6, 7, 8 }).view(1, 4), null, Array.Empty<long>());
        var tgt = model.Embed(torch.tensor(new long[] { 9, 10 }).view(1, 2), null, Array.Empty<long>());
        var more = model.Embed(torch.tensor(new long[] { 11 }).view(1, 1), null, Array.Empty<long>());

        using var withTarget = new KvCache(2);
        model.Decoder.Forward(src, new DecoderStep { Positions = new long[] { 0, 1, 2, 3 }, Cache = withTarget });
        model.Decoder.Forward(tgt, new DecoderStep { Positions = new long[] { 0, 1 }, Cache = withTarget, Group = CacheGroup.Target });
        var a = model.Decoder.Forward(more, new DecoderStep { Positions = new long[] { 4 }, Cache = withTarget });

        using var plain = new KvCache(2);
        model.Decoder.Forward(src, new DecoderStep { Positions = new long[] { 0, 1, 2, 3 }, Cache = plain });
        var b = model.Decoder.Forward(more, new DecoderStep { Positions = new long[] { 4 }, Cache = plain });
        Assert.True(a.allclose(b, 1e-5, 1e-5), "a new source token must not see the target group");
        Assert.Equal(2, withTarget.Layers[0].Target.Length);
        Assert.Equal(5, withTarget.Layers[0].Source.Length);
    }

    public static IEnumerable<object[]> Layouts() => new[]
    {
        new object[] { "clip_vision_model", "llama", CheckpointNames.Generation.Old, false },
        new object[] { "clip_vision_model", "llama", CheckpointNames.Generation.New, true },
        new object[] { "siglip_vision_model", "qwen2", CheckpointNames.Generation.Old, true },
        new object[] { "siglip_vision_model", "qwen2", CheckpointNames.Generation.New, false },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void TinyCheckpointsLoadInBothNamingGenerationsAndGenerate(string vision, string text, CheckpointNames.Generation gen, bool tie)
    {
        using var dir = new TempDir();
        var cfg = SyntheticCheckpoint.Config(vision, text, tie: tie, strategy: vision.StartsWith("siglip") ? "full" : "default");
        var tokenizer = text == "qwen2" ? TokenizerTests.ByteLevelTokenizerJson() : SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64));
        if (text == "qwen2") cfg = cfg with { Text = cfg.Text with { VocabSize = 300 }, ImageTokenIndex = TokenizerTests.ByteLevelImageId };
        SyntheticCheckpoint.Write(dir.Path, cfg, tokenizer, seed: 3, generation: gen);
        var names = SafeTensorsReader.Open(dir.Path).Tensors.Keys.ToList();
        Assert.Contains(names, n => n.StartsWith(gen == CheckpointNames.Generation.New ? "model.language_model.layers.0." : "language_model.model.layers.0."));
        Assert.Equal(tie, !names.Any(n => n.EndsWith("lm_head.weight")));

        using var engine = Engine.Load(dir.Path);
        var captioner = new Captioner(engine);
        using var image = new Mat(48, 64, MatType.CV_8UC3, new OpenCvSharp.Scalar(30, 120, 200));
        var timings = new CaptionTimings();
        var events = captioner.Caption(image, "<image> w1 w2", new GenerationOptions { MaxNewTokens = 5, StopTokens = Array.Empty<int>() }, timings).ToList();
        Assert.Equal(5, events.Count(e => e.Id >= 0));
        Assert.Equal(5, timings.DecodeMs.Count);
        Assert.True(timings.PromptTokens >= ((LlavaFamily)engine.Model).Config.ImageTokens);
    }

    [Fact]
    public void ReloadedCheckpointGivesIdenticalLogits()
    {
        using var dir = new TempDir();
        var cfg = SyntheticCheckpoint.Config();
        SyntheticCheckpoint.Write(dir.Path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)), seed: 9);
        using var a = Engine.Load(dir.Path);
        using var b = Engine.Load(dir.Path);
        using var _ = torch.no_grad();
        var px = torch.randn(1, 3, 32, 32);
        var (ma, mb) = (((LlavaFamily)a.Model).Model, ((LlavaFamily)b.Model).Model);
        Assert.True(ma.EncodeImages(px).equal(mb.EncodeImages(px)).all().item<bool>());
        Assert.Equal(cfg.ImageTokens, ma.EncodeImages(px).shape[1]);
    }

    [Fact]
    public void MissingAndUnexpectedTensorsAreListed()
    {
        using var dir = new TempDir();
        var cfg = SyntheticCheckpoint.Config();
        SyntheticCheckpoint.Write(dir.Path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)));
        var reader = SafeTensorsReader.Open(dir.Path);
        var tensors = reader.Tensors.Keys.Where(n => !n.Contains("layers.1.mlp.up_proj")).Select(n => (n, reader.Load(n))).ToList();
        tensors.Add(("language_model.model.extra.weight", torch.zeros(2)));
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors);
        var e = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
        Assert.Contains("missing tensors: language_model.model.layers.1.mlp.up_proj.weight", e.Message);
        Assert.Contains("unexpected tensors: language_model.model.extra.weight", e.Message);
    }

    [Fact]
    public void WrongShapeInCheckpointNamesTensor()
    {
        using var dir = new TempDir();
        SyntheticCheckpoint.Write(dir.Path, SyntheticCheckpoint.Config(), SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)));
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        cfg["text_config"]!["intermediate_size"] = 96;
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        var e = Assert.Throws<UserError>(() => Engine.Load(dir.Path));
        Assert.Matches(@"tensor language_model\.model\.layers\.0\.mlp\.\w+_proj\.weight has shape \[\d+, \d+\] in the checkpoint but the model expects \[\d+, \d+\]", e.Message);
    }

    [Theory]
    [InlineData("model_type", "gpt2", "unsupported model_type 'gpt2'")]
    [InlineData("vision", "vit", "unsupported vision model_type 'vit'")]
    [InlineData("text", "mistral", "unsupported text model_type 'mistral'")]
    public void UnknownModelTypesListSupportedOnes(string where, string value, string expected)
    {
        var json = SyntheticCheckpoint.Config().ToJson();
        if (where == "model_type") json["model_type"] = value;
        else json[where + "_config"]!["model_type"] = value;
        var e = Assert.Throws<UserError>(() => LlavaConfig.Parse(json));
        Assert.Contains(expected, e.Message);
        Assert.Contains("supported", e.Message);
    }

    [Fact]
    public void SamplingIsSeededAndGreedyIsArgmax()
    {
        var logits = torch.tensor(new float[] { 0.1f, 2f, 0.5f, 1.9f });
        using var greedy = new Sampler(new GenerationOptions());
        Assert.Equal(1, greedy.Next(logits));
        int[] Draw(ulong seed) { using var s = new Sampler(new GenerationOptions { Temperature = 1.5, TopP = 0.9, Seed = seed }); return Enumerable.Range(0, 20).Select(_ => s.Next(logits)).ToArray(); }
        Assert.Equal(Draw(5), Draw(5));
        Assert.True(Draw(5).Distinct().Count() > 1);
        using var narrow = new Sampler(new GenerationOptions { Temperature = 1, TopP = 0.01, Seed = 1 });
        Assert.All(Enumerable.Range(0, 10), _ => Assert.Equal(1, narrow.Next(logits)));
    }

    /// <summary>With LogProbs, each pick records its token's log-softmax under the raw logits (whatever the temperature) and the top alternatives, one entry per pick, in order.</summary>
    [Fact]
    public void LogProbs_RecordEachPicksLogSoftmax_AndTheTopAlternatives_InOrder()
    {
        var logits = torch.tensor(new float[] { 0.1f, 2f, 0.5f, 1.9f });
        var expected = logits.log_softmax(-1).data<float>().ToArray();
        using var plain = new Sampler(new GenerationOptions());
        plain.Next(logits);
        Assert.Null(plain.TakeLogProb());

        using var sampled = new Sampler(new GenerationOptions { Temperature = 1.5, Seed = 3, LogProbs = 2 });
        var picks = Enumerable.Range(0, 12).Select(_ => sampled.Next(logits)).ToList();
        Assert.True(picks.Distinct().Count() > 1, "the draws should differ");
        foreach (var id in picks)
        {
            var p = sampled.TakeLogProb()!;
            Assert.Equal(id, p.Id);
            Assert.Equal(expected[id], p.LogProb, 5);
            Assert.Equal([1, 3], p.Top.Select(t => t.Id));
            Assert.Equal(expected[1], p.Top[0].LogProb, 5);
        }
        Assert.Null(sampled.TakeLogProb());
        Assert.Throws<UserError>(() => new GenerationOptions { LogProbs = 21 }.Validate());
    }

    [Fact]
    public void ACacheFilledInInferenceModeIsStillWritableOutsideIt()
    {
        // Inference paths run under InferenceMode, so a session's cache holds inference tensors;
        // the cache's own writes must still work when a caller outside that mode appends or trims.
        using var g = new KvGroup();
        var k = torch.arange(2 * 3 * 4, dtype: ScalarType.Float32).view(1, 2, 3, 4);
        using (torch.inference_mode()) g.Append(k, k + 100, new long[] { 0, 1, 2 });
        g.Append(k.narrow(2, 0, 1) + 50, k.narrow(2, 0, 1) + 150, new long[] { 3 });
        g.Keep(new long[] { 1, 3 });
        g.Evict(0, 1);
        Assert.Equal(1, g.Length);
        Assert.Equal(new long[] { 3 }, g.Positions.ToArray());
        Assert.True(g.Keys.equal(k.narrow(2, 0, 1) + 50).all().item<bool>());
        Assert.True(g.Values.equal(k.narrow(2, 0, 1) + 150).all().item<bool>());
    }

    [Fact]
    public void AModelThatHasCaptionedStillTrains()
    {
        // Captioning creates state under InferenceMode (the RoPE table, caches); none of it may
        // reach autograd when the same model is then trained (fine-tuning after a look).
        using var dir = new TempDir();
        SyntheticCheckpoint.Write(dir.Path, SyntheticCheckpoint.Config(), SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(64)), seed: 4);
        using var engine = Engine.Load(dir.Path);
        var captioner = new Captioner(engine);
        using var image = new Mat(32, 32, MatType.CV_8UC3, new OpenCvSharp.Scalar(200, 40, 90));
        var options = new GenerationOptions { MaxNewTokens = 3, StopTokens = Array.Empty<int>() };
        var before = captioner.Caption(image, "<image> w1", options, new CaptionTimings()).Select(e => e.Id).ToList();

        var dec = engine.Decoder;
        foreach (var p in dec.parameters()) p.requires_grad = true;
        var emb = torch.randn(new long[] { 1, 4, engine.Text.HiddenSize }, generator: new Generator(2));
        var loss = engine.Language.Logits(dec.Forward(emb, new DecoderStep { Positions = new long[] { 0, 1, 2, 3 } })).logsumexp(-1).sum();
        loss.backward();
        Assert.All(dec.layers[0].self_attn.q_proj.parameters(), p => Assert.True(p.grad is { } gr && gr.abs().sum().item<float>() > 0));
        foreach (var p in dec.parameters()) { p.requires_grad = false; p.grad?.zero_(); }

        var after = captioner.Caption(image, "<image> w1", options, new CaptionTimings()).Select(e => e.Id).ToList();
        Assert.Equal(before, after); // no weight changed, so the same caption
    }
}
