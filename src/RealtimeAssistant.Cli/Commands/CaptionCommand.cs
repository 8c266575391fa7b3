using System.CommandLine;
using System.Text.Json;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra caption --model DIR --image FILE`: one image in, a caption streamed out.</summary>
public static class CaptionCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "model folder in the llava-hf layout", Required = true };
        var image = new Option<string>("--image", "-i") { Description = "image file", Required = true };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "prompt; <image> marks where the image goes (default: the model's)" };
        var maxTokens = new Option<int>("--max-new-tokens") { Description = "limit on generated tokens", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { DefaultValueFactory = _ => 0UL };
        var json = new Option<bool>("--json") { Description = "also print tokens and timings (vision, prefill, each decode step) as JSON" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var cmd = new Command("caption", "Caption one image, streaming the text to stdout.")
            { model, image, prompt, maxTokens, temperature, topP, seed, json, device, dtype };
        return cmd.WithAction((pr, ct) =>
        {
            var options = new GenerationOptions
            {
                MaxNewTokens = pr.GetValue(maxTokens), Temperature = pr.GetValue(temperature), TopP = pr.GetValue(topP), Seed = pr.GetValue(seed),
            };
            options.Validate();
            using var img = Cli.ReadImage(pr.GetValue(image)!);
            using var engine = LlavaEngine.Load(pr.GetValue(model)!, Cli.EngineOptions(pr, device, dtype));
            using var captioner = new Captioner(engine);
            var timings = new CaptionTimings();
            var tokens = new List<object>();
            var text = new System.Text.StringBuilder();
            foreach (var ev in captioner.Caption(img, pr.GetValue(prompt), options, timings))
            {
                ct.ThrowIfCancellationRequested();
                Console.Out.Write(ev.Text);
                Console.Out.Flush();
                text.Append(ev.Text);
                if (ev.Id >= 0) tokens.Add(new { id = ev.Id, token = engine.Tokenizer.IdToToken(ev.Id), text = ev.Text, ms = Math.Round(ev.Ms, 3) });
            }
            Console.Out.WriteLine();
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
                    device = engine.Device.ToString(),
                    dtype = engine.DType.ToString(),
                }));
            return Task.FromResult(0);
        });
    }
}
