using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Training;

public enum SampleKind { Caption, Question }

/// <summary>A training batch laid out as the GPE scheme prescribes (METHODS.md §2).</summary>
public sealed class DemoBatch : IDisposable
{
    public Tensor? Pixels { get; init; }     // [B·F, 3, H, W] or null for text-only
    public required Tensor Ids { get; init; }        // [B, T]
    public required Tensor Labels { get; init; }     // [B, T], −100 where no loss
    public required Tensor Positions { get; init; }  // [B, T] group positions
    public required long[] ImageSlots { get; init; }
    public int Frames { get; init; }
    /// <summary>Dense per-patch labels for every image, when the samples carry their scene graphs.</summary>
    public PatchTargets? Patches { get; init; }
    /// <summary>
    /// The attention mask (true = may attend), or null for causal: [T, T] for a streaming band,
    /// [B, 1, T, T] when rows carry question branches.
    /// </summary>
    public Tensor? Mask { get; init; }
    /// <summary>[B, T] weight of each label in the cross-entropy (0 where no loss), or null for a plain mean.</summary>
    public Tensor? LabelWeights { get; init; }
    /// <summary>
    /// Visual exit: from this decoder layer on, no text token attends an image token (null: never).
    /// Exactly what a pruner's exit at that layer computes, so a model trained with it keeps its
    /// captions when the image is dropped there (<see cref="TrainOptions.VisualExitFraction"/>).
    /// </summary>
    public int? VisualExitLayer { get; set; }
    public void Dispose() { Pixels?.Dispose(); Ids.Dispose(); Labels.Dispose(); Positions.Dispose(); Patches?.Dispose(); Mask?.Dispose(); LabelWeights?.Dispose(); }

    /// <summary><see cref="Mask"/> (or causal) with every text-row × image-column entry cleared, [T, T] or [B, 1, T, T].</summary>
    public Tensor VisualExitMask()
    {
        long T = Ids.size(1);
        var dev = Ids.device;
        var isImage = torch.zeros(T, ScalarType.Bool, dev).index_fill_(0, torch.tensor(ImageSlots, device: dev), true);
        var textReadsImage = isImage.logical_not().unsqueeze(1).logical_and(isImage.unsqueeze(0)); // [T, T]
        var mask = Mask ?? SelfAttention.CausalMask(T, T, dev);
        return mask.logical_and(textReadsImage.logical_not());
    }
}

/// <summary>
/// Turns scene-world samples into token batches. Source = per frame [image tokens, "frame"], then
/// the prompt; target = the answer and &lt;/s&gt;. Source positions run 0, 1, …; target positions
/// restart at φ = 0 (group position encoding), so the model reads captions the way the streaming
/// session writes them. The mask is plain causal: the source precedes the target, so it never sees it.
/// A sample's <see cref="DemoSample.Branches"/> follow its target in the same row: each branch's
/// prompt and answer sit at the positions they would have alone and see only the frames and
/// themselves, so one pass over the frames trains several questions, each exactly as if asked alone.
/// </summary>
public sealed class DemoBatcher
{
    public const int Ignore = -100;
    readonly TextTokenizer _tok;
    readonly ImagePreprocessor _pre;
    readonly int _imageTokens;
    readonly Device _device;
    readonly int _markerId;

    public DemoBatcher(TextTokenizer tokenizer, ImagePreprocessor pre, int imageTokens, Device device)
    {
        _tok = tokenizer; _pre = pre; _imageTokens = imageTokens; _device = device;
        _markerId = tokenizer.TokenToId(DemoVocabulary.FrameMarker) ?? throw new InvalidOperationException("no frame marker in vocabulary");
    }

    /// <summary>Source ids for <paramref name="frames"/> frames then the prompt (what inference feeds too).</summary>
    public List<int> SourceIds(int frames, string prompt)
    {
        var ids = new List<int>();
        for (int f = 0; f < frames; f++)
        {
            ids.AddRange(Enumerable.Repeat(DemoModelSpec.ImageId, _imageTokens));
            ids.Add(_markerId);
        }
        ids.AddRange(_tok.Encode(prompt, addSpecialTokens: false));
        return ids;
    }

    /// <param name="answerWeight">With question branches: each answer token's weight in the loss, against 1 for the
    /// caption's. A caption is about 20 tokens and an answer 2, so at 1 the answers get a third of the gradient.</param>
    public DemoBatch Make(IReadOnlyList<DemoSample> samples, int frames, bool textOnly, double answerWeight = 1)
    {
        var rows = samples.Select(s =>
        {
            var src = textOnly ? _tok.Encode(s.Prompt, false) : SourceIds(frames, s.Prompt);
            var tgt = _tok.Encode(s.Target, false).Append(DemoModelSpec.EosId).ToList();
            var branches = s.Branches.Select(b => (Prompt: _tok.Encode(b.Question, false), Target: _tok.Encode(b.Answer, false).Append(DemoModelSpec.EosId).ToList())).ToList();
            return (src, tgt, branches);
        }).ToList();
        int B = rows.Count;
        int band = textOnly ? 0 : samples[0].Band;
        if (samples.Any(s => s.Band != band)) throw new ArgumentException("one band per batch: the mask is shared by its rows");
        bool branched = rows.Any(r => r.branches.Count > 0);
        if (branched && (textOnly || band > 0)) throw new ArgumentException("question branches need frames and no streaming band");
        if (branched) return MakeBranched(samples, rows, frames, answerWeight);
        int T = rows.Max(r => r.src.Count + r.tgt.Count - 1);
        // A session's target counts from the oldest frame it still holds.
        long origin = band > 0 ? (long)(frames - band) * (_imageTokens + 1) : 0;
        var ids = new long[B * T];
        var labels = Enumerable.Repeat((long)Ignore, B * T).ToArray();
        var pos = new long[B * T];
        for (int b = 0; b < B; b++)
        {
            var (src, tgt, _) = rows[b];
            var seq = src.Concat(tgt).ToList();
            for (int i = 0; i < seq.Count - 1; i++)
            {
                ids[b * T + i] = seq[i];
                pos[b * T + i] = i < src.Count ? i : origin + i - src.Count; // target restarts at φ = 0 past the window's start
                if (i >= src.Count - 1) labels[b * T + i] = seq[i + 1];
            }
        }
        return new DemoBatch
        {
            Pixels = textOnly ? null : Pixels(samples),
            Ids = torch.tensor(ids, new long[] { B, T }, device: _device),
            Labels = torch.tensor(labels, new long[] { B, T }, device: _device),
            Positions = torch.tensor(pos, new long[] { B, T }, device: _device),
            ImageSlots = textOnly ? Array.Empty<long>() : Slots(frames),
            Frames = frames,
            Patches = textOnly ? null : Patches(samples),
            Mask = band > 0 ? BandMask(T, frames, _imageTokens + 1, band, _device) : null,
        };
    }

    // Rows of [frames][prompt, target][prompt₁, answer₁]…: every segment after the frames starts
    // from the frames' end in position (targets from φ = 0) and attends the frames and itself only.
    DemoBatch MakeBranched(IReadOnlyList<DemoSample> samples, List<(List<int> src, List<int> tgt, List<(List<int> Prompt, List<int> Target)> branches)> rows, int frames,
        double answerWeight)
    {
        int framesEnd = frames * (_imageTokens + 1), B = rows.Count;
        var segments = rows.Select(r =>
            new[] { (Prompt: r.src.Skip(framesEnd).ToList(), Target: r.tgt) }.Concat(r.branches).ToList()).ToList();
        int T = segments.Max(s => framesEnd + s.Sum(g => g.Prompt.Count + g.Target.Count - 1));
        var ids = new long[B * T];
        var labels = Enumerable.Repeat((long)Ignore, B * T).ToArray();
        var weights = new float[B * T];
        var pos = new long[B * T];
        var allowed = new bool[B * T * T];
        for (int b = 0; b < B; b++)
        {
            int row = b * T;
            for (int i = 0; i < framesEnd; i++)
            {
                ids[row + i] = rows[b].src[i];
                pos[row + i] = i;
                for (int k = 0; k <= i; k++) allowed[(row + i) * T + k] = true;
            }
            int at = framesEnd;
            for (int g = 0; g < segments[b].Count; g++)
            {
                var (prompt, target) = segments[b][g];
                var seq = prompt.Concat(target).ToList();
                int start = at;
                for (int j = 0; j < seq.Count - 1; j++, at++)
                {
                    ids[row + at] = seq[j];
                    pos[row + at] = j < prompt.Count ? framesEnd + j : j - prompt.Count;
                    if (j >= prompt.Count - 1) { labels[row + at] = seq[j + 1]; weights[row + at] = g == 0 ? 1 : (float)answerWeight; }
                    for (int k = 0; k < framesEnd; k++) allowed[(row + at) * T + k] = true;
                    for (int k = start; k <= at; k++) allowed[(row + at) * T + k] = true;
                }
            }
            for (; at < T; at++) allowed[(row + at) * T + at] = true; // padding sees itself (no empty softmax row)
        }
        return new DemoBatch
        {
            Pixels = Pixels(samples),
            Ids = torch.tensor(ids, new long[] { B, T }, device: _device),
            Labels = torch.tensor(labels, new long[] { B, T }, device: _device),
            Positions = torch.tensor(pos, new long[] { B, T }, device: _device),
            ImageSlots = Slots(frames),
            Frames = frames,
            Patches = Patches(samples),
            Mask = torch.tensor(allowed, new long[] { B, 1, T, T }, device: _device),
            LabelWeights = answerWeight == 1 ? null : torch.tensor(weights, new long[] { B, T }, device: _device),
        };
    }

    Tensor Pixels(IReadOnlyList<DemoSample> samples)
    {
        using var scope = torch.NewDisposeScope();
        var list = new List<Tensor>();
        foreach (var s in samples)
            foreach (var f in s.Frames) list.Add(_pre.Process(f));
        return torch.cat(list.ToArray(), 0).MoveToOuterDisposeScope();
    }

    PatchTargets? Patches(IReadOnlyList<DemoSample> samples) =>
        samples.All(s => s.Drawn.Count == s.Frames.Count)
            ? PatchTargets.Build(samples.SelectMany(s => s.Drawn).ToList(), (int)Math.Round(Math.Sqrt(_imageTokens)), _device)
            : null;

    long[] Slots(int frames) =>
        Enumerable.Range(0, frames).SelectMany(f => Enumerable.Range(f * (_imageTokens + 1), _imageTokens)).Select(i => (long)i).ToArray();

    /// <summary>
    /// Causal, except that a token of frame f sees only frames f−band+1..f, and the text after the
    /// frames only the last <paramref name="band"/> frames: what a session with that window computes.
    /// </summary>
    /// <param name="frameBand">Frames a frame's tokens see (default: <paramref name="band"/>; StreamingOptions.FrameBand).</param>
    public static Tensor BandMask(int T, int frames, int frameTokens, int band, Device device, int? frameBand = null)
    {
        int fb = frameBand ?? band;
        var allowed = new bool[T * T];
        int frameEnd = frames * frameTokens;
        for (int q = 0; q < T; q++)
        {
            bool text = q >= frameEnd;
            int fq = text ? frames - 1 : q / frameTokens, reach = text ? band : fb;
            for (int k = 0; k <= q; k++)
                allowed[q * T + k] = k >= frameEnd || fq - k / frameTokens < reach;
        }
        return torch.tensor(allowed, new long[] { T, T }, device: device);
    }

    /// <summary>Forward pass and mean cross-entropy over the target tokens.</summary>
    public static Tensor Loss(LlavaModel model, DemoBatch batch) => LossParts(model, batch).Total;

    /// <summary>
    /// Cross-entropy over the target tokens, plus (with a probe) the vision tower's dense patch
    /// loss weighted by <paramref name="probeWeight"/>, and two health readings of the visual
    /// tokens: their RMS over the text embeddings' (it should stay near 1) and how much they
    /// differ between images relative to their size (near 0 means the vision side has collapsed
    /// to one vector and the captions ignore the image). Both failures happened in earlier runs;
    /// see docs/BENCHMARKS.md.
    /// </summary>
    /// <summary>Stage 0: the patch probe's loss on the vision tower alone (no decoder).</summary>
    public static LossReport VisionLoss(LlavaModel model, DemoBatch batch, PatchProbe probe)
    {
        if (batch.Pixels is null || batch.Patches is null) throw new InvalidOperationException("the vision stage needs images with scene graphs");
        var (_, last) = model.vision_tower.Features(batch.Pixels);
        var (loss, acc, colour) = probe.Loss(last, batch.Patches);
        return new LossReport(loss, loss, PatchShapeAccuracy: acc, PatchColourAccuracy: colour);
    }

    public static LossReport LossParts(LlavaModel model, DemoBatch batch, PatchProbe? probe = null, double probeWeight = 0,
        DecoderProbe? decoderProbe = null, double decoderWeight = 0)
    {
        Tensor? feats = null, patchStates = null;
        if (batch.Pixels is not null)
        {
            var (v, last) = model.vision_tower.Features(batch.Pixels);
            patchStates = last;
            var f = model.multi_modal_projector.forward(v);                   // [B·F, N, D]
            feats = f.reshape(batch.Ids.size(0), -1, f.size(-1));           // [B, F·N, D]
        }
        var embeds = model.Embed(batch.Ids, feats, batch.ImageSlots);
        bool tap = decoderProbe is not null && decoderWeight > 0 && batch.Patches is not null && feats is not null;
        var step = new DecoderStep { Positions = Array.Empty<long>(), PositionTensor = batch.Positions, Mask = batch.Mask };
        if (batch.VisualExitLayer is { } exit && feats is not null) step = step with { Plan = new MaskPlan(batch.Mask, batch.VisualExitMask(), exit) };
        var h = model.Decoder.Forward(embeds, step,
            tap ? decoderProbe!.Layer : -1, out var tapped);
        var logits = model.language_model.Logits(h);
        // lm is what trains; ce (the plain mean) is what the log reports, comparable across weightings.
        Tensor ce, lm;
        if (batch.LabelWeights is { } w)
        {
            // One per-token pass gives both means (ignored labels contribute 0).
            var perToken = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), batch.Labels.view(-1), ignore_index: Ignore, reduction: torch.nn.Reduction.None);
            var wf = w.view(-1);
            ce = perToken.sum() / batch.Labels.ne(Ignore).sum();
            lm = (perToken * wf).sum() / wf.sum();
        }
        else lm = ce = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), batch.Labels.view(-1), ignore_index: Ignore);
        if (feats is null) return new LossReport(lm, ce);
        var total = lm;
        double shapeAccuracy = double.NaN, colourAccuracy = double.NaN;
        if (probe is not null && batch.Patches is not null && probeWeight > 0)
        {
            var (aux, acc, colour) = probe.Loss(patchStates!, batch.Patches);
            total = lm + probeWeight * aux;
            (shapeAccuracy, colourAccuracy) = (acc, colour);
        }
        double motionAccuracy = double.NaN;
        if (tap)
        {
            long n = patchStates!.size(1);
            var lastSlots = torch.tensor(batch.ImageSlots[^(int)n..], device: tapped!.device);
            var (aux, acc) = decoderProbe!.Loss(tapped.index_select(1, lastSlots), batch.Patches!, batch.Frames);
            total = total + decoderWeight * aux;
            motionAccuracy = acc;
        }
        using var _ = torch.no_grad();
        var rms = feats.pow(2).mean().sqrt();
        var scale = (rms / model.Decoder.embed_tokens.weight.pow(2).mean().sqrt()).item<float>();
        var diversity = feats.size(0) > 1 ? (feats.std(0).mean() / rms).item<float>() : 0;
        return new LossReport(total, ce, scale, diversity, shapeAccuracy, motionAccuracy, colourAccuracy);
    }
}

/// <param name="PatchShapeAccuracy">The probe's shape accuracy on object patches (NaN without a probe).</param>
/// <param name="MotionAccuracy">The decoder probe's motion accuracy on the last frame's object patches (NaN when not run).</param>
public readonly record struct LossReport(Tensor Total, Tensor CrossEntropy, double FeatureScale = 0, double FeatureDiversity = 0,
    double PatchShapeAccuracy = double.NaN, double MotionAccuracy = double.NaN, double PatchColourAccuracy = double.NaN);
