using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Training;

public sealed record TrainOptions
{
    public required string OutDir { get; init; }
    /// <summary>Stage 0: the vision tower alone learns what each patch shows (<see cref="PatchProbe"/>), as CLIP is pretrained before LLaVA.</summary>
    public int VisionSteps { get; init; }
    /// <summary>Stage 1: the decoder learns the world's language from text alone.</summary>
    public int TextSteps { get; init; } = 200;
    /// <summary>Stage 2: vision tower and projector learn with the decoder frozen (LLaVA's alignment stage).</summary>
    public int AlignSteps { get; init; } = 300;
    /// <summary>Stage 3: everything trains jointly.</summary>
    public int JointSteps { get; init; } = 2000;
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 2e-3;
    public int WarmupSteps { get; init; } = 100;
    public double ClipNorm { get; init; } = 1.0;
    public long Seed { get; init; } = 1;
    public int CheckpointEvery { get; init; } = 100;
    public int TextLayers { get; init; } = 8;
    public int TextHidden { get; init; } = 128;
    public int VisionLayers { get; init; } = 3;
    public int VisionHidden { get; init; } = 128;
    /// <summary>Train on the grammar's varied captions instead of the canonical reading-order ones.</summary>
    public bool VariedCaptions { get; init; }
    /// <summary>Fraction of batches with two frames (motion); the rest are single frames.</summary>
    public double MotionFraction { get; init; } = 0.3;
    /// <summary>Fraction of batches of streaming clip windows (<see cref="StreamingFrames"/> frames, events in the target).</summary>
    public double StreamingFraction { get; init; } = 0.1;
    public int StreamingFrames { get; init; } = 4;
    /// <summary>The most frames one frame attends in training: the saved model's default streaming frame band.</summary>
    public int FramesSeen => Math.Max(StreamingFraction > 0 ? StreamingFrames : 1, MotionFraction > 0 ? 2 : 1);
    /// <summary>Weight of the vision tower's dense patch loss (<see cref="PatchProbe"/>); 0 turns it off.</summary>
    public double PatchLossWeight { get; init; } = 1.0;
    /// <summary>Weight of the decoder's dense colour, shape and motion loss at its middle layer (<see cref="DecoderProbe"/>); 0 turns it off.</summary>
    public double DecoderProbeWeight { get; init; } = 1.0;
    /// <summary>
    /// The decoder layer whose output the dense probe reads (null: <see cref="DecoderProbe.LayerFor"/>,
    /// the middle). Text that stops reading the image from layer L on (a visual exit) can read
    /// only what the visual rows hold after layer L − 2, so a probe there teaches them motion in time.
    /// </summary>
    public int? DecoderProbeLayer { get; init; }
    /// <summary>
    /// Questions about the same frames added to every caption sample (<see cref="DemoSample.Branches"/>);
    /// with more than 0, every single- and two-frame batch trains captions and questions together.
    /// 0: a batch is all captions (60%) or all questions, one per sample.
    /// </summary>
    public int QuestionsPerCaption { get; init; }
    /// <summary>How training draws question types (eval always asks <see cref="QuestionMix.Uniform"/>).</summary>
    public QuestionMix QuestionMix { get; init; } = QuestionMix.Uniform;
    /// <summary>Weight of each question-branch answer token in the loss, against 1 for a caption token.</summary>
    public double AnswerLossWeight { get; init; } = 1;
    /// <summary>A model folder to start from (weights only; optimizer and schedule start fresh), instead of random weights.</summary>
    public string? InitFrom { get; init; }
    /// <summary>
    /// Fraction of batches with images trained with a visual exit: text stops attending the image
    /// from one of <see cref="VisualExitLayers"/> on (drawn per batch). The rest train unmasked, so
    /// unpruned inference keeps its quality while the model learns to read the image early, the
    /// layer dynamics the VisiPruner paper measured in LLaVA (METHODS.md §1).
    /// </summary>
    public double VisualExitFraction { get; init; }
    public int[] VisualExitLayers { get; init; } = { 2 };
    /// <summary>
    /// First step (0-based, over all stages) whose batches may draw a visual exit: a run can learn
    /// its task unmasked and add the exit at the end, as v17's fine-tunes did after v15.
    /// </summary>
    public int VisualExitFromStep { get; init; }

    public int TotalSteps => VisionSteps + TextSteps + AlignSteps + JointSteps;

    /// <summary>The stages in order, with their lengths.</summary>
    public IEnumerable<(string Name, int Steps)> Stages =>
        new[] { ("vision", VisionSteps), ("text", TextSteps), ("align", AlignSteps), ("joint", JointSteps) };

    public void Validate()
    {
        if (VisionSteps < 0 || VisionSteps > 0 && PatchLossWeight == 0) throw new UserError("vision steps need the patch loss (weight > 0)");
        if (TextSteps < 0 || AlignSteps < 0 || JointSteps < 0 || TotalSteps == 0) throw new UserError("training steps must be ≥ 0 and not all zero");
        if (BatchSize < 1 || BatchSize > 4096) throw new UserError($"batch size must be 1..4096, got {BatchSize}");
        if (!(LearningRate > 0 && LearningRate < 1)) throw new UserError($"learning rate must be in (0, 1), got {LearningRate}");
        if (!(MotionFraction >= 0 && StreamingFraction >= 0 && MotionFraction + StreamingFraction <= 1))
            throw new UserError("motion and streaming fractions must be ≥ 0 and sum to at most 1");
        if (QuestionsPerCaption < 0 || QuestionsPerCaption > 16) throw new UserError($"questions per caption must be 0..16, got {QuestionsPerCaption}");
        if (!(AnswerLossWeight > 0 && AnswerLossWeight <= 100)) throw new UserError($"answer loss weight must be in (0, 100], got {AnswerLossWeight}");
        if (StreamingFrames < 1 || StreamingFrames > 32) throw new UserError($"streaming frames must be 1..32, got {StreamingFrames}");
        if (!(PatchLossWeight >= 0 && PatchLossWeight <= 100)) throw new UserError($"patch loss weight must be 0..100, got {PatchLossWeight}");
        if (!(DecoderProbeWeight >= 0 && DecoderProbeWeight <= 100)) throw new UserError($"decoder probe weight must be 0..100, got {DecoderProbeWeight}");
        if (DecoderProbeLayer is { } pl && (pl < 0 || pl >= TextLayers)) throw new UserError($"decoder probe layer must be in 0..{TextLayers - 1}, got {pl}");
        if (!(VisualExitFraction >= 0 && VisualExitFraction <= 1)) throw new UserError($"visual exit fraction must be in [0, 1], got {VisualExitFraction}");
        if (VisualExitFromStep < 0) throw new UserError($"visual exit start step must be ≥ 0, got {VisualExitFromStep}");
        if (VisualExitFraction > 0 && (VisualExitLayers.Length == 0 || VisualExitLayers.Any(l => l < 1 || l >= TextLayers)))
            throw new UserError($"visual exit layers must be in 1..{TextLayers - 1}, got [{string.Join(", ", VisualExitLayers)}] (set --visual-exit-layers, or --visual-exit-fraction 0 to train without exits)");
        if (InitFrom is not null && !File.Exists(Path.Combine(InitFrom, "config.json"))) throw new UserError($"--init-from: no model folder (config.json) at {InitFrom}");
        if (TextLayers < 1 || TextHidden % 32 != 0 || VisionHidden % 32 != 0 || VisionLayers < 1) throw new UserError("model sizes: layers ≥ 1, widths multiples of 32");
    }
}

/// <param name="FeatureScale">RMS of the visual tokens over that of the text embeddings (should stay near 1).</param>
/// <param name="FeatureDiversity">How much visual tokens differ between images, over their RMS (near 0: vision collapsed).</param>
public readonly record struct TrainProgress(int Step, int TotalSteps, string Stage, double Loss, double LearningRate, TimeSpan Elapsed,
    double BatchLoss = double.NaN, double FeatureScale = 0, double FeatureDiversity = 0, double PatchShapeAccuracy = double.NaN,
    double MotionAccuracy = double.NaN, double PatchColourAccuracy = double.NaN);

/// <summary>
/// Trains the demo model from scratch in up to four stages: the vision tower alone on dense patch
/// labels (standing in for CLIP's pretraining), then LLaVA's text-only decoder pretraining,
/// alignment with the decoder frozen, and joint fine-tuning (FINDINGS.md). The shipped recipe is
/// vision → joint. AdamW, warmup + cosine decay per stage, gradient clipping. Checkpoints are written to a temp
/// folder and renamed, and a run resumes from its last checkpoint.
/// </summary>
public sealed class Trainer
{
    readonly TrainOptions _o;
    public Trainer(TrainOptions options) { options.Validate(); _o = options; }

    string CheckpointDir => Path.Combine(_o.OutDir, "checkpoint");

    public (int Step, int Cycles) ResumePoint()
    {
        var state = Path.Combine(CheckpointDir, "trainer_state.json");
        if (!File.Exists(state)) return (0, 0);
        var json = JsonNode.Parse(File.ReadAllText(state))!;
        return ((int)json["step"]!, 0);
    }

    /// <summary>Training seconds up to the last checkpoint, over every earlier run of this folder (0 for checkpoints that predate the count).</summary>
    double SecondsBeforeResume()
    {
        var state = Path.Combine(CheckpointDir, "trainer_state.json");
        if (!File.Exists(state)) return 0;
        return JsonNode.Parse(File.ReadAllText(state))?["seconds"]?.GetValue<double>() ?? 0;
    }

    public string Stage(int step) => StageAt(step).Name;

    (string Name, int Start, int Length) StageAt(int step)
    {
        int start = 0;
        foreach (var (name, steps) in _o.Stages)
        {
            if (step < start + steps) return (name, start, steps);
            start += steps;
        }
        return ("joint", start - _o.JointSteps, _o.JointSteps);
    }

    double LearningRateAt(int step)
    {
        var (_, start, length) = StageAt(step);
        int t = step - start;
        double warm = Math.Min(1.0, (t + 1.0) / Math.Max(1, Math.Min(_o.WarmupSteps, length / 4)));
        double cosine = 0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * t / Math.Max(1, length)));
        return _o.LearningRate * warm * cosine;
    }

    public void Run(IProgress<TrainProgress>? progress, CancellationToken ct)
    {
        torch.manual_seed(_o.Seed);
        var device = torch.CPU;
        var cfg = DemoModelSpec.Config(_o.TextLayers, _o.TextHidden, _o.VisionLayers, _o.VisionHidden);
        var tok = TextTokenizer.FromJson(DemoModelSpec.TokenizerJson());
        using var model = new LlavaModel(cfg, new TensorSpec(device, ScalarType.Float32));
        var (startStep, _) = ResumePoint();
        if (startStep > 0)
            LlavaFamily.LoadWeights(model, SafeTensorsReader.Open(CheckpointDir));
        else if (_o.InitFrom is not null)
            LoadInit(model, cfg, _o.InitFrom);
        else
            ModelInit.Initialize(model, _o.Seed);
        foreach (var p in model.parameters()) p.requires_grad = true;
        model.train();
        // The probes train beside the model but are saved apart: they are not part of the model's layout.
        // A fine-tune starts from the heads its model was trained with, since fresh heads' first
        // gradients pull the features apart (MODEL_CARD).
        var heads = startStep > 0 ? CheckpointDir : _o.InitFrom is { } init ? ProbeHeadsDir(init) : null;
        void LoadHead(nn.Module head, string file)
        {
            if (heads is not null && File.Exists(Path.Combine(heads, file))) head.load(Path.Combine(heads, file));
        }
        using var probe = new PatchProbe(cfg.Vision.HiddenSize);
        LoadHead(probe, PatchProbeFile);
        using var decoderProbe = new DecoderProbe(cfg.Text.HiddenSize, _o.DecoderProbeLayer ?? DecoderProbe.LayerFor(cfg.Text.NumHiddenLayers));
        LoadHead(decoderProbe, DecoderProbeFile);
        var trained = model.parameters().Concat(probe.parameters()).Concat(decoderProbe.parameters()).ToList();
        var optimizer = torch.optim.AdamW(trained, lr: _o.LearningRate, weight_decay: 0.01);
        var optState = Path.Combine(CheckpointDir, "optimizer.bin");
        if (startStep > 0 && File.Exists(optState)) optimizer.load_state_dict(optState);

        using var pre = new ImagePreprocessor(DemoModelSpec.Preprocessor(), device, ScalarType.Float32);
        var batcher = new DemoBatcher(tok, pre, cfg.ImageTokens, device);
        var data = new DemoDataset(DemoSplit.Train, variedCaptions: _o.VariedCaptions);
        var decoderParams = model.language_model.parameters().ToList();
        var visionParams = model.vision_tower.parameters().Concat(model.multi_modal_projector.parameters()).ToList();
        var sw = Stopwatch.StartNew();
        // A resumed run counts the time its checkpoint took, so training.json holds the whole run's cost.
        var prior = TimeSpan.FromSeconds(startStep > 0 ? SecondsBeforeResume() : 0);
        double smoothed = double.NaN, featureScale = 0, featureDiversity = 0, patchAccuracy = double.NaN, colourAccuracy = double.NaN, motionAccuracy = double.NaN;

        for (int step = startStep; step < _o.TotalSteps; step++)
        {
            ct.ThrowIfCancellationRequested();
            var stage = Stage(step);
            // Stage 2 freezes the decoder: only the vision side learns to speak its language.
            foreach (var p in decoderParams) p.requires_grad = stage is "text" or "joint";
            foreach (var p in visionParams) p.requires_grad = stage is "vision" or "align" or "joint";
            var rng = new Random(HashCode.Combine(_o.Seed, step));
            double draw = rng.NextDouble();
            bool streaming = stage is "align" or "joint" && draw < _o.StreamingFraction;
            int frames = streaming ? _o.StreamingFrames
                : stage is "align" or "joint" && draw < _o.StreamingFraction + _o.MotionFraction ? 2 : 1;
            var kind = stage == "vision" || _o.QuestionsPerCaption > 0 || rng.NextDouble() < 0.6 ? SampleKind.Caption : SampleKind.Question;
            int questions = stage is "align" or "joint" ? _o.QuestionsPerCaption : 0;
            // Streaming batches: a window W of 2..all frames, laid out as a session with that window
            // computes it, half describing the last frame (what `ra stream` asks), half its events.
            int band = streaming ? rng.Next(2, frames + 1) : 0;
            bool describe = streaming && rng.NextDouble() < 0.5;
            var samples = Enumerable.Range(0, _o.BatchSize).Select(i =>
            {
                long index = (long)step * _o.BatchSize + i + _o.Seed * 1_000_000_007L;
                if (streaming) return data.StreamingSample(index, frames, DemoModelSpec.ImageSize, band: band, describe: describe);
                return kind == SampleKind.Caption
                    ? data.CaptionSample(index, DemoModelSpec.ImageSize, frames, questions, _o.QuestionMix)
                    : data.QaSample(index, DemoModelSpec.ImageSize, frames, _o.QuestionMix);
            }).ToList();
            double lossValue;
            using (var scope = torch.NewDisposeScope())
            {
                using var batch = batcher.Make(samples, frames, textOnly: stage == "text", _o.AnswerLossWeight);
                // Drawn after every other choice, so the data is the same with or without exits.
                if (_o.VisualExitFraction > 0 && step >= _o.VisualExitFromStep && stage is "align" or "joint" && rng.NextDouble() < _o.VisualExitFraction)
                    batch.VisualExitLayer = _o.VisualExitLayers[rng.Next(_o.VisualExitLayers.Length)];
                foreach (var s in samples) s.Dispose();
                foreach (var g in optimizer.ParamGroups) g.LearningRate = LearningRateAt(step);
                optimizer.zero_grad();
                var parts = stage == "vision"
                    ? DemoBatcher.VisionLoss(model, batch, probe)
                    : DemoBatcher.LossParts(model, batch, probe, stage == "text" ? 0 : _o.PatchLossWeight,
                        decoderProbe, stage == "joint" ? _o.DecoderProbeWeight : 0);
                var (loss, ce) = (parts.Total, parts.CrossEntropy);
                loss.backward();
                if (stage is "align" or "joint") (featureScale, featureDiversity) = (parts.FeatureScale, parts.FeatureDiversity);
                if (!double.IsNaN(parts.PatchShapeAccuracy))
                    patchAccuracy = double.IsNaN(patchAccuracy) ? parts.PatchShapeAccuracy : 0.95 * patchAccuracy + 0.05 * parts.PatchShapeAccuracy;
                if (!double.IsNaN(parts.PatchColourAccuracy))
                    colourAccuracy = double.IsNaN(colourAccuracy) ? parts.PatchColourAccuracy : 0.95 * colourAccuracy + 0.05 * parts.PatchColourAccuracy;
                if (!double.IsNaN(parts.MotionAccuracy))
                    motionAccuracy = double.IsNaN(motionAccuracy) ? parts.MotionAccuracy : 0.9 * motionAccuracy + 0.1 * parts.MotionAccuracy;
                torch.nn.utils.clip_grad_norm_(trained.Where(p => p.requires_grad), _o.ClipNorm);
                optimizer.step();
                lossValue = ce.item<float>();
            }
            smoothed = double.IsNaN(smoothed) ? lossValue : 0.95 * smoothed + 0.05 * lossValue;
            progress?.Report(new TrainProgress(step + 1, _o.TotalSteps, stage, smoothed, LearningRateAt(step), sw.Elapsed, lossValue, featureScale, featureDiversity, patchAccuracy, motionAccuracy, colourAccuracy));
            if ((step + 1) % _o.CheckpointEvery == 0 || step + 1 == _o.TotalSteps)
                SaveCheckpoint(model, probe, decoderProbe, optimizer, step + 1, smoothed, sw.Elapsed + prior);
        }
        Export(model, _o.OutDir, sw.Elapsed + prior);
    }

    void SaveCheckpoint(LlavaModel model, PatchProbe probe, DecoderProbe decoderProbe, TorchSharp.Modules.AdamW optimizer, int step, double loss, TimeSpan elapsed)
    {
        // Write everything into a fresh folder, then swap it in: an interrupted save leaves the
        // previous checkpoint intact.
        var tmp = CheckpointDir + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        LlavaFamily.Save(model, tmp, extraConfig: DemoModelSpec.ExtraConfig(_o.FramesSeen));
        DemoModelSpec.WriteSidecars(tmp); // a checkpoint is a loadable model folder (eval it mid-run)
        optimizer.save_state_dict(Path.Combine(tmp, "optimizer.bin"));
        probe.save(Path.Combine(tmp, PatchProbeFile));
        decoderProbe.save(Path.Combine(tmp, DecoderProbeFile));
        File.WriteAllText(Path.Combine(tmp, "trainer_state.json"), JsonSerializer.Serialize(new { step, loss, seconds = Math.Round(elapsed.TotalSeconds, 1), options = _o }));
        var old = CheckpointDir + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(CheckpointDir)) Directory.Move(CheckpointDir, old);
        Directory.Move(tmp, CheckpointDir);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    public const string PatchProbeFile = "patch_probe.bin", DecoderProbeFile = "decoder_probe.bin";

    /// <summary>
    /// Where a model folder keeps the training probes' heads: beside its weights (the shipped demo
    /// model), else in the final checkpoint of the run that wrote it. Null: nowhere.
    /// </summary>
    public static string? ProbeHeadsDir(string modelDir) =>
        new[] { modelDir, Path.Combine(modelDir, "checkpoint") }.FirstOrDefault(d => File.Exists(Path.Combine(d, PatchProbeFile)));

    // Weights from a model folder of the same shape; a mismatch is the user's error, said in one line.
    static void LoadInit(LlavaModel model, LlavaConfig cfg, string dir)
    {
        var init = LlavaConfig.Load(dir);
        if (init.Text.NumHiddenLayers != cfg.Text.NumHiddenLayers || init.Text.HiddenSize != cfg.Text.HiddenSize
            || init.Vision.NumHiddenLayers != cfg.Vision.NumHiddenLayers || init.Vision.HiddenSize != cfg.Vision.HiddenSize)
            throw new UserError($"--init-from {dir}: its sizes differ from the ones asked for (text {init.Text.NumHiddenLayers}×{init.Text.HiddenSize}, vision {init.Vision.NumHiddenLayers}×{init.Vision.HiddenSize})");
        LlavaFamily.LoadWeights(model, SafeTensorsReader.Open(dir));
    }

    void Export(LlavaModel model, string dir, TimeSpan elapsed)
    {
        LlavaFamily.Save(model, dir, extraConfig: DemoModelSpec.ExtraConfig(_o.FramesSeen));
        DemoModelSpec.WriteSidecars(dir);
        File.WriteAllText(Path.Combine(dir, "training.json"), JsonSerializer.Serialize(new
        {
            options = _o,
            steps = _o.TotalSteps,
            seconds = Math.Round(elapsed.TotalSeconds, 1),
            parameters = model.parameters().Sum(p => p.numel()),
        }, new JsonSerializerOptions { WriteIndented = true }));
    }
}
