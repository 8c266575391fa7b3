using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra stream SOURCE`: group-position streaming on a video, camera or folder. Each frame passes the
/// scene-change gate or costs nothing; read frames are encoded once and appended; captions are
/// written by the write policy; questions can be asked at given times. Prints each segment as
/// "[mm:ss.f] text" and, with --jsonl, appends it to a file line by line.
/// </summary>
public static class StreamCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("source") { Description = "video file, camera index, FIFO or image folder (default: the bundled media/demo.mp4)", Arity = ArgumentArity.ZeroOrOne };
        var model = AppModel.ModelOption();
        var window = new Option<int>("--window") { DefaultValueFactory = _ => 2, Description = "frames kept in the model's memory (W)" };
        var frameBand = Cli.FrameBandOption();
        var history = new Option<int>("--caption-history") { DefaultValueFactory = _ => 0, Description = "caption tokens kept across writes (M)" };
        var stride = new Option<int>("--stride") { DefaultValueFactory = _ => 5, Description = "look at every Nth frame of the source" };
        var policy = new Option<string>("--policy") { DefaultValueFactory = _ => "change", Description = "when to write: every:N (frames read), change (scene-change gate) or finished (back to back)" };
        var gate = new Option<double>("--gate") { DefaultValueFactory = _ => 1.0, Description = "scene-change threshold, mean grey-level change on 16x16 thumbnails (0 = read every frame)" };
        var ask = new Option<string[]>("--ask") { Description = "ask a question at a time: SECONDS:question (repeatable)", AllowMultipleArgumentsPerToken = false };
        var maxTokens = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 48 };
        var prune = new PruningOptions(); // any pruning flag prunes each frame as it enters
        var jsonl = new Option<string?>("--jsonl") { Description = "append each segment to this file as a JSON line" };
        var limit = new Option<int>("--max-frames") { DefaultValueFactory = _ => 0, Description = "stop after this many source frames (0 = the whole stream)" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("stream", "Stream captions with group position encoding: frames in, captions out, no re-encoding.")
            { input, model, window, frameBand, history, stride, policy, gate, ask, maxTokens, jsonl, limit, device, dtype, weights };
        prune.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            await Task.Yield(); // Ctrl+C is handled once the action has returned a task
            if (pr.GetValue(stride) < 1) throw new UserError("--stride must be 1 or more");
            if (pr.GetValue(limit) < 0) throw new UserError("--max-frames must be ≥ 0");
            var writePolicy = WritePolicy.Parse(pr.GetValue(policy)!);
            var questions = (pr.GetValue(ask) ?? []).Select(ParseQuestion).OrderBy(q => q.At).ToList();
            var spec = pr.GetValue(input) ?? Cli.FindRepoPath("media/demo.mp4") ?? throw new UserError("no source given and media/demo.mp4 not found");
            var modelDir = AppModel.Resolve(pr.GetValue(model));
            var options = new StreamingOptions
            {
                WindowFrames = pr.GetValue(window), FrameBand = Cli.FrameBand(pr.GetValue(frameBand), pr.GetValue(window)), CaptionHistoryTokens = pr.GetValue(history),
                Generation = new GenerationOptions { MaxNewTokens = pr.GetValue(maxTokens) },
                Pruning = prune.Requested(pr, PruningConfig.BesideModel(modelDir)),
            };
            using var source = FrameSources.Open(spec, AppSources.Options());
            using var engine = LlavaEngine.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights));
            using var session = new StreamingSession(engine, options);
            using var driver = new StreamingDriver(session, writePolicy, pr.GetValue(gate));
            using var log = pr.GetValue(jsonl) is { } path ? new StreamWriter(path, append: true) { AutoFlush = true } : null;
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(source.Description)} · window {options.WindowFrames} (frames attend {session.FrameBand}) · every {pr.GetValue(stride)}th frame · policy {writePolicy} · gate {pr.GetValue(gate)}{(options.Pruning is { } pc ? $" · pruning {pc.Method}" : "")}[/]");
            long index = 0;
            int next = 0;
            while (!ct.IsCancellationRequested)
            {
                Frame? frame;
                try { frame = source.Read(ct); }
                catch (OperationCanceledException) { break; }
                if (frame is null) break;
                using (frame)
                {
                    if (index++ % pr.GetValue(stride) != 0) continue;
                    while (next < questions.Count && questions[next].At <= frame.Timestamp) driver.Ask(questions[next++].Question);
                    foreach (var seg in driver.Push(frame.Image, frame.Timestamp))
                    {
                        var when = $"[{(int)seg.At.TotalMinutes:00}:{seg.At.Seconds:00}.{seg.At.Milliseconds / 100}]";
                        Console.Out.WriteLine(seg.Question is null ? $"{when} {seg.Text}" : $"{when} Q: {seg.Question}  A: {seg.Text}");
                        log?.WriteLine(JsonSerializer.Serialize(new
                        {
                            t = Math.Round(seg.At.TotalSeconds, 3), question = seg.Question, text = seg.Text, tokens = seg.Tokens, ms = Math.Round(seg.Ms, 2),
                        }));
                    }
                }
                if (pr.GetValue(limit) > 0 && index >= pr.GetValue(limit)) break;
            }
            var s = driver.Stats;
            var table = new Table().AddColumns("frames looked at", "read (encoded)", "skipped by gate", "captions", "answers", "ms per read alone", "ms per write (with its read)", "cache MB");
            table.AddRow(s.Frames.ToString(), s.Read.ToString(), s.Skipped.ToString(), s.Writes.ToString(), s.Answers.ToString(),
                (s.Read - s.ReadWithWrite == 0 ? "–" : (s.ReadMs / (s.Read - s.ReadWithWrite)).ToString("0.0")), (s.Writes + s.Answers == 0 ? 0 : s.WriteMs / (s.Writes + s.Answers)).ToString("0.0"),
                (session.Cache.AllocatedBytes / 1e6).ToString("0.00"));
            AnsiConsole.Write(table);
            return ct.IsCancellationRequested ? 130 : 0;
        });
    }

    static (TimeSpan At, string Question) ParseQuestion(string text)
    {
        int colon = text.IndexOf(':');
        if (colon <= 0 || !double.TryParse(text[..colon], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds < 0 || colon == text.Length - 1)
            throw new UserError($"--ask takes SECONDS:question, e.g. \"5:what colour is the star ?\"; got '{text}'");
        return (TimeSpan.FromSeconds(seconds), text[(colon + 1)..].Trim());
    }
}
