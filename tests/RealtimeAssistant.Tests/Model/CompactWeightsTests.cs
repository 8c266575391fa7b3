using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Model.Kernels;
using RealtimeAssistant.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Each weight format against float32: logits on tiny checkpoints within a stated tolerance, and
/// greedy tokens on the demo model's held-out scenes.
/// </summary>
public class CompactWeightsTests(ITestOutputHelper output)
{
    static string Media(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, "media")) && File.Exists(Path.Combine(d.FullName, "RealtimeAssistant.sln")))
                return Path.Combine(d.FullName, "media", name);
        throw new DirectoryNotFoundException("repository root not found above the test binaries");
    }

    static string Checkpoint(TempDir dir, LlavaConfig cfg, ScalarType stored = ScalarType.Float32)
    {
        var path = dir.File("model");
        Directory.CreateDirectory(path);
        SyntheticCheckpoint.Write(path, cfg, SyntheticCheckpoint.WordTokenizer(SyntheticCheckpoint.FillerWords(cfg.Text.VocabSize)), seed: 3);
        if (stored != ScalarType.Float32)
        {
            // The same weights stored in another dtype, as checkpoints often are.
            var reader = SafeTensorsReader.Open(path);
            var tensors = reader.Tensors.Keys.Select(k => (k, reader.Load(k).to_type(stored))).ToList();
            SafeTensorsWriter.Write(Path.Combine(path, "model.safetensors"), tensors);
        }
        return path;
    }

    /// <summary>Logits [T, vocab] of a prompt with one image (random pixels), through the same pieces the captioner uses.</summary>
    static Tensor PromptLogits(Engine e)
    {
        using var _ = torch.inference_mode();
        var bytes = new byte[48 * 48 * 3];
        new Random(21).NextBytes(bytes);
        using var image = Mat.FromPixelData(48, 48, MatType.CV_8UC3, bytes);
        var (embeds, positions, _, next) = new Captioner(e).EmbedPrompt(new[] { image }, "describe");
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        var prefill = e.Decoder.Forward(embeds, new DecoderStep { Positions = positions, Cache = cache });
        // and three decode steps through the cache (one row: the GEMV kernels)
        var rows = new List<Tensor> { e.Language.Logits(prefill[0]) };
        for (int s = 0; s < 3; s++)
        {
            var x = e.Decoder.embed_tokens.forward(torch.tensor(new long[] { 6 + s }).view(1, 1));
            var h = e.Decoder.Forward(x, new DecoderStep { Positions = new[] { next + s }, Cache = cache });
            rows.Add(e.Language.Logits(h[0]));
        }
        return torch.cat(rows.ToArray(), 0);
    }

    /// <summary>
    /// The stated tolerance: max |Δlogit| over every position, as a fraction of the float32 logits'
    /// standard deviation. Measured on these checkpoints: see the test output.
    /// </summary>
    static double Tolerance(string format) => format switch { "q8" => 0.10, "bf16" => 0.04, _ => 0.01 };

    [Theory]
    [InlineData("llama", 4, 4, 100, false)] // an intermediate size that is no multiple of 32
    [InlineData("qwen2", 4, 2, 128, true)]  // q/k/v biases, grouped KV heads, tied embeddings (the head reads the q8 table)
    public void EachFormatKeepsTheLogitsOfFloat32(string text, int heads, int kvHeads, int intermediate, bool tie)
    {
        using var dir = new TempDir();
        var path = Checkpoint(dir, SyntheticCheckpoint.Config(text: text, heads: heads, kvHeads: kvHeads, intermediate: intermediate, tie: tie, tLayers: 3));
        using var f32 = Engine.Load(path, new EngineOptions { Device = "cpu" });
        var reference = PromptLogits(f32);
        double scale = reference.std().item<float>();
        foreach (var format in new[] { "bf16", "f16", "q8" })
        {
            string? note = null;
            using var e = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = format, Report = l => note = l });
            Assert.Equal(format, e.WeightsName);
            Assert.Contains($"weights: {format}", note);
            Assert.Contains("MB", note);
            var diff = (PromptLogits(e) - reference).abs().max().item<float>() / scale;
            output.WriteLine($"{text} {format}: max |Δlogit| = {diff:0.0000} of the logits' std");
            Assert.True(diff <= Tolerance(format), $"{text} {format}: max |Δlogit| = {diff:0.0000} of the logits' std");
            Assert.True(diff > 0, $"{format} gave float32's logits exactly: the format was not applied");
            // Every matmul weight (and the token table) was converted, and its dense memory freed.
            var units = Compaction.Units(e.Model.Module);
            Assert.NotEmpty(units);
            Assert.All(units, u => Assert.All(u.Weights, w => Assert.Equal(0, w.numel())));
            Assert.All(units, u => Assert.True(u.CompactBytes > 0));
            double ratio = (double)e.WeightBytes / f32.WeightBytes;
            Assert.True(format == "q8" ? ratio < 0.40 : ratio < 0.60, $"{format} holds {ratio:P0} of float32's bytes");
            // The compact copies still count as the weights they replaced.
            Assert.Equal(f32.Model.ParameterCounts, e.Model.ParameterCounts);
        }
        // Float32's count is the module's own parameters.
        Assert.Equal(f32.Model.Module.parameters().Sum(p => p.numel()), f32.Model.ParameterCounts.Vision + f32.Model.ParameterCounts.Decoder);
    }

    [Fact]
    public void Q8FromABfloat16CheckpointMatchesFloat32OnTheSameFile_AndNoAvx512GivesTheSameLogits()
    {
        using var dir = new TempDir();
        var path = Checkpoint(dir, SyntheticCheckpoint.Config(tLayers: 2), ScalarType.BFloat16);
        using var f32 = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = "f32" });
        using var q8 = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = "q8" });
        var reference = PromptLogits(f32);
        var logits = PromptLogits(q8);
        var diff = (logits - reference).abs().max().item<float>() / reference.std().item<float>();
        output.WriteLine($"q8 from bf16: max |Δlogit| = {diff:0.0000} of the logits' std");
        Assert.True(diff <= Tolerance("q8"), $"max |Δlogit| = {diff:0.0000} of the logits' std");
        foreach (var isa in Enum.GetValues<KernelIsa>().Where(i => i < CpuIsa.Detected))
        {
            using var forced = CpuIsa.Force(isa);
            var other = PromptLogits(q8);
            Assert.True(other.allclose(logits, 1e-4, 1e-5), $"{isa}: max diff {(other - logits).abs().max().item<float>()}");
        }
    }

    /// <summary>
    /// --weights auto: a checkpoint stored in bfloat16 keeps its own bf16 weights, bit for bit, on
    /// any CPU, and says so. Where the CPU multiplies bf16 natively a prefill rounds its
    /// activations to bf16 (logits within bf16's tolerance of float32 products); on a CPU without
    /// (simulated) it multiplies the weights widened to float32, so the logits are float32
    /// products'. A float32 checkpoint, a mixed one and a bf16 model dtype stay dense.
    /// </summary>
    [Fact]
    public void AutoKeepsABfloat16CheckpointsOwnWeights_OnAnyCpu()
    {
        using var dir = new TempDir();
        var cfg = SyntheticCheckpoint.Config(tLayers: 2);
        var path = Checkpoint(dir, cfg, ScalarType.BFloat16);
        var reader = SafeTensorsReader.Open(path);
        Assert.Equal(WeightFormat.BF16, Engine.AutoWeights("auto", torch.CPU, ScalarType.Float32, reader));
        Assert.Null(Engine.AutoWeights("auto", torch.CPU, ScalarType.BFloat16, reader));
        Assert.Null(Engine.AutoWeights("f32", torch.CPU, ScalarType.Float32, reader));

        using var f32 = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = "f32" });
        Assert.Null(f32.Weights);
        var reference = PromptLogits(f32);
        var name = reader.Tensors.Keys.Single(k => k.EndsWith("layers.0.self_attn.o_proj.weight", StringComparison.Ordinal));
        var stored = reader.Load(name);
        foreach (bool native in new[] { true, false })
        {
            if (native && !CpuIsa.HasBf16Matmul) continue; // this CPU has only the widened path, checked below
            using var simulated = native ? null : CpuIsa.ForceNoBf16Matmul();
            string? note = null;
            using var auto = Engine.Load(path, new EngineOptions { Device = "cpu", Report = l => note = l });
            Assert.Equal(WeightFormat.BF16, auto.Weights);
            Assert.Contains("the checkpoint's own bfloat16", note);
            Assert.Equal(!native, note!.Contains("widened to float32"));
            // The weights are the checkpoint's: no rounding happened on the way in.
            var held = Assert.IsType<DenseMatrix>(auto.Decoder.layers[0].self_attn.o_proj.Compacted).Weight;
            Assert.Equal(ScalarType.BFloat16, held.dtype);
            Assert.Equal(stored.shape, held.shape);
            Assert.True(held.eq(stored).all().item<bool>(), "the bf16 weights differ from the checkpoint's");
            var diff = (PromptLogits(auto) - reference).abs().max().item<float>() / reference.std().item<float>();
            output.WriteLine($"auto (bf16, {(native ? "native bf16 products" : "widened to float32")}) against f32 weights on a bf16 checkpoint: max |Δlogit| = {diff:0.000000} of the logits' std");
            Assert.True(diff <= (native ? Tolerance("bf16") : 1e-4), $"max |Δlogit| = {diff:0.000000} of the logits' std");
        }

        // A float32 checkpoint stays float32, and so does one with a single float32 matrix among bf16 ones.
        using var dir32 = new TempDir();
        using var dense = Engine.Load(Checkpoint(dir32, cfg), new EngineOptions { Device = "cpu" });
        Assert.Null(dense.Weights);
        using var mixedDir = new TempDir();
        var mixed = Checkpoint(mixedDir, cfg);
        var tensors = SafeTensorsReader.Open(mixed);
        var firstMatrix = tensors.Tensors.Values.First(t => t.Shape.Length == 2).Name;
        var converted = tensors.Tensors.Keys.Select(k => (k, k == firstMatrix ? tensors.Load(k) : tensors.Load(k).to_type(ScalarType.BFloat16))).ToList();
        SafeTensorsWriter.Write(Path.Combine(mixed, "model.safetensors"), converted);
        Assert.Null(Engine.AutoWeights("auto", torch.CPU, ScalarType.Float32, SafeTensorsReader.Open(mixed)));
    }

    /// <summary>
    /// Each unit is read as the checkpoint stores it, never through the float32 parameters: in the
    /// format's own dtype every unit holds the checkpoint's bits, a stack its members' tensors in
    /// member order (q, k, v; gate, up); under q8 each matrix is what quantizing the checkpoint's
    /// tensors gives. A
    /// tensor of the wrong shape is still one line naming it, and an f16 matrix with an infinity
    /// is still refused.
    /// </summary>
    [Theory]
    [InlineData("bf16", "bf16")]
    [InlineData("f16", "f16")]
    [InlineData("bf16", "q8")]
    public void ACheckpointIsReadAsStored_StacksInMemberOrder(string storedAs, string format)
    {
        var stored = storedAs == "bf16" ? ScalarType.BFloat16 : ScalarType.Float16;
        using var dir = new TempDir();
        var path = Checkpoint(dir, SyntheticCheckpoint.Config(text: "qwen2", heads: 4, kvHeads: 2, intermediate: 128, tLayers: 2), stored);
        var reader = SafeTensorsReader.Open(path);
        // The decoder's tensors (the vision tower has layers.N.self_attn too).
        Tensor Stored(string suffix) => reader.Load(reader.Tensors.Keys.Single(k => k.Contains("language_model") && k.EndsWith(suffix, StringComparison.Ordinal)));
        using var e = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = format });
        Assert.Equal(ScalarType.Float32, e.Model.DType);
        for (int l = 0; l < 2; l++)
        {
            var layer = e.Decoder.layers[l];
            var checks = new (string What, WeightMatrix? Held, Tensor Expected)[]
            {
                ("q, k, v", layer.self_attn.q_proj.Stack!.Compacted,
                    torch.cat(new[] { Stored($"layers.{l}.self_attn.q_proj.weight"), Stored($"layers.{l}.self_attn.k_proj.weight"), Stored($"layers.{l}.self_attn.v_proj.weight") }, 0)),
                ("o", layer.self_attn.o_proj.Compacted, Stored($"layers.{l}.self_attn.o_proj.weight")),
                ("gate, up", layer.mlp.gate_proj.Stack!.Compacted,
                    torch.cat(new[] { Stored($"layers.{l}.mlp.gate_proj.weight"), Stored($"layers.{l}.mlp.up_proj.weight") }, 0)),
                ("down", layer.mlp.down_proj.Compacted, Stored($"layers.{l}.mlp.down_proj.weight")),
            };
            foreach (var (what, held, expected) in checks) Holds(held, expected, $"layer {l} {what}");
        }
        Holds(e.Decoder.embed_tokens.Compacted, Stored("embed_tokens.weight"), "the token table");

        void Holds(WeightMatrix? held, Tensor expected, string what)
        {
            if (format == "q8")
            {
                var q = Assert.IsType<Q8Matrix>(held);
                using var reference = Q8Matrix.Quantize(expected);
                Assert.True(q.Q.eq(reference.Q).all().item<bool>() && q.Scales.eq(reference.Scales).all().item<bool>(), $"{what}: the q8 matrix differs from quantizing the checkpoint's tensors");
                return;
            }
            var w = Assert.IsType<DenseMatrix>(held).Weight;
            Assert.Equal(stored, w.dtype);
            Assert.Equal(expected.shape, w.shape);
            Assert.True(w.eq(expected).all().item<bool>(), $"{what}: the {format} weights differ from the checkpoint's");
        }
        // The float32 parameters were released, not kept beside the compact copies.
        Assert.Equal(0, e.Decoder.layers[0].self_attn.k_proj.weight.numel());

        // A k_proj one row short: one line naming it.
        using var badDir = new TempDir();
        var bad = Checkpoint(badDir, SyntheticCheckpoint.Config(text: "qwen2", heads: 4, kvHeads: 2, intermediate: 128, tLayers: 2), stored);
        var badReader = SafeTensorsReader.Open(bad);
        var kName = badReader.Tensors.Keys.Single(k => k.Contains("language_model") && k.EndsWith("layers.1.self_attn.k_proj.weight", StringComparison.Ordinal));
        var tensors = badReader.Tensors.Keys.Select(k => (k, k == kName ? badReader.Load(k).narrow(0, 1, badReader.Tensors[k].Shape[0] - 1).contiguous() : badReader.Load(k))).ToList();
        SafeTensorsWriter.Write(Path.Combine(bad, "model.safetensors"), tensors);
        var error = Assert.Throws<UserError>(() => Engine.Load(bad, new EngineOptions { Device = "cpu", Weights = format }));
        Assert.Contains("k_proj", error.Message);
        Assert.Contains("in the checkpoint but the model expects", error.Message);
        Assert.DoesNotContain("\n", error.Message);

        if (format is "f16" or "q8")
        {
            // An infinity (f16) or a NaN (q8) in a stacked member: neither format can store it for the kernels.
            var vName = badReader.Tensors.Keys.Single(k => k.Contains("language_model") && k.EndsWith("layers.0.self_attn.v_proj.weight", StringComparison.Ordinal));
            var withInf = SafeTensorsReader.Open(path).Tensors.Keys.Select(k =>
            {
                var t = reader.Load(k);
                if (k == vName) t[1, 3] = torch.tensor(format == "f16" ? float.PositiveInfinity : float.NaN, t.dtype);
                return (k, t);
            }).ToList();
            using var infDir = new TempDir();
            var inf = Checkpoint(infDir, SyntheticCheckpoint.Config(text: "qwen2", heads: 4, kvHeads: 2, intermediate: 128, tLayers: 2), stored);
            SafeTensorsWriter.Write(Path.Combine(inf, "model.safetensors"), withInf);
            Assert.Contains($"infinity or NaN, which --weights {format} cannot store", Assert.Throws<UserError>(() => Engine.Load(inf, new EngineOptions { Device = "cpu", Weights = format })).Message);
        }
    }

    /// <summary>
    /// --weights auto on a float16 checkpoint keeps its own f16 weights on any CPU: the products
    /// are float32's over the same values (the kernels widen them exactly, a prefill multiplies a
    /// float32 copy), so the logits are float32 products' to rounding, in half the bytes.
    /// </summary>
    [Fact]
    public void AutoKeepsAFloat16CheckpointsOwnWeights_AsFloat32ProductsWouldMultiplyThem()
    {
        using var dir = new TempDir();
        var path = Checkpoint(dir, SyntheticCheckpoint.Config(text: "qwen2", heads: 4, kvHeads: 2, intermediate: 128, tLayers: 2), ScalarType.Float16);
        var reader = SafeTensorsReader.Open(path);
        Assert.Equal(WeightFormat.F16, Engine.AutoWeights("auto", torch.CPU, ScalarType.Float32, reader));
        string? note = null;
        using var auto = Engine.Load(path, new EngineOptions { Device = "cpu", Report = l => note = l });
        using var f32 = Engine.Load(path, new EngineOptions { Device = "cpu", Weights = "f32" });
        Assert.Equal(WeightFormat.F16, auto.Weights);
        Assert.Contains("the checkpoint's own float16", note);
        var name = reader.Tensors.Keys.Single(k => k.EndsWith("layers.0.mlp.down_proj.weight", StringComparison.Ordinal));
        var held = Assert.IsType<DenseMatrix>(auto.Decoder.layers[0].mlp.down_proj.Compacted).Weight;
        Assert.Equal(ScalarType.Float16, held.dtype);
        Assert.True(held.eq(reader.Load(name)).all().item<bool>(), "the f16 weights differ from the checkpoint's");
        Assert.True((double)auto.WeightBytes / f32.WeightBytes < 0.6, $"f16 holds {(double)auto.WeightBytes / f32.WeightBytes:P0} of float32's bytes");
        var reference = PromptLogits(f32);
        var diff = (PromptLogits(auto) - reference).abs().max().item<float>() / reference.std().item<float>();
        output.WriteLine($"auto (f16) against f32 weights on an f16 checkpoint: max |Δlogit| = {diff:0.000000} of the logits' std");
        Assert.True(diff <= 1e-4, $"max |Δlogit| = {diff:0.000000} of the logits' std");
        Assert.Contains("float32 model", Assert.Throws<UserError>(() => Engine.ResolveWeights("f16", ScalarType.BFloat16)).Message);
    }

    [Fact]
    public void WeightsOptionIsChecked()
    {
        Assert.Null(Engine.ResolveWeights("auto", ScalarType.Float32));
        Assert.Null(Engine.ResolveWeights("f32", ScalarType.Float32));
        Assert.Null(Engine.ResolveWeights("bf16", ScalarType.BFloat16));
        Assert.Equal(WeightFormat.Q8, Engine.ResolveWeights("Q8", ScalarType.Float32));
        Assert.Equal(WeightFormat.Q8, Engine.ResolveWeights("q8", ScalarType.BFloat16));
        Assert.Equal(WeightFormat.BF16, Engine.ResolveWeights("bf16", ScalarType.Float32));
        Assert.Equal(WeightFormat.F16, Engine.ResolveWeights("fp16", ScalarType.Float32));
        Assert.Null(Engine.ResolveWeights("f16", ScalarType.Float16));
        Assert.Contains("--weights", Assert.Throws<UserError>(() => Engine.ResolveWeights("int4", ScalarType.Float32)).Message);
        Assert.Contains("wider", Assert.Throws<UserError>(() => Engine.ResolveWeights("f32", ScalarType.BFloat16)).Message);
    }

    [Fact]
    public void CompactWeightsAreForInferenceOnly_DenseOnesStillTrain()
    {
        var spec = TensorSpec.Cpu32;
        using var dense = new Linear(40, 6, true, spec);
        using var compact = new Linear(40, 6, true, spec);
        using (torch.no_grad())
            foreach (var l in new[] { dense, compact }) { l.weight.normal_(0, 1, new Generator(2)); l.bias!.zero_(); }
        compact.Compact(WeightFormat.Q8);
        Assert.Equal(0, compact.weight.numel());
        Assert.Equal(WeightFormat.Q8, compact.Compacted!.Format);
        var x = torch.randn(new long[] { 3, 40 }, generator: new Generator(4)).requires_grad_(true);
        Assert.Throws<InvalidOperationException>(() => compact.forward(x));
        Assert.Throws<InvalidOperationException>(() => compact.to(ScalarType.Float64));
        dense.weight.requires_grad = true;
        dense.forward(x).sum().backward();
        Assert.True(dense.weight.grad is { } g && g.abs().sum().item<float>() > 0);
        Assert.True(x.grad is { } gx && gx.abs().sum().item<float>() > 0);
        using (torch.inference_mode())
        {
            var y = compact.forward(x.detach());
            var expected = dense.forward(x.detach());
            Assert.True((y - expected).abs().max().item<float>() < 0.05f * expected.abs().max().item<float>());
        }
        // A format equal to the dense dtype converts nothing.
        dense.Compact(WeightFormat.F32);
        Assert.Null(dense.Compacted);
        Assert.Equal(240, dense.weight.numel());
    }

    [Fact]
    public void GateAndUpAsOneProductEqualTheTwoLinears_AndTrainApart()
    {
        var cfg = SyntheticCheckpoint.Config(intermediate: 100);
        using var mlp = new GatedMlp(cfg.Text, TensorSpec.Cpu32);
        using (torch.no_grad()) foreach (var p in mlp.parameters()) p.normal_(0, 0.5, new Generator(5));
        var x = torch.randn(new long[] { 1, 3, cfg.Text.HiddenSize }, generator: new Generator(6));
        Tensor Separate() => mlp.down_proj.forward(torch.nn.functional.silu(mlp.gate_proj.forward(x)) * mlp.up_proj.forward(x));
        using (torch.inference_mode()) Assert.True(mlp.forward(x).allclose(Separate(), 1e-5, 1e-5));
        // In-place updates of either member reach the one product.
        using (torch.no_grad()) mlp.up_proj.weight.mul_(-3);
        using (torch.inference_mode()) Assert.True(mlp.forward(x).allclose(Separate(), 1e-5, 1e-5));
        foreach (var p in mlp.parameters()) p.requires_grad = true;
        mlp.forward(x).sum().backward();
        Assert.All(new[] { mlp.gate_proj, mlp.up_proj, mlp.down_proj }, l => Assert.True(l.weight.grad is { } g && g.abs().sum().item<float>() > 0));
    }

    /// <summary>
    /// The demo model's greedy tokens, teacher-forced: each format's argmax at every position of
    /// float32's greedy caption (and the stop after it), on 200 held-out scenes drawn as `ra eval` draws them.
    /// </summary>
    [Fact]
    public void OnTheDemoModelEachFormatAgreesWithFloat32GreedyTokens()
    {
        const int scenes = 200;
        var dir = Media("demo-model");
        using var f32 = Engine.Load(dir);
        using var bf16 = Engine.Load(dir, new EngineOptions { Weights = "bf16" });
        using var q8 = Engine.Load(dir, new EngineOptions { Weights = "q8" });
        using var f16 = Engine.Load(dir, new EngineOptions { Weights = "f16" });
        var data = new DemoDataset(DemoSplit.Eval);
        var captioner = new Captioner(f32);
        var opts = new GenerationOptions { MaxNewTokens = 48 };
        var agree = new Dictionary<string, int> { ["bf16"] = 0, ["f16"] = 0, ["q8"] = 0 };
        int total = 0;
        for (int i = 0; i < scenes; i++)
        {
            using var s = data.CaptionSample(i, DemoModelSpec.ImageSize, i % 3 == 2 ? 2 : 1);
            var prompt = string.Concat(s.Frames.Select(_ => $"<image> {DemoVocabulary.FrameMarker} ")) + s.Prompt;
            var tokens = captioner.Caption(s.Frames, prompt, opts, new CaptionTimings()).Where(e => e.Id >= 0).Select(e => e.Id).ToList();
            var expected = Forced(f32, s.Frames, prompt, tokens);
            // float32's own argmax is its greedy caption, then the stop token.
            Assert.Equal(tokens, expected.Take(tokens.Count));
            total += expected.Length;
            foreach (var (name, e) in new[] { ("bf16", bf16), ("f16", f16), ("q8", q8) })
                agree[name] += Forced(e, s.Frames, prompt, tokens).Zip(expected).Count(p => p.First == p.Second);
        }
        foreach (var (name, n) in agree) output.WriteLine($"{name}: {n} of {total} greedy tokens agree ({(double)n / total:0.0000})");
        foreach (var (name, n) in agree)
            Assert.True((double)n / total >= 0.99, $"{name}: {n} of {total} greedy tokens agree ({(double)n / total:0.0000})");
    }

    /// <summary>The argmax after the prompt and after each of <paramref name="tokens"/> fed back (teacher forcing).</summary>
    static int[] Forced(Engine e, IReadOnlyList<Mat> frames, string prompt, IReadOnlyList<int> tokens)
    {
        using var _ = torch.inference_mode();
        using var scope = torch.NewDisposeScope();
        var (embeds, positions, _, next) = new Captioner(e).EmbedPrompt(frames, prompt);
        using var cache = new KvCache(e.Text.NumHiddenLayers);
        var h = e.Decoder.Forward(embeds, new DecoderStep { Positions = positions, Cache = cache });
        var result = new int[tokens.Count + 1];
        result[0] = (int)e.Language.Logits(h[0, -1]).argmax().item<long>();
        var (group, start) = e.GroupPositions ? (CacheGroup.Target, 0L) : (CacheGroup.Source, next);
        for (int t = 0; t < tokens.Count; t++)
        {
            var x = e.Decoder.embed_tokens.forward(torch.tensor(new long[] { tokens[t] }).view(1, 1));
            var ht = e.Decoder.Forward(x, new DecoderStep { Positions = new[] { start + t }, Cache = cache, Group = group });
            result[t + 1] = (int)e.Language.Logits(ht[0, -1]).argmax().item<long>();
        }
        return result;
    }
}
