using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Output;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Tests.Capture;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.App;

/// <summary>The app's path on the bundled demo model: annotate streams through the GPE session, with the governor, and reads each frame once.</summary>
[Collection("GL")]
public class AppPathTests(ITestOutputHelper log)
{
    /// <summary>The vision side as it is, counting which frames (by their stamp) it was asked to prepare.</summary>
    sealed class CountingModel(IVisionLanguageModel inner) : IVisionLanguageModel
    {
        public readonly List<int> Prepared = new();
        public string ModelType => inner.ModelType;
        public TorchSharp.torch.nn.Module Module => inner.Module;
        public LanguageModel Language => inner.Language;
        public TextConfig Text => inner.Text;
        public Device Device => inner.Device;
        public ScalarType DType => inner.DType;
        public string ImageMarker => inner.ImageMarker;
        public string ImageSnippet => inner.ImageSnippet;
        public (long Vision, long Decoder) ParameterCounts => inner.ParameterCounts;
        public IPreparedImage Prepare(Mat bgr, ImageUse use) { lock (Prepared) Prepared.Add(SlowSession.ReadMark(bgr)); return inner.Prepare(bgr, use); }
        public IReadOnlyList<EncodedImage> Encode(IReadOnlyList<IPreparedImage> images) => inner.Encode(images);
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void EveryFrameIsVisionEncodedAtMostOnce_AndOnlyModelFramesAre()
    {
        using var loaded = AppModel.Load(null, new EngineOptions());
        var counting = new CountingModel(loaded.Model);
        var engine = new Engine { Model = counting, Tokenizer = loaded.Tokenizer, Layout = loaded.Layout, Directory = loaded.Directory };
        var clip = RealtimeAssistant.Demo.ClipGenerator.Generate(1_000_011, 4, 15);
        var source = new GeneratedFrameSource(i => { var m = clip.Render((int)i, 96, 96); SlowSession.MarkFrame(m, i); return m; }, 15, count: clip.FrameCount, realtime: false);
        using var session = new GpeSession(engine, new StreamingOptions { WindowFrames = 2 });
        var options = AppTestSupport.Loop(Pacing.File, stride: 5, policy: "every:2", gate: 1.0, budgetMs: 500, schedule: engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers));
        using var loop = new FrameLoop(source, session, new Profiler(), options);
        var result = loop.RunFile((_, _) => { }, _ => { }, null, CancellationToken.None);
        log.WriteLine($"prepared {string.Join(",", counting.Prepared)}; read {result.Stats.Read}, unchanged {result.Stats.Skipped}");
        Assert.Equal(clip.FrameCount, result.FramesRendered);
        // The model's warm-up prepared one synthetic frame before the stream's first.
        Assert.True(loop.WarmUpMs > 0);
        var stream = counting.Prepared.Skip(1).ToList();
        Assert.Equal(stream.Distinct().Count(), stream.Count);        // never twice
        Assert.All(stream, i => Assert.Equal(0, i % 5));               // model frames only
        Assert.Equal(result.Stats.Read, stream.Count);                 // one vision encode per read
        Assert.True(result.Captions >= 3);
    }

    [Fact]
    public async Task Annotate_OnTheDemoModel_WritesCaptionsWhoseJsonlSaysGpe_AndTheBudget()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("app-path"), frames: 60, fps: 15, width: 128, height: 96);
        var dir = Path.Combine(TestMedia.TempDir("app-path-out"), "out");
        var output = new StringWriter();
        var saved = Console.Error;
        Console.SetError(output);
        int code;
        try { code = await AnnotateCommand.Create().Parse([input, "-o", dir, "--every", "10", "--gate", "0"]).InvokeAsync(); }
        finally { Console.SetError(saved); }
        log.WriteLine(output.ToString());
        Assert.Equal(0, code);
        Assert.Contains("GPE session · window 2 · every 5th frame ·", output.ToString());
        Assert.Contains("frame budget 333.3 ms (one stride: 1000 × 5 / 15 fps)", output.ToString());
        var entries = CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName));
        Assert.Equal(6, entries.Count); // 12 reads (every 5th of 60 frames), a caption every 2 reads from the first
        foreach (var e in entries)
        {
            Assert.Equal("gpe", e.Extra!["mode"]!.ToString());
            Assert.NotNull(e.Extra["read_ms"]);
            Assert.NotNull(e.Extra["write_ms"]);
            Assert.NotNull(e.Extra["level"]);
        }
        Assert.Equal("1", entries[0].Extra!["frames_read"]!.ToString());
        Assert.All(entries.Skip(1), e => Assert.Equal("2", e.Extra!["frames_read"]!.ToString()));
    }

    [Fact]
    public async Task Annotate_ModeReencode_AndPruningNone_TurnEachOff()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("app-path-re"), frames: 30, fps: 15, width: 96, height: 64);
        var dir = Path.Combine(TestMedia.TempDir("app-path-re-out"), "out");
        Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", dir, "--every", "10", "--mode", "reencode", "--prune-method", "none"]).InvokeAsync());
        var entries = CaptionJsonl.Read(Path.Combine(dir, OutputFolder.JsonlName));
        Assert.NotEmpty(entries);
        Assert.All(entries, e =>
        {
            Assert.Equal("reencode", e.Extra!["mode"]!.ToString());
            Assert.Equal(e.Extra["visual_tokens"]!.ToString(), e.KeptTokens.ToString());  // nothing pruned
        });
        Assert.Equal(2, await AnnotateCommand.Create().Parse([input, "-o", dir + "2", "--mode", "fast"]).InvokeAsync());
        Assert.Equal(2, await AnnotateCommand.Create().Parse([input, "-o", dir + "3", "--frame-budget-ms", "-5"]).InvokeAsync());
        Assert.Equal(2, await AnnotateCommand.Create().Parse([input, "-o", dir + "4", "--policy", "change", "--gate", "0"]).InvokeAsync());
        Assert.False(Directory.Exists(dir + "2"));
        Assert.False(Directory.Exists(dir + "3"));
        Assert.False(Directory.Exists(dir + "4"));
    }

    [Fact]
    public async Task Annotate_DraftsCaptionsByDefault_AndWritesTheCaptionsOfOneTokenAPass()
    {
        var input = TestMedia.WriteClip(TestMedia.TempDir("app-path-drafts"), frames: 60, fps: 15, width: 96, height: 64);
        var root = TestMedia.TempDir("app-path-drafts-out");
        string drafted = Path.Combine(root, "drafted"), plain = Path.Combine(root, "plain"), bad = Path.Combine(root, "bad");
        Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", drafted, "--every", "5"]).InvokeAsync());
        Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", plain, "--every", "5", "--draft-tokens", "0"]).InvokeAsync());
        var a = CaptionJsonl.Read(Path.Combine(drafted, OutputFolder.JsonlName)).Select(e => e.Text).ToList();
        var b = CaptionJsonl.Read(Path.Combine(plain, OutputFolder.JsonlName)).Select(e => e.Text).ToList();
        Assert.True(a.Count > 2, $"{a.Count} captions");
        Assert.Equal(b, a);
        Assert.Equal(2, await AnnotateCommand.Create().Parse([input, "-o", bad, "--draft-tokens", "40"]).InvokeAsync());
        Assert.False(Directory.Exists(bad));
    }
}
