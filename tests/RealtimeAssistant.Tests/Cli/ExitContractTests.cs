using System.CommandLine;
using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Tests.Capture;
using RaCli = RealtimeAssistant.Cli.Cli;

namespace RealtimeAssistant.Tests.Cli;

/// <summary>
/// The README's promise, run against the built CLI: a user's mistake is one line on stderr (plus
/// where the help is, for a parse error) and exit code 2 — never a stack trace, never the help dump.
/// </summary>
public class ExitContractTests(ITestOutputHelper log)
{
    static string DemoModel => RaCli.FindRepoPath(RealtimeAssistant.Cli.App.AppModel.DemoModelPath) ?? throw new InvalidOperationException("media/demo-model is missing");

    /// <summary>Files the bad invocations point at, made once per test run.</summary>
    static readonly Lazy<Fixture> Files = new(() => new Fixture());

    sealed class Fixture
    {
        public readonly string Dir = TestMedia.TempDir("exit2");
        public readonly string Clip, Image, NotAVideo, Out, TinyModel, NonUtf8Model, NoGroupPositionsModel;

        public Fixture()
        {
            Clip = TestMedia.WriteClip(Dir, frames: 5);
            Image = Path.Combine(Dir, "frame.png");
            using (var m = TestMedia.Pattern(3)) OpenCvSharp.Cv2.ImWrite(Image, m);
            NotAVideo = Path.Combine(Dir, "notes.mp4");
            File.WriteAllText(NotAVideo, "these are notes, not a video\n");
            Out = Path.Combine(Dir, "out");
            TinyModel = AppTestSupport.TinyModel;
            // One byte of the safetensors header (inside its first tensor name) made 0xFF: not UTF-8.
            NonUtf8Model = Path.Combine(Dir, "non-utf8-model");
            Directory.CreateDirectory(NonUtf8Model);
            foreach (var f in Directory.GetFiles(TinyModel)) File.Copy(f, Path.Combine(NonUtf8Model, Path.GetFileName(f)));
            var weights = Path.Combine(NonUtf8Model, "model.safetensors");
            var bytes = File.ReadAllBytes(weights);
            Assert.Equal((byte)'"', bytes[9]);
            bytes[10] = 0xFF;
            File.WriteAllBytes(weights, bytes);
            // The tiny model without ra_group_positions: its captions stand alone, so it keeps no caption history.
            NoGroupPositionsModel = Path.Combine(Dir, "no-gpe-model");
            Directory.CreateDirectory(NoGroupPositionsModel);
            foreach (var f in Directory.GetFiles(TinyModel)) File.Copy(f, Path.Combine(NoGroupPositionsModel, Path.GetFileName(f)));
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TinyModel, "config.json")))!.AsObject();
            Assert.True(config.Remove("ra_group_positions"));
            File.WriteAllText(Path.Combine(NoGroupPositionsModel, "config.json"), config.ToJsonString());
        }
    }

    /// <summary>(what is wrong, the arguments): each must exit 2 with one or two lines and no trace.</summary>
    public static TheoryData<string> BadInvocations => new(Invocations.Keys);

    static readonly Dictionary<string, Func<Fixture, string[]>> Invocations = new()
    {
        ["parse: --every is not a number"] = f => ["annotate", f.Clip, "-o", f.Out, "--every", "abc"],
        ["parse: an unknown option"] = f => ["caption", "--bogus", "-m", f.TinyModel, "-i", f.Image],
        ["parse: a required option missing"] = f => ["annotate", f.Clip],
        ["parse: an unknown enum value"] = f => ["train", "--question-mix", "Sideways"],
        ["parse: an unknown command"] = f => ["captoin"],
        ["parse: an extra argument"] = f => ["demo", "extra"],
        ["--threads 0 (train)"] = f => ["train", "--threads", "0", "-o", f.Out],
        ["--threads -2 (live)"] = f => ["live", "synthetic", "--threads", "-2"],
        ["--threads 0 (bench app)"] = f => ["bench", "app", "--threads", "0"],
        ["--speed 0 (bench serve)"] = f => ["bench", "serve", "--speed", "0"],
        ["one format (bench weights)"] = f => ["bench", "weights", "-m", f.TinyModel, "--formats", "f32"],
        ["--formats int4 (bench weights)"] = f => ["bench", "weights", "-m", f.TinyModel, "--formats", "f32", "int4"],
        ["--rounds 0 (bench weights)"] = f => ["bench", "weights", "-m", f.TinyModel, "--rounds", "0"],
        ["--display-fps 0 (profile)"] = f => ["profile", f.Clip, "--display-fps", "0"],
        ["--display-fps 0 (bench app)"] = f => ["bench", "app", "--display-fps", "0"],
        ["--display-fps 0 (live)"] = f => ["live", "synthetic", "--display-fps", "0"],
        ["--threads abc (live): not a number, under a range check"] = f => ["live", "synthetic", "--threads", "abc"],
        ["--display-fps inf (profile): not a number .NET parses, under a range check"] = f => ["profile", f.Clip, "--display-fps", "inf"],
        ["--display-fps nan (bench app)"] = f => ["bench", "app", "--display-fps", "nan"],
        ["--top-p nan (caption): NaN fails every comparison"] = f => ["caption", "-m", f.TinyModel, "-i", f.Image, "--top-p", "nan"],
        ["--temperature Infinity (caption)"] = f => ["caption", "-m", f.TinyModel, "-i", f.Image, "--temperature", "Infinity"],
        ["--give-up-after 0 (live)"] = f => ["live", "synthetic", "--give-up-after", "0", "--headless"],
        ["--seconds NaN (live): not a TimeSpan's stack trace"] = f => ["live", "synthetic", "--seconds", "NaN", "--headless"],
        ["--seconds -1 (live): not a run of nothing, exit 0"] = f => ["live", "synthetic", "--seconds", "-1", "--headless"],
        ["--seconds 0 (profile)"] = f => ["profile", f.Clip, "--seconds", "0"],
        ["--stream-grace NaN (serve)"] = f => ["serve", "--stream-grace", "NaN"],
        ["--seconds NaN (bench cluster)"] = f => ["bench", "cluster", "--seconds", "NaN"],
        ["safetensors header not UTF-8"] = f => ["caption", "-m", f.NonUtf8Model, "-i", f.Image],
        ["--dtype f64 (bench streaming)"] = f => ["bench", "streaming", "--model", f.TinyModel, "--dtype", "f64"],
        ["--device tpu (bench streaming)"] = f => ["bench", "streaming", "--model", f.TinyModel, "--device", "tpu"],
        ["--family unknown (bench engine)"] = f => ["bench", "engine", "--family", "gpt5"],
        ["--family unknown (bench streaming)"] = f => ["bench", "streaming", "--family", "gpt5"],
        ["--family llava (bench engine): no 7B shape here"] = f => ["bench", "engine", "--family", "llava"],
        ["--family with --model (bench engine)"] = f => ["bench", "engine", "--model", f.TinyModel, "--family", "smolvlm"],
        ["--family with --model (bench streaming)"] = f => ["bench", "streaming", "--model", f.TinyModel, "--family", "smolvlm"],
        ["--family unknown (bench app)"] = f => ["bench", "app", "--family", "gpt5", "--f1-clips", "0"],
        ["--family with --model (bench app)"] = f => ["bench", "app", "--model", f.TinyModel, "--family", "smolvlm", "--f1-clips", "0"],
        ["--family with F1 clips (bench app): random weights cannot be scored"] = f => ["bench", "app", "--family", "smolvlm"],
        ["--windows 0 (bench streaming --family)"] = f => ["bench", "streaming", "--family", "smolvlm", "--windows", "0"],
        ["--windows without --family (bench streaming): it would be ignored"] = f => ["bench", "streaming", "--model", f.TinyModel, "--windows", "4"],
        ["--long-clips -1 (bench streaming)"] = f => ["bench", "streaming", "--model", f.TinyModel, "--long-clips", "-1"],
        ["--dtype f64 (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--dtype", "f64"],
        ["--floor-agreement 2 (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--floor-agreement", "2"],
        ["--split unknown (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--split", "train"],
        ["a video that is not a video (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--video", f.NotAVideo],
        ["a missing video (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--video", Path.Combine(f.Dir, "gone.mp4")],
        ["--frames 0 (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--video", f.Clip, "--frames", "0"],
        ["--images and --video (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--video", f.Clip, "--images", f.Image],
        ["--exit-layer inside the shallow stage (caption): captions would never see the image"] = f => ["caption", "-m", f.TinyModel, "-i", f.Image, "--prune-method", "visipruner", "--shallow-layers", "1", "--exit-layer", "1"],
        ["--fastv-k -1 with another method (caption)"] = f => ["caption", "-m", f.TinyModel, "-i", f.Image, "--prune-method", "visipruner", "--fastv-k", "-1"],
        ["--max-pixels on a model of one fixed size (stream)"] = f => ["stream", f.Clip, "--max-pixels", "50000"],
        ["--max-pixels -1 (caption)"] = f => ["caption", "-i", f.Image, "--max-pixels", "-1"],
        ["--min-frame-pixels on a model of one fixed size (stream)"] = f => ["stream", f.Clip, "--min-frame-pixels", "100352"],
        ["--min-frame-pixels under the processor's least (stream)"] = f => ["stream", f.Clip, "-m", RealtimeAssistant.Tests.Model.Families.QwenFixtures.Folder("qwen2_vl"), "--min-frame-pixels", "100"],
        ["--dtype f64 (bench pruning)"] = f => ["bench", "pruning", "--dtype", "f64"],
        ["--caption-history past the model's positions (stream)"] = f => ["stream", f.Clip, "--caption-history", "100000"],
        ["--caption-history on a model without group positions (annotate)"] = f => ["annotate", f.Clip, "-o", f.Out, "-m", f.NoGroupPositionsModel, "--caption-history", "8"],
        ["--ask nan:x (annotate)"] = f => ["annotate", f.Clip, "-o", f.Out, "--ask", "nan:x"],
        ["--ask inf:x (stream)"] = f => ["stream", f.Clip, "--ask", "inf:what is there"],
        ["--ask 1e300:x (stream): past any TimeSpan"] = f => ["stream", f.Clip, "--ask", "1e300:what is there"],
        ["--ask with a blank question (annotate)"] = f => ["annotate", f.Clip, "-o", f.Out, "--ask", "3:   "],
        ["a model folder that is not there"] = f => ["eval", "--model", "/nonexistent/model"],
        ["a video that is not there"] = f => ["annotate", "/nonexistent/clip.mp4", "-o", f.Out],
        ["a video that is not a video"] = f => ["profile", f.NotAVideo],
        ["an image that is not an image"] = f => ["caption", "-m", f.TinyModel, "-i", f.NotAVideo],
        ["an image URL (caption): says how to pipe it in"] = f => ["caption", "-m", f.TinyModel, "-i", "http://127.0.0.1:9/frame.png"],
        ["a camera index with no device (live): at once, not after --give-up-after"] = f => ["live", "97", "--headless"],
        ["--json inside a file (eval): refused before the evaluation runs"] = f => ["eval", "--json", Path.Combine(f.Image, "eval.json")],
        ["--json naming a folder (bench budget)"] = f => ["bench", "budget", "--json", f.Dir],
        ["--output naming a file (annotate)"] = f => ["annotate", f.Clip, "-o", f.Image],
        ["--jsonl where the system makes no files (stream)"] = f => ["stream", f.Clip, "--jsonl", "/proc/ra-segments.jsonl"],
        ["--out where the system makes no files (analyze)"] = f => ["analyze", "--model", f.TinyModel, "--video", f.Clip, "--out", "/proc/ra-analysis"],
        ["--gate -1 (stream)"] = f => ["stream", f.Clip, "--gate", "-1"],
        ["--gate nan (annotate)"] = f => ["annotate", f.Clip, "-o", f.Out, "--gate", "nan"],
        ["--max-frames -1 (annotate)"] = f => ["annotate", f.Clip, "-o", f.Out, "--max-frames", "-1"],
        ["--give-up-after 0 (stream)"] = f => ["stream", f.Clip, "--give-up-after", "0"],
        ["--output where the system makes no files (train)"] = f => ["train", "-o", "/proc/ra-model"],
    };

    /// <summary>
    /// An output path is checked by writing in the nearest folder that exists, and the check leaves
    /// nothing behind; a path that would need a folder where a file is, or a file where a folder
    /// is, says which.
    /// </summary>
    [Fact]
    public void UnwritablePath_ProbesTheNearestFolder_AndLeavesNothingThere()
    {
        var dir = TestMedia.TempDir("writable");
        var file = Path.Combine(dir, "a.txt");
        File.WriteAllText(file, "x");
        Assert.Null(RaCli.UnwritablePath(Path.Combine(dir, "new", "deeper", "out.json"), folder: false));
        Assert.Null(RaCli.UnwritablePath(Path.Combine(dir, "runs"), folder: true));
        Assert.Null(RaCli.UnwritablePath("-", folder: false));
        Assert.Equal(["a.txt"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName));
        Assert.Contains($"{file} is a file", RaCli.UnwritablePath(Path.Combine(file, "out.json"), folder: false));
        Assert.Contains("is a file; give a folder", RaCli.UnwritablePath(file, folder: true));
        Assert.Contains("is a folder; give a file name", RaCli.UnwritablePath(dir, folder: false));
        Assert.Contains("/proc takes no new files", RaCli.UnwritablePath("/proc/ra-out/x.json", folder: false));
    }

    /// <summary>
    /// A result with no value (a percentile of no reads is NaN) is written as null: JSON has no
    /// NaN, and the serializer threw once the bench had run, losing every number it measured.
    /// </summary>
    [Fact]
    public void WriteJson_WritesANumberWithNoValueAsNull_AndKeepsTheRest()
    {
        var path = Path.Combine(TestMedia.TempDir("json-nan"), "r.json");
        RaCli.WriteJson(path, new Dictionary<string, object?> { ["p95"] = double.NaN, ["max"] = double.PositiveInfinity, ["f"] = float.NaN, ["g"] = 0.1f, ["ms"] = 1.25, ["list"] = new[] { 2.5, double.NaN } });
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        Assert.Equal(System.Text.Json.JsonValueKind.Null, root.GetProperty("p95").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, root.GetProperty("max").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, root.GetProperty("f").ValueKind);
        Assert.Equal(1.25, root.GetProperty("ms").GetDouble());
        Assert.Equal("0.1", root.GetProperty("g").GetRawText()); // a float as float prints it
        Assert.Equal([2.5, double.NaN], root.GetProperty("list").EnumerateArray().Select(e => e.ValueKind == System.Text.Json.JsonValueKind.Null ? double.NaN : e.GetDouble()));
    }

    [Theory]
    [MemberData(nameof(BadInvocations))]
    public void BadInvocation_ExitsTwo_WithOneOrTwoLines_AndNoStackTrace(string what)
    {
        var args = Invocations[what](Files.Value);
        var r = CliProcess.Run(args, TimeSpan.FromSeconds(90));
        log.WriteLine($"ra {string.Join(' ', args)}\n{r}");
        Assert.False(r.TimedOut, "the command hung");
        Assert.Equal(2, r.Code);
        Assert.InRange(r.Lines.Length, 1, 2);
        Assert.StartsWith("error: ", r.Lines[0]);
        Assert.DoesNotContain("   at ", r.Stdout + r.Stderr);
        Assert.DoesNotContain("Usage:", r.Stdout + r.Stderr); // not the help dump
    }

    [Fact]
    public void ParseError_NamesTheOptionAndWhatWasWrong_ThenWhereTheHelpIs()
    {
        var r = CliProcess.Run(["annotate", Files.Value.Clip, "-o", Files.Value.Out, "--every", "abc"]);
        Assert.Equal(2, r.Code);
        Assert.Equal(["error: Cannot parse argument 'abc' for option '--every' as a whole number", "see 'ra annotate --help'"], r.Lines);
        r = CliProcess.Run(["bench", "app", "--display-fps", "0"]);
        Assert.Equal(["error: --display-fps must be in (0, 1000], got 0", "see 'ra bench app --help'"], r.Lines);
    }

    /// <summary>`caption` takes the bundled demo model when no --model is given, as every app command does.</summary>
    [Fact]
    public void Caption_WithoutAModel_CaptionsWithTheDemoModel()
    {
        var r = CliProcess.Run(["caption", "-i", Files.Value.Image, "--max-new-tokens", "6"], TimeSpan.FromSeconds(90));
        log.WriteLine(r.ToString());
        Assert.Equal(0, r.Code);
        Assert.False(string.IsNullOrWhiteSpace(r.Stdout), "no caption on stdout");
    }

    /// <summary>A question timed after the clip ends is not lost without a word: one line names it, and the outputs stand.</summary>
    [Fact]
    public void Annotate_AQuestionAfterTheEnd_IsNamedOnStderr_AndTheRunSucceeds()
    {
        var dir = Path.Combine(Files.Value.Dir, "late-question");
        var r = CliProcess.Run(["annotate", Files.Value.Clip, "-o", dir, "--model", Files.Value.TinyModel, "--ask", "600:what is there", "--ask", "0:what moves"], TimeSpan.FromSeconds(90));
        log.WriteLine(r.ToString());
        Assert.Equal(0, r.Code);
        Assert.Contains("annotate: --ask at 600 s was not asked: the stream ended before it (\"what is there\")", r.Stderr);
        Assert.DoesNotContain("what moves\")", r.Stderr);
        Assert.Contains("what moves", File.ReadAllText(Path.Combine(dir, "captions.jsonl")));
    }

    [Fact]
    public void Stream_ABudgetNoReadCanHold_SaysWhyFramesWereSkipped_AndTheRunSucceeds()
    {
        // --jsonl into folders that do not exist yet: made, as --json makes its folder.
        var segments = Path.Combine(TestMedia.TempDir("stream-jsonl"), "new", "deeper", "segments.jsonl");
        var r = CliProcess.Run(["stream", Files.Value.Clip, "--model", Files.Value.TinyModel, "--gate", "0", "--policy", "finished", "--stride", "1", "--frame-budget-ms", "0.001",
            "--jsonl", segments], TimeSpan.FromSeconds(90));
        log.WriteLine(r.ToString());
        Assert.Equal(0, r.Code);
        Assert.True(File.Exists(segments), "no segments file in the new folder");
        var line = Assert.Single(r.Stderr.Split('\n'), l => l.StartsWith("stream: ", StringComparison.Ordinal) && l.Contains("skipped to hold the 0.001 ms frame budget"));
        Assert.Matches(@"its cheapest read allowed \(exit \d+\) takes about [\d,]+ ms here", line);
        Assert.DoesNotContain("--min-frame-pixels", line); // a fixed-size family has no resolution rung
        // A Qwen2-VL model's cheapest rung reads at the least pixel bound: lowering it is named too.
        var demoClip = RealtimeAssistant.Cli.Cli.FindRepoPath("media/demo.mp4") ?? throw new InvalidOperationException("media/demo.mp4 not found"); // 480×480: above the least bound
        var qwen = CliProcess.Run(["stream", demoClip, "--max-frames", "8", "--model", RealtimeAssistant.Tests.Model.Families.QwenFixtures.Folder("qwen2_vl"), "--max-pixels", "1003520",
            "--gate", "0", "--policy", "finished", "--stride", "1", "--max-new-tokens", "2", "--frame-budget-ms", "0.001"], TimeSpan.FromSeconds(90));
        log.WriteLine(qwen.ToString());
        Assert.Equal(0, qwen.Code);
        Assert.Contains("frames read at down to 100,352 pixels", qwen.Stdout + qwen.Stderr);
        Assert.Matches(@"frames read at: .*, max \d+ px ×\d+", qwen.Stdout);
        Assert.Contains(qwen.Stderr.Split('\n'), l => l.StartsWith("stream: ", StringComparison.Ordinal) && l.Contains("max 100352 px") && l.EndsWith("and so does a --min-frame-pixels below 100352"));
        // Without a budget nothing is skipped, and nothing is said.
        var free = CliProcess.Run(["stream", Files.Value.Clip, "--model", Files.Value.TinyModel, "--gate", "0", "--policy", "finished", "--stride", "1", "--frame-budget-ms", "off"], TimeSpan.FromSeconds(90));
        Assert.Equal(0, free.Code);
        Assert.DoesNotContain("frame budget", free.Stderr);
    }

    [Fact]
    public void Stream_IntoAJsonlThatHoldsLines_SaysItAppends_AndKeepsThem()
    {
        var segments = Path.Combine(TestMedia.TempDir("stream-jsonl-append"), "segments.jsonl");
        string[] earlier = ["{\"t\":0,\"text\":\"an earlier run\"}", "{\"t\":1,\"text\":\"its second segment\"}"];
        File.WriteAllLines(segments, earlier);
        string[] args = ["stream", Files.Value.Clip, "--model", Files.Value.TinyModel, "--max-frames", "6", "--gate", "0", "--stride", "1", "--policy", "every:2", "--jsonl", segments];
        var r = CliProcess.Run(args, TimeSpan.FromSeconds(90));
        log.WriteLine(r.ToString());
        Assert.Equal(0, r.Code);
        Assert.Contains(r.Stderr.Split('\n'), l => l == $"stream: appending to {segments}, which already holds 2 lines");
        var lines = File.ReadAllLines(segments);
        Assert.Equal(earlier, lines.Take(2));
        Assert.True(lines.Length > 2, "no segment appended");
        // Into a new file nothing is said.
        File.Delete(segments);
        var fresh = CliProcess.Run(args, TimeSpan.FromSeconds(90));
        Assert.Equal(0, fresh.Code);
        Assert.DoesNotContain("appending to", fresh.Stderr);
        Assert.True(File.ReadAllLines(segments).Length > 0);
    }

    [Fact]
    public void Live_ABudgetNoReadCanHold_SaysSo_AndSkipsNoFrame()
    {
        // Live pacing drops the frames that arrive during a read; skipping one the model is free to
        // read would not make any read fit, so the line says the reads ran over instead.
        var r = CliProcess.Run(["live", "synthetic", "--headless", "--seconds", "4", "--model", Files.Value.TinyModel, "--gate", "0", "--stride", "1", "--frame-budget-ms", "0.001"], TimeSpan.FromSeconds(90));
        log.WriteLine(r.ToString());
        Assert.Equal(0, r.Code);
        Assert.Contains(r.Stderr.Split('\n'), l => l.StartsWith("live: ", StringComparison.Ordinal) && l.Contains("reads ran over the 0.001 ms frame budget")
            && l.Contains("its cheapest read allowed (exit"));
        Assert.DoesNotContain("skipped to hold", r.Stderr);
        Assert.Matches(@"frames read at: .*exit \d+ ×\d+", r.Stdout); // where the governor held the reads
    }

    [Fact]
    public void Help_StillExitsZero()
    {
        var r = CliProcess.Run(["caption", "--help"]);
        Assert.Equal(0, r.Code);
        Assert.Contains("--image", r.Stdout);
    }

    /// <summary>`ra` alone lists the commands, as `ra --help` does; a group with no command names its commands in the one error line.</summary>
    [Fact]
    public void NoCommand_ListsTheCommands_AndAGroupWithoutOneNamesItsOwn()
    {
        var r = CliProcess.Run([]);
        Assert.Equal(0, r.Code);
        Assert.Equal(CliProcess.Run(["--help"]).Stdout, r.Stdout);
        Assert.Contains("annotate", r.Stdout);
        var bench = CliProcess.Run(["bench"]);
        Assert.Equal(2, bench.Code);
        Assert.StartsWith("error: ra bench needs a command: engine, pruning, streaming, app, budget", bench.Lines[0]);
        Assert.Equal(2, bench.Lines.Length);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void Threads_BelowOne_AreRefused_BeforeTheyReachLibtorch(int n)
    {
        var before = TorchSharp.torch.get_num_threads();
        var e = Assert.Throws<UserError>(() => Engine.SetThreads(n));
        Assert.Contains("--threads", e.Message);
        Assert.Equal(before, TorchSharp.torch.get_num_threads());
        e = Assert.Throws<UserError>(() => Engine.Load(AppTestSupport.TinyModel, new EngineOptions { Threads = n }));
        Assert.Contains("--threads", e.Message);
    }

    /// <summary>Every command of the built CLI, found from its help, and the options its help lists.</summary>
    static IEnumerable<(string Path, string Help)> Commands(string[] path)
    {
        var help = CliProcess.Run([.. path, "--help"]).Stdout;
        yield return (string.Join(' ', path.Prepend("ra")), help);
        var section = help.Split("Commands:", 2) is { Length: 2 } parts ? parts[1] : "";
        foreach (var line in section.Split('\n'))
            if (System.Text.RegularExpressions.Regex.Match(line, @"^  ([a-z][a-z-]*)\b") is { Success: true } m)
                foreach (var sub in Commands([.. path, m.Groups[1].Value])) yield return sub;
    }

    [Fact]
    public void EveryCommandThatLoadsAModel_TakesDeviceAndDType()
    {
        var commands = Commands([]).ToList();
        var withModel = commands.Where(c => c.Help.Contains("--model")).ToList();
        log.WriteLine(string.Join("\n", withModel.Select(c => c.Path)));
        foreach (var (path, help) in withModel)
        {
            Assert.True(help.Contains("--device"), $"{path} loads a model but has no --device");
            Assert.True(help.Contains("--dtype"), $"{path} loads a model but has no --dtype");
        }
        foreach (var expected in new[] { "ra caption", "ra analyze", "ra bench streaming", "ra bench pruning", "ra eval", "ra demo", "ra live", "ra annotate", "ra profile", "ra stream", "ra bench app" })
            Assert.Contains(expected, withModel.Select(c => c.Path));
    }

    [Fact]
    public void Analyze_WritesToAFreshRunsFolder_NotToTrackedDocs()
    {
        var analyze = RealtimeAssistant.Cli.Commands.AnalyzeCommand.Create();
        var outOption = analyze.Options.Single(o => o.Name == "--out");
        Assert.False(outOption.HasDefaultValue, "analyze --out must not default to a tracked folder");
        var dir = RealtimeAssistant.Cli.Commands.AnalyzeCommand.DefaultOut();
        Assert.Matches(@"^runs[/\\]analyze-\d{8}-\d{6}$", dir);
    }

    [Fact]
    public async Task Live_ACameraLostForGood_SaysWhatAndHowLong_AndExitsThree()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to feed the FIFO camera");
        var fifo = TestMedia.Fifo("lost", "camera.avi");
        // The camera is up before live starts (ffmpeg waits for its reader), sends 2 s, and is gone for good.
        var camera = Task.Run(() => TestMedia.Run(ffmpeg!,
            ["-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-t", "2", "-f", "avi", fifo],
            TimeSpan.FromSeconds(120)));
        var live = Task.Run(() => CliProcess.Run(["live", fifo, "--headless", "--give-up-after", "5", "--model", DemoModel, "--threads", "1"],
            TimeSpan.FromSeconds(120)));
        var (code, errors) = await camera;
        log.WriteLine($"ffmpeg: exit {code} {errors}");
        Assert.True(code == 0, $"the camera's writer failed (another reader took its stream?): {errors}");
        var r = await live;
        log.WriteLine(r.ToString());
        Assert.False(r.TimedOut);
        Assert.Equal(RaCli.SourceLostCode, r.Code);
        Assert.Matches(@"live: .*camera\.avi.* lost: no frame for 5 s, \d+ reconnect attempts; gave up", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stdout + r.Stderr);
        Assert.DoesNotContain(" at RealtimeAssistant", r.Stdout + r.Stderr);
    }

    [Fact]
    public void Demo_InAWindow_ExitsTwo_WhenItsVideoFails()
    {
        using var xvfb = RealtimeAssistant.Tests.Rendering.Xvfb.TryStart(out var why);
        if (xvfb is null)
        {
            Assert.False(RealtimeAssistant.Tests.Rendering.Xvfb.IsInstalled, $"Xvfb is installed but did not start: {why}");
            Assert.Skip($"no X server for the demo's window: {why}");
        }
        // An image folder whose second image is not one: the window runs, then capture fails.
        var folder = TestMedia.TempDir("demo-bad");
        using (var m = TestMedia.Pattern(1, 320, 240)) OpenCvSharp.Cv2.ImWrite(Path.Combine(folder, "a.png"), m);
        File.WriteAllText(Path.Combine(folder, "b.png"), "not a png");
        var r = CliProcess.Run(["demo", "--video", folder, "--model", DemoModel], TimeSpan.FromSeconds(90),
            new Dictionary<string, string?> { ["DISPLAY"] = xvfb.Display });
        log.WriteLine(r.ToString());
        Assert.False(r.TimedOut);
        Assert.Contains("in a window", r.Stderr); // the window path, not the headless one
        Assert.Equal(2, r.Code);
        Assert.Contains("error: ", r.Stderr);
        Assert.Contains("b.png", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stdout + r.Stderr);
    }
}
