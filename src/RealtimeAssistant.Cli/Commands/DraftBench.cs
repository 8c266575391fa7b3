using System.CommandLine;
using System.Diagnostics;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra bench drafts`: captions written one token a pass against captions whose tokens are drafted
/// from the last caption and verified several a pass (prompt-lookup decoding), in one process.
/// Each generated clip is streamed as the app streams it (every 5th frame read, a caption after
/// each read, the window of 2 and the model's schedule) once per side, the sides in a shuffled
/// order per clip; the captions of every side must be the same, and the bench reports the write
/// time (the decode), the whole caption's time and how many drafts were taken.
/// </summary>
public static class DraftBench
{
    const int Stride = 5, Window = 2;

    public static Command Create()
    {
        var json = Cli.JsonOption("write the results as JSON (sides[], ratios[])");
        var model = AppModel.ModelOption();
        var family = BenchModels.Option();
        var drafts = new Option<int[]>("--draft-tokens") { DefaultValueFactory = _ => new[] { 7 }, AllowMultipleArgumentsPerToken = true, Description = "draft lengths, each against one token a pass (0)" };
        var clips = new Option<int>("--clips") { DefaultValueFactory = _ => 24, Description = "generated clips (6 s each at 15 fps)" };
        var split = Cli.ClipSplitOption("the draft length");
        var mode = new Option<string>("--mode") { Description = "gpe or reencode: the session both sides stream through", DefaultValueFactory = _ => SessionModes.Gpe };
        var maxTokens = new Option<int>("--max-new-tokens") { Description = "longest caption, in tokens", DefaultValueFactory = _ => 48 };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("drafts", "Captions one token a pass against drafts from the last caption verified in one pass (prompt-lookup decoding): write time, caption time, drafts taken; the captions must match.")
            { json, model, family, drafts, clips, split, mode, maxTokens, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var ks = pr.GetValue(drafts)!.Distinct().ToArray();
            if (ks.Length == 0 || ks.Any(k => k is < 1 or > GenerationOptions.MaxDraftTokens)) throw new UserError($"--draft-tokens takes draft lengths of 1..{GenerationOptions.MaxDraftTokens}");
            int nClips = pr.GetValue(clips);
            if (nClips is < 1 or > 10_000) throw new UserError($"--clips must be 1..10000, got {nClips}");
            if (pr.GetValue(maxTokens) is < 1 or > 4096) throw new UserError($"--max-new-tokens must be 1..4096, got {pr.GetValue(maxTokens)}");
            var sessionMode = SessionModes.Parse(pr.GetValue(mode));
            if (pr.GetValue(family) is not null && pr.GetValue(model) is not null) throw new UserError("bench drafts: give --model or --family, not both");
            var dir = pr.GetValue(family) is { } fam ? BenchModels.Resolve(fam, Console.Error.WriteLine) : AppModel.Resolve(pr.GetValue(model));
            using var engine = Engine.Load(dir, Cli.EngineOptions(pr, device, dtype, weights));
            int seed = Cli.FirstClipSeed(pr.GetValue(split));
            var sides = new[] { 0 }.Concat(ks).ToArray();
            // The demo model's frames are 64 pixels a side; a family's are a camera's, resized by its preprocessor.
            var result = Run(engine, sessionMode, sides, nClips, seed, pr.GetValue(maxTokens), pr.GetValue(family) is null ? 64 : 224, ct);
            result["model"] = pr.GetValue(family) ?? Path.GetFileName(Path.GetFullPath(dir));
            result["split"] = pr.GetValue(split);
            Print(result);
            if (pr.GetValue(json) is { } path) Cli.WriteJson(path, result);
            return Task.FromResult((int)result["mismatched_captions"]! == 0 ? 0 : 1);
        });
    }

    sealed class Side(int draftTokens)
    {
        public int DraftTokens { get; } = draftTokens;
        public List<double> WriteMs { get; } = new();
        public List<double> CaptionMs { get; } = new();
        public long Tokens, Passes, Drafted, Accepted;
        public List<string> Captions { get; } = new();
    }

    static Dictionary<string, object?> Run(Engine engine, string mode, int[] draftTokens, int clips, int seed, int maxTokens, int frameSize, CancellationToken ct)
    {
        var sides = draftTokens.Select(k => new Side(k)).ToArray();
        var rng = new Random(18);
        // Clip −1 is the first clip streamed once by every side untimed: the first captions pay for JIT and first allocations.
        for (int c = -1; c < clips; c++)
        {
            ct.ThrowIfCancellationRequested();
            bool timed = c >= 0;
            var clip = ClipGenerator.Generate(seed + 2 * Math.Max(c, 0), 6, AppSources.SyntheticFps);
            var frames = Enumerable.Range(0, clip.FrameCount / Stride).Select(i => clip.Render(i * Stride, frameSize, frameSize)).ToList();
            try
            {
                // Each side streams the clip in turn, in a new shuffled order per clip: a slow spell lands on all of them alike.
                foreach (var side in sides.OrderBy(_ => rng.Next()).ToArray())
                {
                    var options = new StreamingOptions
                    {
                        WindowFrames = Window, Pruning = engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers),
                        Generation = new GenerationOptions { MaxNewTokens = maxTokens, DraftTokens = side.DraftTokens },
                    };
                    using var session = SessionModes.Create(mode, engine, options);
                    foreach (var frame in frames)
                    {
                        var sw = Stopwatch.StartNew();
                        var text = string.Concat(session.ReadAndWrite(frame).Select(t => t.Text));
                        double total = sw.Elapsed.TotalMilliseconds;
                        if (!timed) continue;
                        side.WriteMs.Add(session.Last.WriteMs);
                        side.CaptionMs.Add(total);
                        side.Tokens += session.Last.DecodeMs.Count;
                        side.Captions.Add(text);
                    }
                    var stats = session.Drafts!;
                    if (timed) (side.Passes, side.Drafted, side.Accepted) = (side.Passes + stats.Passes, side.Drafted + stats.Drafted, side.Accepted + stats.Accepted);
                }
            }
            finally { foreach (var f in frames) f.Dispose(); }
        }
        var plain = sides[0];
        int mismatched = sides.Skip(1).Sum(s => s.Captions.Zip(plain.Captions).Count(p => p.First != p.Second));
        return new Dictionary<string, object?>
        {
            ["mode"] = mode, ["clips"] = clips, ["captions"] = plain.Captions.Count, ["stride"] = Stride, ["window"] = Window, ["max_new_tokens"] = maxTokens,
            ["mismatched_captions"] = mismatched,
            ["sides"] = sides.Select(s => new Dictionary<string, object?>
            {
                ["draft_tokens"] = s.DraftTokens,
                ["write_ms_mean"] = Math.Round(s.WriteMs.Average(), 3), ["write_ms_p50"] = Math.Round(BenchStats.Percentile(s.WriteMs, 0.50), 3),
                ["caption_ms_mean"] = Math.Round(s.CaptionMs.Average(), 3), ["caption_ms_p50"] = Math.Round(BenchStats.Percentile(s.CaptionMs, 0.50), 3),
                ["caption_ms_p95"] = Math.Round(BenchStats.Percentile(s.CaptionMs, 0.95), 3),
                ["tokens_per_caption"] = Math.Round((double)s.Tokens / s.Captions.Count, 2),
                ["ms_per_token"] = Math.Round(s.WriteMs.Sum() / Math.Max(1, s.Tokens), 4),
                ["verify_passes"] = s.Passes, ["drafted"] = s.Drafted, ["accepted"] = s.Accepted,
                ["accept_rate"] = s.Drafted == 0 ? null : Math.Round((double)s.Accepted / s.Drafted, 4),
            }).ToList(),
            ["ratios"] = sides.Skip(1).Select(s => new Dictionary<string, object?>
            {
                ["draft_tokens"] = s.DraftTokens,
                ["write_ms_mean"] = Math.Round(s.WriteMs.Average() / plain.WriteMs.Average(), 4),
                ["caption_ms_mean"] = Math.Round(s.CaptionMs.Average() / plain.CaptionMs.Average(), 4),
                ["caption_ms_p95"] = Math.Round(BenchStats.Percentile(s.CaptionMs, 0.95) / BenchStats.Percentile(plain.CaptionMs, 0.95), 4),
            }).ToList(),
        };
    }

    static void Print(Dictionary<string, object?> r)
    {
        var t = new Table().AddColumns("draft tokens", "write ms mean / p50", "caption ms mean / p50 / p95", "tokens a caption", "ms a token", "drafts taken");
        foreach (var s in (List<Dictionary<string, object?>>)r["sides"]!)
            t.AddRow($"{s["draft_tokens"]}", $"{s["write_ms_mean"]} / {s["write_ms_p50"]}", $"{s["caption_ms_mean"]} / {s["caption_ms_p50"]} / {s["caption_ms_p95"]}",
                $"{s["tokens_per_caption"]}", $"{s["ms_per_token"]}", s["accept_rate"] is { } a ? $"{s["accepted"]} of {s["drafted"]} ({a:P1}) in {s["verify_passes"]} passes" : "–");
        AnsiConsole.Write(t);
        foreach (var q in (List<Dictionary<string, object?>>)r["ratios"]!)
            Console.WriteLine($"draft {q["draft_tokens"]} / one a pass: write ×{q["write_ms_mean"]:0.###}, caption ×{q["caption_ms_mean"]:0.###} (p95 ×{q["caption_ms_p95"]:0.###})");
        Console.WriteLine($"{r["mode"]}, {r["clips"]} clips of the {r["split"]} split, {r["captions"]} captions a side; captions that differ from one token a pass: {r["mismatched_captions"]}");
    }
}
