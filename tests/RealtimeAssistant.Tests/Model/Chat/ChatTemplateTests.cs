using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Chat;

namespace RealtimeAssistant.Tests.Model.Chat;

public class ChatTemplateTests
{
    const string Template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{% endfor %}{{ '>' if add_generation_prompt }}";

    static void Write(string path, JsonNode json) => File.WriteAllText(path, json.ToJsonString());

    [Fact]
    public void FindsTheTemplateInTransformersOrder()
    {
        using var dir = new TempDir();
        Assert.Null(ChatTemplate.Find(dir.Path));
        Assert.Contains(dir.Path, ChatTemplate.NoTemplateNote(dir.Path));

        Write(dir.File("tokenizer_config.json"), new JsonObject { ["chat_template"] = "config{{ bos_token }}", ["bos_token"] = "<s>" });
        var fromConfig = ChatTemplate.Find(dir.Path)!;
        Assert.Contains("tokenizer_config.json", fromConfig.Source);
        Assert.Equal("config<s>", fromConfig.Render(Array.Empty<ChatMessage>()));

        Write(dir.File("chat_template.json"), new JsonObject { ["chat_template"] = "json" });
        Assert.Equal("json", ChatTemplate.Find(dir.Path)!.Render(Array.Empty<ChatMessage>()));

        File.WriteAllText(dir.File("chat_template.jinja"), "jinja\n");
        var fromJinja = ChatTemplate.Find(dir.Path)!;
        Assert.Equal(dir.File("chat_template.jinja"), fromJinja.Source);
        Assert.Equal("jinja", fromJinja.Render(Array.Empty<ChatMessage>())); // the trailing newline is dropped
    }

    [Fact]
    public void NamedTemplatesUseDefault()
    {
        using var dir = new TempDir();
        Write(dir.File("tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = new JsonArray(
                new JsonObject { ["name"] = "tool_use", ["template"] = "tools" },
                new JsonObject { ["name"] = "default", ["template"] = "plain" }),
        });
        Assert.Equal("plain", ChatTemplate.Find(dir.Path)!.Render(Array.Empty<ChatMessage>()));

        Write(dir.File("tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "tool_use", ["template"] = "tools" }),
        });
        var e = Assert.Throws<UserError>(() => ChatTemplate.Find(dir.Path));
        Assert.Contains("default", e.Message);
    }

    [Fact]
    public void SpecialTokensComeFromTheTokenizerConfig()
    {
        using var dir = new TempDir();
        Write(dir.File("tokenizer_config.json"), new JsonObject
        {
            ["bos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = "<s>", ["lstrip"] = false },
            ["eos_token"] = "</s>",
            ["unk_token"] = null,
            ["pad_token"] = "<pad>",
            ["additional_special_tokens"] = new JsonArray("<image>", new JsonObject { ["content"] = "<video>" }),
            ["chat_template"] = "{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}|{{ pad_token }}|{{ additional_special_tokens | join(',') }}",
        });
        Write(dir.File("special_tokens_map.json"), new JsonObject { ["pad_token"] = "<|pad|>" });
        var chat = ChatTemplate.Find(dir.Path)!;
        Assert.Equal("<s>|</s>|False|<|pad|>|<image>,<video>", chat.Render(Array.Empty<ChatMessage>()));
        Assert.Equal("<s>", chat.SpecialTokens["bos_token"]);
    }

    [Fact]
    public void MessagesBuiltInCodeRenderAsTheirJson()
    {
        var qwen = ChatTemplateFixtureTests.LoadTemplate("qwen2-vl");
        var built = new[]
        {
            ChatMessage.FromText("system", "Be brief."),
            ChatMessage.FromParts("user", ChatPart.Image(), ChatPart.TextPart("What is it?"), ChatPart.Video()),
        };
        var json = (JsonArray)JsonNode.Parse("""
            [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}, {"type": "video"}]}]
            """)!;
        var expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?"
                       + "<|vision_start|><|video_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal(expected, qwen.Render(built));
        Assert.Equal(expected, qwen.Render(json));
        var withIds = qwen.Render(built, extra: new Dictionary<string, object?> { ["add_vision_id"] = true });
        Assert.Contains("Picture 1: <|vision_start|>", withIds);
        Assert.Contains("Video 1: <|vision_start|>", withIds);
    }

    [Fact]
    public void StrftimeNowReadsTheClock()
    {
        var chat = ChatTemplate.FromText("{{ strftime_now('%d %b %Y %H:%M') }}");
        chat.Clock = () => new DateTime(2025, 2, 3, 16, 7, 0);
        Assert.Equal("03 Feb 2025 16:07", chat.Render(Array.Empty<ChatMessage>()));
    }

    [Theory]
    [InlineData("a\nb\n{% if x %}\n{{ x + }}\n{% endif %}", 4)]
    [InlineData("line1\n{% for m in messages %}\n{% endif %}", 3)]
    [InlineData("one\ntwo\n{{ 'unclosed }}", 3)]
    [InlineData("{% if true %}\nno end", 2)]
    [InlineData("{{ x | nosuchfilter }}", 1)]
    public void SyntaxErrorsNameTheFileAndLine(string text, int line)
    {
        var e = Assert.Throws<UserError>(() => ChatTemplate.FromText(text, "models/x/chat_template.jinja").Render(Array.Empty<ChatMessage>()));
        Assert.StartsWith($"models/x/chat_template.jinja, line {line}: ", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void RaiseExceptionIsAUserErrorWithTheTemplatesMessage()
    {
        var chat = ChatTemplate.FromText("ok\n{% if messages | length == 0 %}{{ raise_exception('need a message') }}{% endif %}", "t.jinja");
        var e = Assert.Throws<UserError>(() => chat.Render(Array.Empty<ChatMessage>()));
        Assert.Equal("t.jinja, line 2: need a message", e.Message);
        Assert.Equal("ok\n", chat.Render(new[] { ChatMessage.FromText("user", "hi") }));
    }

    [Theory]
    [InlineData("{{ undefined_thing.attribute }}", "'undefined_thing' is undefined")]
    [InlineData("{{ messages + 1 }}", "can only concatenate list")]
    [InlineData("{{ [1].append(2) }}", "unsafe")]
    [InlineData("{{ range(1000000) | length }}", "Range too big")]
    [InlineData("{{ 'x' * 100000000 }}", "string too long")]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion")]
    [InlineData("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "too long")]
    [InlineData("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}", "")]
    public void RuntimeFailuresAreUserErrors(string text, string fragment)
    {
        var e = Assert.Throws<UserError>(() => ChatTemplate.FromText(text, "t.jinja").Render(new[] { ChatMessage.FromText("user", "hi") }));
        Assert.StartsWith("t.jinja", e.Message);
        Assert.Contains(fragment, e.Message);
    }

    [Theory]
    [InlineData("{{ ", "(", "1", ")", " }}")]
    [InlineData("{{ ", "[", "1", "]", " }}")]
    [InlineData("{{ ", "not ", "1", "", " }}")]
    [InlineData("{{ ", "-", "1", "", " }}")]
    [InlineData("", "{% if true %}", "x", "{% endif %}", "")]
    [InlineData("", "{% for i in [1] %}", "x", "{% endfor %}", "")]
    public void DeepNestingIsAUserErrorNotAStackOverflow(string prefix, string open, string middle, string close, string suffix)
    {
        const int depth = 5000;
        var text = prefix + string.Concat(Enumerable.Repeat(open, depth)) + middle + string.Concat(Enumerable.Repeat(close, depth)) + suffix;
        var e = Assert.Throws<UserError>(() => ChatTemplate.FromText(text, "t.jinja").Render(Array.Empty<ChatMessage>()));
        Assert.Contains("nested too deeply", e.Message);
    }

    [Fact]
    public void BadTemplateFilesAreUserErrors()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("chat_template.json"), "{ not json");
        var e = Assert.Throws<UserError>(() => ChatTemplate.Find(dir.Path));
        Assert.Contains("chat_template.json", e.Message);

        Write(dir.File("chat_template.json"), new JsonObject { ["chat_template"] = 5 });
        Assert.Contains("chat_template.json", Assert.Throws<UserError>(() => ChatTemplate.Find(dir.Path)).Message);

        File.Delete(dir.File("chat_template.json"));
        Write(dir.File("tokenizer_config.json"), new JsonObject { ["bos_token"] = 5, ["chat_template"] = "x" });
        Assert.Contains("tokenizer_config.json", Assert.Throws<UserError>(() => ChatTemplate.Find(dir.Path)).Message);
    }
}

/// <summary>A model folder as a user downloads it: its chat template renders the prompt and its tokenizer keeps the template's special tokens whole.</summary>
public class ChatPromptEndToEndTests
{
    [Fact]
    public void Qwen2VlPromptTokenizesWithItsSpecialTokensWhole()
    {
        using var dir = new TempDir();
        var fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
        File.Copy(Path.Combine(fixtures, "tokenizers", "qwen2.json"), dir.File("tokenizer.json"));
        File.WriteAllText(dir.File("chat_template.json"),
            new JsonObject { ["chat_template"] = File.ReadAllText(Path.Combine(fixtures, "chat", "templates", "qwen2-vl.jinja")) }.ToJsonString());
        File.WriteAllText(dir.File("tokenizer_config.json"), new JsonObject { ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>" }.ToJsonString());

        var template = ChatTemplate.Find(dir.Path)!;
        var tokenizer = RealtimeAssistant.Model.Checkpoint.TextTokenizer.Load(dir.Path);
        var prompt = template.Render(new[] { ChatMessage.FromParts("user", ChatPart.Image(), ChatPart.TextPart("Describe.")) });
        var ids = tokenizer.Encode(prompt, addSpecialTokens: false);

        int Id(string t) => tokenizer.TokenToId(t)!.Value;
        Assert.Equal(3, ids.Count(i => i == Id("<|im_start|>")));
        var span = new[] { Id("<|vision_start|>"), Id("<|image_pad|>"), Id("<|vision_end|>") };
        int at = ids.IndexOf(span[0]);
        Assert.Equal(span, ids.Skip(at).Take(3));
        Assert.Equal(Id("<|im_end|>"), tokenizer.EosId);
        Assert.Equal("system\nYou are a helpful assistant.\nuser\nDescribe.\nassistant\n", tokenizer.Decode(ids));
    }
}
