using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Training;

public class TrainingLossTests
{
    // Log-probability of every labelled token, row by row, in sequence order.
    static List<float[]> LabelLogProbs(LlavaModel model, DemoBatch batch)
    {
        using var _ = torch.no_grad();
        var (v, _) = model.vision_tower.Features(batch.Pixels!);
        var f = model.multi_modal_projector.forward(v);
        var embeds = model.Embed(batch.Ids, f.reshape(batch.Ids.shape[0], -1, f.shape[^1]), batch.ImageSlots);
        var h = model.Decoder.Forward(embeds, new DecoderStep { Positions = Array.Empty<long>(), PositionTensor = batch.Positions, Mask = batch.Mask });
        var logp = torch.nn.functional.log_softmax(model.language_model.Logits(h), -1);
        var labels = batch.Labels;
        var rows = new List<float[]>();
        for (long b = 0; b < labels.shape[0]; b++)
        {
            var row = new List<float>();
            for (long i = 0; i < labels.shape[1]; i++)
            {
                long label = labels[b, i].item<long>();
                if (label != DemoBatcher.Ignore) row.Add(logp[b, i, label].item<float>());
            }
            rows.Add(row.ToArray());
        }
        return rows;
    }

    // A 2-layer demo-layout model with random weights, and the batcher training uses.
    sealed class Rig : IDisposable
    {
        public readonly LlavaConfig Config = DemoModelSpec.Config(2, 32, 1, 32);
        public readonly LlavaModel Model;
        public readonly DemoBatcher Batcher;
        readonly ImagePreprocessor _pre = new(DemoModelSpec.Preprocessor(), torch.CPU, ScalarType.Float32);

        public Rig()
        {
            Model = new LlavaModel(Config, new TensorSpec(torch.CPU, ScalarType.Float32));
            ModelInit.Initialize(Model, 7);
            Batcher = new DemoBatcher(TextTokenizer.FromJson(DemoModelSpec.TokenizerJson()), _pre, Config.ImageTokens, torch.CPU);
        }

        public void Dispose() { Model.Dispose(); _pre.Dispose(); }
    }

    [Fact]
    public void AnswerTokensCanWeighMoreThanCaptionTokens()
    {
        using var rig = new Rig();
        rig.Model.eval();
        var data = new DemoDataset(DemoSplit.Train);
        var samples = new[] { data.CaptionSample(5, frames: 1, questions: 2), data.CaptionSample(6, frames: 1, questions: 3) };
        try
        {
            using var plain = rig.Batcher.Make(samples, 1, textOnly: false);
            using var weighted = rig.Batcher.Make(samples, 1, textOnly: false, answerWeight: 3);
            Assert.Null(plain.LabelWeights);
            var logp = LabelLogProbs(rig.Model, weighted);
            // Every answer token and its </s> weighs 3, every caption token 1, nothing else counts.
            var w = weighted.LabelWeights!;
            var labelled = weighted.Labels.ne(DemoBatcher.Ignore);
            Assert.Equal(0, w.masked_select(labelled.logical_not()).abs().sum().item<float>());
            int answerTokens = samples.Sum(s => s.Branches.Sum(q => q.Answer.Split(' ').Length + 1));
            int captionTokens = samples.Sum(s => s.Target.Split(' ').Length + 1);
            Assert.Equal(answerTokens, w.eq(3).sum().item<long>());
            Assert.Equal(captionTokens, w.eq(1).sum().item<long>());
            // The loss is the weighted mean of −log p; the reported cross-entropy stays the plain mean.
            var weights = new List<float>();
            for (long b = 0; b < w.shape[0]; b++)
                for (long i = 0; i < w.shape[1]; i++)
                    if (labelled[b, i].item<bool>()) weights.Add(w[b, i].item<float>());
            var lp = logp.SelectMany(r => r).ToArray();
            double expected = -lp.Select((x, i) => x * weights[i]).Sum() / weights.Sum(), mean = -lp.Average();
            using (torch.no_grad())
            {
                var parts = DemoBatcher.LossParts(rig.Model, weighted);
                Assert.Equal(expected, parts.Total.item<float>(), 3);
                Assert.Equal(mean, parts.CrossEntropy.item<float>(), 3);
                Assert.NotEqual(Math.Round(expected, 3), Math.Round(mean, 3)); // the weighting changed something
                Assert.Equal(mean, DemoBatcher.LossParts(rig.Model, plain).Total.item<float>(), 3);
            }
        }
        finally { foreach (var s in samples) s.Dispose(); }
    }

    [Fact]
    public void EachQuestionBranchIsTrainedExactlyAsIfAskedAlone()
    {
        using var rig = new Rig();
        var (model, batcher) = (rig.Model, rig.Batcher);
        model.eval();
        using (torch.no_grad())
            foreach (var p in model.parameters()) if (p.dim() == 2) p.mul_(4); // sharper outputs: a leak between branches would show
        var data = new DemoDataset(DemoSplit.Train);
        // Two rows of different lengths (padding), two frames (motion questions allowed).
        var samples = new[] { data.CaptionSample(3, frames: 2, questions: 3), data.CaptionSample(4, frames: 2, questions: 1) };
        try
        {
            Assert.Equal(3, samples[0].Branches.Select(q => q.Question).Distinct().Count());
            Assert.Single(samples[1].Branches);
            using var branched = batcher.Make(samples, 2, textOnly: false);
            var got = LabelLogProbs(model, branched);
            for (int b = 0; b < samples.Length; b++)
            {
                var s = samples[b];
                var alone = new List<DemoSample> { s with { Branches = [] } };
                alone.AddRange(s.Branches.Select(q => new DemoSample(s.Frames, q.Question, q.Answer) { Drawn = s.Drawn }));
                var expected = alone.SelectMany(a =>
                {
                    using var one = batcher.Make([a], 2, textOnly: false);
                    return LabelLogProbs(model, one)[0];
                }).ToArray();
                Assert.Equal(expected.Length, got[b].Length);
                for (int i = 0; i < expected.Length; i++)
                    // Float tolerance relative to the log-prob's size (the two layouts take different SDPA kernels); a leak between branches moved one by 0.1.
                    Assert.True(Math.Abs(expected[i] - got[b][i]) < 1e-3 * Math.Max(1, Math.Abs(expected[i])), $"row {b} label {i}: alone {expected[i]:0.0000}, branched {got[b][i]:0.0000}");
            }
        }
        finally
        {
            foreach (var s in samples) s.Dispose();
        }
    }

    [Fact]
    public void BranchesNeedFramesAndNoStreamingBand()
    {
        var cfg = DemoModelSpec.Config(1, 32, 1, 32);
        var tok = TextTokenizer.FromJson(DemoModelSpec.TokenizerJson());
        using var pre = new ImagePreprocessor(DemoModelSpec.Preprocessor(), torch.CPU, ScalarType.Float32);
        var batcher = new DemoBatcher(tok, pre, cfg.ImageTokens, torch.CPU);
        using var s = new DemoDataset(DemoSplit.Train).CaptionSample(0, questions: 2);
        Assert.Throws<ArgumentException>(() => batcher.Make([s], 1, textOnly: true));
        Assert.Throws<UserError>(() => new Trainer(new TrainOptions { OutDir = "x", QuestionsPerCaption = 99 }));
    }

    [Fact]
    public void TheDecoderProbeReadsColourAndShapeOnStillFrames_AndMotionOnlyWithSeveral()
    {
        using var rig = new Rig();
        var (model, batcher) = (rig.Model, rig.Batcher);
        using var probe = new DecoderProbe(rig.Config.Text.HiddenSize, DecoderProbe.LayerFor(rig.Config.Text.NumHiddenLayers));
        var data = new DemoDataset(DemoSplit.Train);
        foreach (int frames in new[] { 1, 2 })
        {
            using var s = data.CaptionSample(5, frames: frames);
            using var batch = batcher.Make([s], frames, textOnly: false);
            using var _ = torch.no_grad();
            var without = DemoBatcher.LossParts(model, batch);
            var with = DemoBatcher.LossParts(model, batch, decoderProbe: probe, decoderWeight: 1.0);
            Assert.Equal(without.CrossEntropy.item<float>(), with.CrossEntropy.item<float>(), 4);
            // Colour and shape over ~10 classes each: a fresh head's loss is near 2·ln(9), never 0.
            Assert.True(with.Total.item<float>() - with.CrossEntropy.item<float>() > 2.0, $"{frames} frame(s): probe loss {with.Total.item<float>() - with.CrossEntropy.item<float>():0.000}");
            if (frames == 1) Assert.True(double.IsNaN(with.MotionAccuracy));
            else Assert.InRange(with.MotionAccuracy, 0, 1);
        }
    }
}
