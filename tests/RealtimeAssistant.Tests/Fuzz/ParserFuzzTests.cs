using System.Text;
using System.Text.Json.Nodes;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.App;
using RealtimeAssistant.Tests.Model;

namespace RealtimeAssistant.Tests.Fuzz;

/// <summary>
/// A checkpoint or a caption file from the internet is untrusted input. Each parser gets
/// mutated real files (the shipped demo model's, our writers' outputs): it must load them or
/// refuse them with a UserError naming the file — never another exception, never a hang, never
/// an allocation sized by a number in the file. See <see cref="FuzzSettings"/> for longer runs.
/// </summary>
public class ParserFuzzTests(ITestOutputHelper log)
{
    static string DemoModel => RealtimeAssistant.Cli.Cli.FindRepoPath(AppModel.DemoModelPath)
        ?? throw new InvalidOperationException("media/demo-model is missing from the checkout");

    static byte[] Utf8(JsonNode n) => Encoding.UTF8.GetBytes(n.ToJsonString());

    [Fact]
    public void SafeTensors_HeaderAndOffsets()
    {
        // Real files: the tiny llava-layout checkpoint whole, and the demo model's real header with
        // its data cut short (most of its tensors then run past the end: that must be refused too).
        var tiny = File.ReadAllBytes(Path.Combine(AppTestSupport.TinyModel, "model.safetensors"));
        var demo = File.ReadAllBytes(Path.Combine(DemoModel, "model.safetensors"));
        var headerLen = (int)BitConverter.ToInt64(demo, 0);
        var demoCut = demo.AsSpan(0, Math.Min(demo.Length, 8 + headerLen + (64 << 10))).ToArray();
        // A sharded copy of the tiny model, for the index.
        using var sharded = new TempDir();
        var tinyReader = SafeTensorsReader.Open(AppTestSupport.TinyModel);
        var tensors = tinyReader.Tensors.Keys.Select(k => (k, tinyReader.Load(k))).ToList();
        SafeTensorsWriter.WriteSharded(sharded.Path, tensors, maxShardBytes: tiny.Length / 2);
        foreach (var (_, t) in tensors) t.Dispose();
        var index = File.ReadAllBytes(Path.Combine(sharded.Path, "model.safetensors.index.json"));
        log.WriteLine($"seeds: tiny {tiny.Length:N0} bytes, demo header {headerLen:N0} + 64 KiB of data, index over {Directory.GetFiles(sharded.Path, "*.safetensors").Length} shards");

        FuzzRunner.Run("safetensors", (m, dir) =>
        {
            if (m.Rng.Next(4) == 0)
            {
                foreach (var f in Directory.GetFiles(sharded.Path, "*.safetensors")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                var path = Path.Combine(dir, "model.safetensors.index.json");
                var bytes = m.JsonFile(index);
                File.WriteAllBytes(path, bytes);
                return (path, bytes.Length + tiny.Length);
            }
            var file = Path.Combine(dir, "model.safetensors");
            var mutated = m.SafeTensors(m.Rng.Next(3) == 0 ? demoCut : tiny);
            File.WriteAllBytes(file, mutated);
            return (file, mutated.Length);
        }, dir =>
        {
            var reader = SafeTensorsReader.Open(dir);
            long onDisk = Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
            foreach (var name in reader.Tensors.Keys.Take(8))
            {
                using var t = reader.Load(name);
                if (t.NumberOfElements * t.ElementSize > onDisk) throw new InvalidOperationException($"tensor {name} of {t.NumberOfElements * t.ElementSize} bytes from {onDisk} bytes of files");
            }
        }, log);
    }

    /// <summary>
    /// The Hub's revision answer (commit and file list) as a download reads it, mutated, from a
    /// loopback Hub: a fetch completes or refuses with a UserError naming the repo, whatever the
    /// answer holds (file names with separators, NULs, traversals).
    /// </summary>
    [Fact]
    public async Task HubRevisionAnswer()
    {
        var checkpoint = Capture.TestMedia.TempDir("fuzz-hub-source");
        foreach (var file in Directory.GetFiles(new Model.Families.HfFixture("qwen2_vl").Dir).Where(f => !Path.GetFileName(f).StartsWith("expected")))
            File.Copy(file, Path.Combine(checkpoint, Path.GetFileName(file)), overwrite: true);
        await using var hub = await FakeHub.Start("tiny-org/tiny-qwen2-vl", checkpoint);
        var valid = new JsonObject
        {
            ["id"] = "tiny-org/tiny-qwen2-vl", ["sha"] = FakeHub.Commit,
            ["siblings"] = new JsonArray(Directory.GetFiles(checkpoint).Select(f => (JsonNode)new JsonObject { ["rfilename"] = Path.GetFileName(f) })
                .Append(new JsonObject { ["rfilename"] = "../escape.json" }).Append(new JsonObject { ["rfilename"] = "onnx/model.onnx" }).ToArray()),
        };
        FuzzRunner.Run("hub revision answer", (m, dir) =>
        {
            var bytes = m.JsonFile(Utf8(valid));
            var path = Path.Combine(dir, "tiny-qwen2-vl"); // the repo's name, which every refusal names
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir =>
        {
            hub.RevisionAnswer = File.ReadAllText(Path.Combine(dir, "tiny-qwen2-vl"));
            new HubDownload(k => k == "HF_ENDPOINT" ? hub.Url : null, _ => { })
                .Fetch(Path.Combine(dir, "cache"), "tiny-org/tiny-qwen2-vl", "main").GetAwaiter().GetResult();
        }, log);
    }

    /// <summary>A chat request's video_url is a video file from the network: FFmpeg (through OpenCV) must read it or refuse it with a 400, never crash or hang.</summary>
    [Fact]
    public void ChatVideo()
    {
        var clip = File.ReadAllBytes(Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("fuzz-video"), frames: 12, width: 64, height: 48));
        FuzzRunner.Run("chat video", (m, dir) =>
        {
            var bytes = m.Bytes(clip);
            var path = Path.Combine(dir, "video.mp4");
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir =>
        {
            try
            {
                var frames = RealtimeAssistant.Server.OpenAi.VideoFrames.Sample(File.ReadAllBytes(Path.Combine(dir, "video.mp4")), 4, 1 << 20, "video.mp4", CancellationToken.None);
                Assert.InRange(frames.Count, 1, 4);
                foreach (var f in frames) f.Dispose();
            }
            catch (RealtimeAssistant.Server.ApiError e) when (e.Status == 400) { throw new UserError($"{e.Param}: {e.Message}"); }
        }, log, allocBudget: size => 64 * size + (64 << 20));
    }

    [Fact]
    public void ConfigJson()
    {
        var seeds = new[] { File.ReadAllBytes(Path.Combine(DemoModel, "config.json")), File.ReadAllBytes(Path.Combine(AppTestSupport.TinyModel, "config.json")) };
        FuzzRunner.Run("config.json", (m, dir) =>
        {
            var bytes = m.JsonFile(seeds[m.Rng.Next(seeds.Length)]);
            var path = Path.Combine(dir, "config.json");
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir => LlavaConfig.Load(dir), log);
    }

    [Fact]
    public void TokenizerJson()
    {
        var seeds = new[]
        {
            File.ReadAllBytes(Path.Combine(DemoModel, "tokenizer.json")),  // WordLevel, as shipped
            Utf8(TokenizerTests.ByteLevelTokenizerJson()),                 // Qwen2-style byte-level BPE
            Utf8(TokenizerTests.MetaspaceTokenizerJson()),                 // LLaMA-style metaspace BPE
        };
        FuzzRunner.Run("tokenizer.json", (m, dir) =>
        {
            var bytes = m.JsonFile(seeds[m.Rng.Next(seeds.Length)]);
            var path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir => TextTokenizer.Load(dir), log);
    }

    [Fact]
    public void PreprocessorConfigJson()
    {
        var vision = LlavaConfig.Load(DemoModel).Vision;
        var seeds = new[]
        {
            File.ReadAllBytes(Path.Combine(DemoModel, "preprocessor_config.json")),
            Utf8(PreprocessorConfig.Default(vision with { ModelType = "siglip_vision_model" }).ToJson()),
        };
        FuzzRunner.Run("preprocessor_config.json", (m, dir) =>
        {
            var bytes = m.JsonFile(seeds[m.Rng.Next(seeds.Length)]);
            var path = Path.Combine(dir, "preprocessor_config.json");
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir => PreprocessorConfig.Load(dir, vision), log);
    }

    /// <summary>What `annotate --resume` reads: captions.jsonl (the record it trusts), and the SRT/VTT readers.</summary>
    [Fact]
    public void ResumeFiles_Jsonl_Srt_Vtt()
    {
        using var seedDir = new TempDir();
        var plan = new OutputPlan(OutputMode.Fresh, seedDir.Path, [], -1);
        using (var files = new CaptionFiles(plan))
            for (int i = 0; i < 6; i++)
                files.Write(new CaptionEntry(TimeSpan.FromSeconds(i * 1.5), TimeSpan.FromSeconds(i * 1.5 + 1.25),
                    i % 2 == 0 ? $"a red circle at left and a cyan star ({i})" : "two lines:\nthe second, with “quotes” and é",
                    12.5 * i, 64 - i, i * 15, new Dictionary<string, object?> { ["end_frame"] = i * 15 + 14, ["visual_tokens"] = 64 }));
        var seeds = new Dictionary<string, byte[]>
        {
            [OutputFolder.JsonlName] = File.ReadAllBytes(plan.Jsonl),
            [OutputFolder.SrtName] = File.ReadAllBytes(plan.Srt),
            [OutputFolder.VttName] = File.ReadAllBytes(plan.Vtt),
        };
        var names = seeds.Keys.ToArray();
        FuzzRunner.Run("resume files", (m, dir) =>
        {
            var name = names[m.Rng.Next(names.Length)];
            var bytes = m.Bytes(seeds[name]);
            if (name == OutputFolder.JsonlName && m.Rng.Next(2) == 0)
            {
                // A line retyped or with a key dropped, the rest intact.
                var lines = Encoding.UTF8.GetString(seeds[name]).Split('\n');
                int at = m.Rng.Next(lines.Length - 1);
                lines[at] = m.Json(JsonNode.Parse(lines[at]))?.ToJsonString() ?? "null";
                bytes = Encoding.UTF8.GetBytes(string.Join('\n', lines));
            }
            var path = Path.Combine(dir, name);
            File.WriteAllBytes(path, bytes);
            return (path, bytes.Length);
        }, dir =>
        {
            if (File.Exists(Path.Combine(dir, OutputFolder.JsonlName)))
            {
                var p = OutputFolder.Plan(dir, resume: true);
                Annotator.ResumeFrame(p);
            }
            else SubtitleParser.ReadFile(Directory.GetFiles(dir).Single());
        }, log);
    }
}
