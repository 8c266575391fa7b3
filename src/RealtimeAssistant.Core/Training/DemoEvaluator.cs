using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Training;

public sealed record EvalReport
{
    public int Scenes { get; init; }
    /// <summary>
    /// Attribute scores (each object's presence at a cell, colour, shape and motion as separate facts)
    /// over single-frame captions and two-frame ones (which add motion).
    /// </summary>
    public double Precision { get; init; }
    public double Recall { get; init; }
    public double F1 { get; init; }
    public double F1Still { get; init; }
    public double F1Motion { get; init; }
    /// <summary>Object-level F1: a fact counts only when the object's colour and shape are both right.</summary>
    public double ObjectF1 { get; init; }
    /// <summary>F1 of each attribute alone (at = something at the cell, colour, shape, motion).</summary>
    public Dictionary<string, double> AttributeF1 { get; init; } = new();
    public double QaAccuracy { get; init; }
    public int Questions { get; init; }
    /// <summary>QA accuracy by question type (<see cref="QuestionGenerator.Kind"/>).</summary>
    public Dictionary<string, double> QaAccuracyByKind { get; init; } = new();
    public double CaptionMsMedian { get; init; }
    public List<(string Reference, string Predicted)> Examples { get; init; } = new();
    /// <summary>The first wrong answers, so a user can see what kind of mistake the model makes.</summary>
    public List<(string Question, string Answer, string Predicted)> QaMistakes { get; init; } = new();
}

/// <summary>
/// Scores a model on held-out scenes (the Eval split: seeds never seen in training), through the
/// same Captioner a user's caption goes through.
/// </summary>
public static class DemoEvaluator
{
    public static EvalReport Run(Engine engine, int scenes, IProgress<int>? progress = null, CancellationToken ct = default)
    {
        if (scenes < 1 || scenes > 100_000) throw new UserError($"--scenes must be 1..100000, got {scenes}");
        var data = new DemoDataset(DemoSplit.Eval);
        var captioner = new Captioner(engine);
        var marker = DemoVocabulary.FrameMarker;
        var opts = new GenerationOptions { MaxNewTokens = 48 };
        FactScore still = default, motion = default, objects = default;
        var kinds = AttributeScorer.Kinds.ToDictionary(k => k, _ => default(FactScore));
        int correct = 0, asked = 0, done = 0;
        var byKind = new SortedDictionary<string, (int Right, int Asked)>();
        var ms = new List<double>();
        var examples = new List<(string, string)>();
        var mistakes = new List<(string, string, string)>();
        string Run(IReadOnlyList<Mat> frames, string prompt)
        {
            var p = string.Concat(frames.Select(_ => $"<image> {marker} ")) + prompt;
            var sw = Stopwatch.StartNew();
            var text = string.Concat(captioner.Caption(frames, p, opts, new CaptionTimings()).Select(e => e.Text));
            if (frames.Count == 1) ms.Add(sw.Elapsed.TotalMilliseconds);
            return text.Trim();
        }
        for (int i = 0; i < scenes; i++)
        {
            ct.ThrowIfCancellationRequested();
            // Captions: alternate still frames and two-frame motion samples.
            int frames = i % 3 == 2 ? 2 : 1;
            using (var s = data.CaptionSample(i, DemoModelSpec.ImageSize, frames))
            {
                var predicted = Run(s.Frames, s.Prompt);
                var score = AttributeScorer.ScoreByAttribute(predicted, s.Target);
                if (frames == 1) still += score; else motion += score;
                objects += AttributeScorer.Score(predicted, s.Target);
                foreach (var (k, v) in AttributeScorer.ScoreEachAttribute(predicted, s.Target)) kinds[k] += v;
                if (examples.Count < 8) examples.Add((s.Target, predicted));
            }
            using (var q = data.QaSample(i, DemoModelSpec.ImageSize, frames))
            {
                asked++;
                var answer = Run(q.Frames, q.Prompt);
                bool right = QaScorer.Correct(answer, q.Target);
                if (right) correct++;
                else if (mistakes.Count < 40) mistakes.Add((q.Prompt, q.Target, answer));
                var kind = QuestionGenerator.Kind(q.Prompt);
                var (r, a) = byKind.GetValueOrDefault(kind);
                byKind[kind] = (r + (right ? 1 : 0), a + 1);
            }
            progress?.Report(++done);
        }
        var all = still + motion;
        ms.Sort();
        return new EvalReport
        {
            Scenes = scenes,
            Precision = all.Precision, Recall = all.Recall, F1 = all.F1,
            F1Still = still.F1, F1Motion = motion.F1, ObjectF1 = objects.F1,
            AttributeF1 = kinds.ToDictionary(kv => kv.Key, kv => kv.Value.F1),
            QaAccuracy = asked == 0 ? 0 : (double)correct / asked,
            Questions = asked,
            QaAccuracyByKind = byKind.ToDictionary(kv => kv.Key, kv => (double)kv.Value.Right / kv.Value.Asked),
            CaptionMsMedian = ms.Count == 0 ? 0 : ms[ms.Count / 2],
            Examples = examples,
            QaMistakes = mistakes,
        };
    }
}
