using System.CommandLine;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench gate`: what the scene-change gate saves and what it costs the captions a viewer sees.
/// Each generated clip is streamed as `annotate` streams a file (file order, every 5th frame due a
/// read, a caption about once a second, the window of 2, the model's schedule) once per gate
/// threshold. The bench counts the frames read (vision encodes) and scores, at every frame from
/// the first caption on, the caption on screen then against that frame's scene: a caption left
/// on after its scene changed loses there. Headless with no frame budget, so every number is
/// exact and the same on any machine; no timing is measured.
/// </summary>
public static class GateBench
{
    const int Stride = 5, Window = 2;

    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON (gates[])");
        var model = AppModel.ModelOption();
        var gates = new Option<double[]>("--gates") { DefaultValueFactory = _ => new[] { 0.0, 1.0 }, AllowMultipleArgumentsPerToken = true, Description = "gate thresholds to compare (0: every frame due a read is read)" };
        var clips = new Option<int>("--clips") { DefaultValueFactory = _ => 12, Description = "generated clips" };
        var seconds = new Option<int>("--seconds") { DefaultValueFactory = _ => 30, Description = "each clip's length (the demo video's: 30 s at 15 fps)" };
        var split = Cli.ClipSplitOption("a threshold");
        var policy = new Option<string>("--policy") { Description = "the write policy (annotate's at 15 fps and stride 5: every:3)", DefaultValueFactory = _ => "every:3" };
        var plain = new Option<bool>("--plain") { Description = "plain clips, as media/demo.mp4 is: a flat or graded backdrop with no noise, no occluder (a still scene is then still to the gate)" };
        var clipSeed = new Option<int?>("--seed") { Description = "the first clip's seed, in place of the split's (media/demo.mp4 is seed 5 with --plain --seconds 30)" };
        var size = new Option<int>("--frame-size") { Description = "the clips' frames, pixels a side (the demo video's: 480); the gate sees them at this size, the model at its own", DefaultValueFactory = _ => 480 };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("gate", "The scene-change gate: frames read, and the F1 of the caption on screen at every frame against that frame's scene, per gate threshold, on generated clips.")
            { json, model, gates, clips, seconds, plain, split, clipSeed, policy, size, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var thresholds = pr.GetValue(gates)!.Distinct().ToArray();
            if (thresholds.Length == 0 || thresholds.Any(g => g is not (>= 0 and <= 255))) throw new UserError("--gates takes thresholds of 0..255");
            int nClips = pr.GetValue(clips);
            if (nClips is < 1 or > 10_000) throw new UserError($"--clips must be 1..10000, got {nClips}");
            int secs = pr.GetValue(seconds);
            if (secs is < 1 or > 3600) throw new UserError($"--seconds must be 1..3600, got {secs}");
            int side = pr.GetValue(size);
            if (side is < 16 or > 4096) throw new UserError($"--frame-size must be 16..4096, got {side}");
            var writePolicy = WritePolicy.Parse(pr.GetValue(policy)!);
            var dir = AppModel.Resolve(pr.GetValue(model));
            using var engine = Engine.Load(dir, Cli.EngineOptions(pr, device, dtype, weights));
            int seed = pr.GetValue(clipSeed) ?? Cli.FirstClipSeed(pr.GetValue(split));
            var result = Run(engine, thresholds, writePolicy, nClips, secs, pr.GetValue(plain), seed, side, ct);
            result["model"] = Path.GetFileName(Path.GetFullPath(dir));
            result["split"] = pr.GetValue(clipSeed) is null ? pr.GetValue(split) : $"seed {seed}";
            result["first_seed"] = seed;
            Print(result);
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return Task.FromResult(0);
        });
    }

    sealed class Side(double gate)
    {
        public double Gate { get; } = gate;
        public long Frames, Read, Unchanged, Captions;
        public FactScore Shown, Written;
    }

    static Dictionary<string, object?> Run(Engine engine, double[] gates, WritePolicy policy, int clips, int seconds, bool plain, int seed, int frameSize, CancellationToken ct)
    {
        var sides = gates.Select(g => new Side(g)).ToArray();
        var streaming = new StreamingOptions { WindowFrames = Window, Pruning = engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers) };
        for (int c = 0; c < clips; c++)
        {
            ct.ThrowIfCancellationRequested();
            var clip = ClipGenerator.Generate(seed + 2 * c, seconds, AppSources.SyntheticFps, plain);
            foreach (var side in sides)
            {
                var written = new List<(long Frame, string Text)>();
                var source = new GeneratedFrameSource(i => clip.Render((int)i, frameSize, frameSize), AppSources.SyntheticFps, count: clip.FrameCount, description: $"clip {c}");
                using var session = SessionModes.Create(SessionModes.Gpe, engine, streaming);
                var options = new FrameLoopOptions
                {
                    Pacing = Pacing.Headless, Stride = Stride, WarmUp = false,
                    Driver = new DriverOptions { Policy = policy, GateThreshold = side.Gate },
                };
                using var loop = new FrameLoop(source, session, new Profiler(), options)
                {
                    Written = (seg, _) => { if (seg.Question is null) written.Add((seg.FrameIndex, seg.Text)); },
                };
                var stats = loop.RunHeadless(ct).Stats;
                side.Frames += stats.Frames;
                side.Read += stats.Read;
                side.Unchanged += stats.Skipped;
                side.Captions += written.Count;
                // Scored once the window is full, as `bench app` scores (a caption's motion needs two frames).
                const int full = Stride * (Window - 1);
                side.Written += FactScore.Total(written.Where(w => w.Frame >= full).Select(w => Score(clip, w.Frame, w.Text)));
                // What a viewer sees: each frame with the latest caption written at or before it.
                int next = 0;
                for (int f = written.Count == 0 ? clip.FrameCount : Math.Max(full, (int)written[0].Frame); f < clip.FrameCount; f++)
                {
                    while (next + 1 < written.Count && written[next + 1].Frame <= f) next++;
                    side.Shown += Score(clip, f, written[next].Text);
                }
            }
        }
        return new Dictionary<string, object?>
        {
            ["clips"] = clips, ["seconds_per_clip"] = seconds, ["plain"] = plain, ["stride"] = Stride, ["window"] = Window, ["policy"] = policy.ToString(), ["frame_size"] = frameSize,
            ["gates"] = sides.Select(s => new Dictionary<string, object?>
            {
                ["gate"] = s.Gate, ["frames"] = s.Frames, ["frames_due"] = s.Read + s.Unchanged, ["frames_read"] = s.Read, ["unchanged"] = s.Unchanged,
                ["read_fraction"] = Math.Round((double)s.Read / Math.Max(1, s.Read + s.Unchanged), 4),
                ["captions"] = s.Captions,
                ["shown_f1"] = Math.Round(s.Shown.F1, 4), ["written_f1"] = Math.Round(s.Written.F1, 4),
            }).ToList(),
        };
    }

    static FactScore Score(Clip clip, long frame, string text) =>
        AttributeScorer.ScoreByAttribute(text, CaptionGrammar.Canonical(clip.SceneAt((int)frame), withMotion: Window > 1));

    static void Print(Dictionary<string, object?> r)
    {
        var t = new Table().AddColumns("gate", "frames read of due", "captions", "F1 of the caption on screen, every frame", "F1 of each caption at its frame");
        foreach (var s in (List<Dictionary<string, object?>>)r["gates"]!)
            t.AddRow($"{s["gate"]}", $"{s["frames_read"]} of {s["frames_due"]} ({s["read_fraction"]:P1})", $"{s["captions"]}", $"{s["shown_f1"]}", $"{s["written_f1"]}");
        AnsiConsole.Write(t);
        Console.WriteLine($"{r["model"]}, {r["clips"]} {((bool)r["plain"]! ? "plain " : "")}clips of {r["seconds_per_clip"]} s ({r["split"]}), {r["frame_size"]}² frames, stride {r["stride"]}, policy {r["policy"]}");
    }
}
