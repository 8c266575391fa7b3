using System.CommandLine;
using System.Text.Json;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra caption [--model DIR] --image FILE`: one image in, a caption streamed out (the bundled demo model unless --model says).</summary>
public static class CaptionCommand
{
    public static Command Create()
    {
        var model = App.AppModel.ModelOption();
        var image = new Option<string>("--image", "-i") { Description = "image file, or - for one piped into standard input", Required = true };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt; <image> marks where the image goes (default: the model's)" };
        var maxTokens = new Option<int>("--max-new-tokens") { Description = "limit on generated tokens", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { DefaultValueFactory = _ => 0UL };
        var json = new Option<bool>("--json") { Description = "print the caption with its tokens and timings (vision, prefill, each decode step) as JSON: stdout holds the JSON alone, and the text streams to stderr" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var maxPixels = Cli.MaxPixelsOption();
        var prune = new PruningOptions();
        var cmd = new Command("caption", "Caption one image, streaming the text to stdout. Any pruning flag prunes its prefill (what was kept goes to stderr, and to --json).")
            { model, image, prompt, maxTokens, temperature, topP, seed, json, device, dtype, weights, maxPixels };
        prune.AddTo(cmd);
        return cmd.WithAction((pr, ct) =>
        {
            var options = new GenerationOptions
            {
                MaxNewTokens = pr.GetValue(maxTokens), Temperature = pr.GetValue(temperature), TopP = pr.GetValue(topP), Seed = pr.GetValue(seed),
            };
            options.Validate();
            using var img = Cli.ReadImage(pr.GetValue(image)!);
            var modelDir = App.AppModel.Resolve(pr.GetValue(model));
            using var engine = Engine.Load(modelDir, Cli.EngineOptions(pr, device, dtype, weights, maxPixels));
            var pruning = prune.Requested(pr, engine.Layout.ScheduleFor(engine.Text.NumHiddenLayers));
            var captioner = pruning is null ? new Captioner(engine) : new PrunedCaptioner(engine, pruning.CreatePruner(engine.Text.NumHiddenLayers));
            var timings = new CaptionTimings();
            var tokens = new List<object>();
            var text = new System.Text.StringBuilder();
            // With --json, stdout is the JSON alone (it pipes into jq); the text still streams, to stderr.
            var stream = pr.GetValue(json) ? Console.Error : Console.Out;
            foreach (var ev in captioner.Caption(img, pr.GetValue(prompt), options, timings))
            {
                ct.ThrowIfCancellationRequested();
                stream.Write(ev.Text);
                stream.Flush();
                text.Append(ev.Text);
                if (ev.Id >= 0) tokens.Add(new { id = ev.Id, token = engine.Tokenizer.IdToTokenOrNull(ev.Id), text = ev.Text, ms = Math.Round(ev.Ms, 3) });
            }
            stream.WriteLine();
            var report = (captioner as PrunedCaptioner)?.LastReport;
            if (report is not null)
                Console.Error.WriteLine($"pruning ({report.Method}): visual tokens in each layer {string.Join(" ", report.Layers.Select(l => l.Visual))} (of {report.VisualTokens}); "
                    + $"prefill {report.Flops / 1e9:0.###} GFLOPs against {PrunedPrefill.DenseFlops(engine.Text, timings.PromptTokens) / 1e9:0.###} unpruned");
            if (pr.GetValue(json))
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    text = text.ToString(),
                    prompt_tokens = timings.PromptTokens,
                    tokens,
                    timings_ms = new
                    {
                        preprocess = Math.Round(timings.PreprocessMs, 3),
                        vision = Math.Round(timings.VisionMs, 3),
                        prefill = Math.Round(timings.PrefillMs, 3),
                        decode = timings.DecodeMs.Select(d => Math.Round(d, 3)),
                    },
                    pruning = report is null ? null : new
                    {
                        method = report.Method,
                        visual_tokens = report.VisualTokens,
                        kept_tokens = report.KeptTokens,
                        filter_layer = report.FilterLayer,
                        exit_layer = report.ExitLayer,
                        flops = report.Flops,
                        dense_flops = PrunedPrefill.DenseFlops(engine.Text, timings.PromptTokens),
                        layers = report.Layers.Select(l => new { layer = l.Layer, stage = l.Stage, tokens = l.Tokens, visual = l.Visual, cache_length = l.CacheLength, flops = l.Flops }),
                    },
                    device = engine.Device.ToString(),
                    dtype = engine.DType.ToString(),
                }));
            return Task.FromResult(0);
        });
    }
}
