using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>
/// Which part of the world a sample comes from. Train seeds are even, Eval and Validation seeds
/// odd: held out from training. Validation draws from its own index range (2^40 on), so choices
/// tuned on it (a pruning schedule) are scored on Eval scenes they never saw; a test checks the
/// sets the tools use do not share a seed.
/// </summary>
public enum DemoSplit { Train, Eval, Validation }

/// <summary>
/// Frames for the model (BGR 8UC3), the prompt, and the target text. Disposing frees the frames.
/// <see cref="Drawn"/> holds the scene graph drawn in each frame (training's dense vision labels).
/// </summary>
public sealed record DemoSample(IReadOnlyList<Mat> Frames, string Prompt, string Target) : IDisposable
{
    public IReadOnlyList<Scene> Drawn { get; init; } = [];

    /// <summary>
    /// How many frames each frame and the text may see, counting back from themselves (0 = all):
    /// a streaming session with a window of W frames computes every frame's KV with the W−1 frames
    /// before it, and the caption with the last W. Training with the same band teaches the model
    /// the KV a running session really holds, where older frames' keys have seen frames since evicted.
    /// </summary>
    public int Band { get; init; }

    /// <summary>
    /// More questions about the same frames, each with its answer. Training lays them out after the
    /// target so that each is learnt exactly as if asked alone, for one pass over the frames
    /// (LLaVA's several turns per image, without the turns seeing each other).
    /// </summary>
    public IReadOnlyList<QaPair> Branches { get; init; } = [];

    public Mat Image => Frames[^1];

    public void Dispose()
    {
        foreach (var f in Frames) f.Dispose();
    }
}

/// <summary>
/// Training and evaluation samples, each a pure function of (split, index). Single frames cannot
/// show motion, so one-frame samples leave motion out of targets and questions; with two or more
/// frames the scene moves by one motion step across the frames and targets describe motion and
/// the positions at the last frame.
/// </summary>
public sealed class DemoDataset(DemoSplit split, bool variedCaptions = false)
{
    public const int DefaultFps = 15;

    public DemoSplit Split { get; } = split;

    /// <summary>The seed for a sample: hashed index and sample kind, low bit = split.</summary>
    public int SeedFor(long index, int kind)
    {
        if (Split == DemoSplit.Validation) index += 1L << 40;
        ulong z = (ulong)index * 4 + (ulong)kind + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFE) | (Split == DemoSplit.Train ? 0 : 1);
    }

    public Scene SceneFor(long index) => Scene.FromSeed(SeedFor(index, 0));

    /// <summary>Prompt "describe the scene ." with the scene's caption as target.</summary>
    /// <param name="questions">Distinct questions about the same scene to carry as <see cref="DemoSample.Branches"/>.</param>
    /// <param name="mix">How those questions' types are drawn.</param>
    public DemoSample CaptionSample(long index, int size = 64, int frames = 1, int questions = 0, QuestionMix mix = QuestionMix.Uniform)
    {
        int seed = SeedFor(index, 0);
        var scene = Scene.FromSeed(seed);
        bool motion = frames > 1;
        var last = motion ? scene.Advanced(1) : scene;
        string target = variedCaptions
            ? CaptionGrammar.Caption(last, new Random(~seed), motion)
            : CaptionGrammar.Canonical(last, motion);
        return new DemoSample(RenderFrames(scene, seed, size, frames), DemoVocabulary.CaptionPrompt, target)
        {
            Drawn = DrawnScenes(scene, frames),
            Branches = questions == 0 ? [] : DistinctQuestions(last, new Random(seed ^ 0x5bd1e995), motion, questions, mix),
        };
    }

    // Up to n different questions (a scene with few objects may support fewer).
    private static List<QaPair> DistinctQuestions(Scene scene, Random rng, bool motion, int n, QuestionMix mix)
    {
        var list = new List<QaPair>();
        for (int tries = 0; list.Count < n && tries < 4 * n; tries++)
        {
            var qa = QuestionGenerator.Sample(scene, rng, motion, mix);
            if (list.All(q => q.Question != qa.Question)) list.Add(qa);
        }
        return list;
    }

    /// <summary>A question about the scene as prompt, its answer as target.</summary>
    public DemoSample QaSample(long index, int size = 64, int frames = 1, QuestionMix mix = QuestionMix.Uniform)
    {
        int seed = SeedFor(index, 1);
        var scene = Scene.FromSeed(seed);
        bool motion = frames > 1;
        var qa = QuestionGenerator.Sample(motion ? scene.Advanced(1) : scene, new Random(~seed), motion, mix);
        return new DemoSample(RenderFrames(scene, seed, size, frames), qa.Question, qa.Answer) { Drawn = DrawnScenes(scene, frames) };
    }

    /// <summary>
    /// <paramref name="frames"/> frames of a clip, <paramref name="stride"/> video frames apart, from a
    /// random point; the target is <see cref="Clip.CaptionFor"/> over the window (its events, then the last scene).
    /// </summary>
    /// <param name="band">0: every frame sees the whole window. 1..frames−1: the sample is laid out as a streaming
    /// session with that window holds it (<see cref="DemoSample.Band"/>), and the target covers the last <paramref name="band"/> frames.</param>
    /// <param name="describe">Prompt "describe the scene ." with the last frame's scene as target, instead of the events prompt.</param>
    public DemoSample StreamingSample(long index, int frames = 8, int size = 64, int stride = 5, int fps = DefaultFps,
        int band = 0, bool describe = false)
    {
        if (frames < 1 || stride < 1) throw new ArgumentOutOfRangeException(nameof(frames), "Need at least one frame and a stride of at least 1.");
        if (band < 0 || band > frames) throw new ArgumentOutOfRangeException(nameof(band), "The band must be 0..frames.");
        int seed = SeedFor(index, 2);
        int span = (frames - 1) * stride;
        var clip = ClipGenerator.Generate(seed, (span + 3.0 * fps) / fps, fps);
        int first = new Random(~seed).Next(0, clip.FrameCount - span);
        var images = new List<Mat>();
        var drawn = new List<Scene>();
        for (int i = 0; i < frames; i++)
        {
            images.Add(clip.Render(first + i * stride, size, size));
            drawn.Add(new Scene(clip.ObjectsAt(first + i * stride), clip.Backdrop));
        }
        int seen = band == 0 ? frames : band, from = first + (frames - seen) * stride, last = first + span;
        var target = describe
            ? CaptionGrammar.Canonical(clip.SceneAt(last), withMotion: seen > 1)
            : clip.CaptionFor(from, last);
        var prompt = describe ? DemoVocabulary.CaptionPrompt : DemoVocabulary.StreamingPrompt;
        return new DemoSample(images, prompt, target) { Drawn = drawn, Band = band == frames ? 0 : band };
    }

    // The same motion steps RenderFrames draws with.
    private static List<Scene> DrawnScenes(Scene scene, int frames) =>
        Enumerable.Range(0, frames).Select(i => frames == 1 ? scene : scene.Advanced(i / (double)(frames - 1))).ToList();

    private static List<Mat> RenderFrames(Scene scene, int seed, int size, int frames)
    {
        var list = new List<Mat>();
        for (int i = 0; i < frames; i++)
            list.Add(SceneRenderer.Render(scene, size, size, seed + i, frames == 1 ? 0 : i / (double)(frames - 1)));
        return list;
    }
}
