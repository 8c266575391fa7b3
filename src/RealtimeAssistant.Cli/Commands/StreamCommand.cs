using System.CommandLine;
using System.Text.Json;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Pipeline;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra stream SOURCE`: the frame loop with headless pacing: every stride-th frame in order through
/// the session (gate, governor, read, write policy), no rendering. Prints each segment as
/// "[mm:ss.f] text" and, with --jsonl, appends it to a file line by line.
/// </summary>
public static class StreamCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("source") { Description = "video file, camera index, stream URL (an http(s) URL of a video file is read as a file), image folder, or a FIFO or '-' for standard input, read to the writer's end (default: the bundled media/demo.mp4)", Arity = ArgumentArity.ZeroOrOne };
        var model = AppModel.ModelOption();
        var jsonl = Cli.WritesTo(new Option<string?>("--jsonl") { Description = "append each segment to this file as a JSON line ('-': to stdout, as it is written, with the text and table on stderr)" }, folder: false);
        var limit = new Option<int>("--max-frames") { DefaultValueFactory = _ => 0, Description = "stop after this many source frames (0 = the whole stream)" };
        var giveUp = Cli.GiveUpOption("stream");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var rt = new RealtimeFlags("change");
        var cmd = new Command("stream", "Stream captions with group position encoding: frames in, captions out, no re-encoding; questions with --ask. The governor holds each read to the frame budget.")
            { input, model, jsonl, limit, giveUp, device, dtype, weights, maxPixels };
        rt.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            await Task.Yield(); // Ctrl+C is handled once the action has returned a task
            using var interrupt = new Interrupt(ct); // Ctrl+C ends the stream with its summary
            ct = interrupt.Token;
            if (pr.GetValue(limit) < 0) throw new UserError("--max-frames must be ≥ 0");
            rt.Check(pr);
            var spec = pr.GetValue(input) ?? Cli.FindRepoPath("media/demo.mp4") ?? throw new UserError("no source given and media/demo.mp4 not found");
            var source = FrameSources.Open(spec, AppSources.Options(pipesAsFiles: true) with { GiveUpAfter = TimeSpan.FromSeconds(pr.GetValue(giveUp)) });
            using var engine = Model.Engine.Load(AppModel.Resolve(pr.GetValue(model)), Cli.EngineOptions(pr, device, dtype, weights, maxPixels));
            var run = rt.Resolve(pr, engine, source.Fps, Pacing.Headless);
            using var session = SessionModes.Create(run.Mode, engine, run.Streaming);
            var path = pr.GetValue(jsonl);
            if (path is not null and not "-") Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!); // as --json makes its folder
            // Appending is what --jsonl does; said, so that an earlier run's lines are not read as this run's.
            if (path is not null and not "-" && File.Exists(path) && new FileInfo(path).Length > 0)
                Console.Error.WriteLine($"stream: appending to {path}, which already holds {File.ReadLines(path).Count()} lines");
            using var file = path is not null and not "-" ? new StreamWriter(path, append: true) { AutoFlush = true } : null;
            var log = path == "-" ? Cli.JsonStdout : file;
            var band = session is GpeSession g ? $" (frames attend {g.FrameBand})" : "";
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(source.Description)} · {Markup.Escape(run.Header)}{band}[/]");
            using var loop = new FrameLoop(source, session, new Profiler(), run.Loop with { MaxFrames = pr.GetValue(limit) })
            {
                Written = (seg, latency) =>
                {
                    var when = $"[{(int)seg.At.TotalMinutes:00}:{seg.At.Seconds:00}.{seg.At.Milliseconds / 100}]";
                    Console.Out.WriteLine(seg.Question is null ? $"{when} {seg.Text}" : $"{when} Q: {seg.Question}  A: {seg.Text}");
                    log?.WriteLine(JsonSerializer.Serialize(new
                    {
                        t = Math.Round(seg.At.TotalSeconds, 3), frame = seg.FrameIndex, question = seg.Question, text = seg.Text, tokens = seg.Tokens,
                        ms = Math.Round(seg.Ms, 2), mode = seg.Mode, frames_read = seg.ReadsSince, k = seg.Budget, level = seg.Level,
                        read_ms = Math.Round(seg.ReadMs, 2), write_ms = Math.Round(seg.WriteMs, 2),
                    }));
                    log?.Flush(); // a reader downstream gets each segment as it is written
                },
            };
            var result = loop.RunHeadless(ct);
            var s = result.Stats;
            var table = new Table().AddColumns("frames looked at", "read (encoded)", "unchanged (gate)", "skipped (budget)", "captions", "answers", "ms per read alone", "ms per write (with its read)", "cache MB");
            table.AddRow(s.Frames.ToString(), s.Read.ToString(), s.Skipped.ToString(), s.BudgetSkipped.ToString(), s.Writes.ToString(), s.Answers.ToString(),
                (s.Read - s.ReadWithWrite == 0 ? "–" : (s.ReadMs / (s.Read - s.ReadWithWrite)).ToString("0.0")), (s.Writes + s.Answers == 0 ? 0 : s.WriteMs / (s.Writes + s.Answers)).ToString("0.0"),
                (session.Cache.AllocatedBytes / 1e6).ToString("0.00"));
            AnsiConsole.Write(table);
            if (s.Drafted > 0) Console.WriteLine($"drafted caption tokens taken: {s.DraftsTaken} of {s.Drafted} ({(double)s.DraftsTaken / s.Drafted:P0})");
            if (s.ReadsByLevelLine is { } levels) Console.WriteLine(levels);
            RealtimeFlags.ReportUnasked(result.Unasked, result.Cancelled, "stream");
            RealtimeFlags.ReportBudget(s, result.Cancelled, "stream");
            if (ct.IsCancellationRequested) return 130;
            return Cli.ReportLost(source, "stream");
        });
    }
}
