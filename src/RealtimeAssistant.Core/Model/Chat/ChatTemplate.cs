using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Chat;

/// <summary>One part of a message's content: text, an image or a video placeholder.</summary>
public sealed record ChatPart(string Type, string? Text = null)
{
    public static ChatPart TextPart(string text) => new("text", text);
    public static ChatPart Image() => new("image");
    public static ChatPart Video() => new("video");

    internal PyDict ToValue()
    {
        var d = new PyDict { ["type"] = Type };
        if (Text != null) d["text"] = Text;
        return d;
    }
}

/// <summary>A chat message. Content is a plain string (<see cref="Text"/>) or a list of parts, as in transformers.</summary>
public sealed record ChatMessage(string Role, string? Text, IReadOnlyList<ChatPart>? Parts)
{
    public static ChatMessage FromText(string role, string text) => new(role, text, null);
    public static ChatMessage FromParts(string role, params ChatPart[] parts) => new(role, null, parts);

    internal PyDict ToValue() => new()
    {
        ["role"] = Role,
        ["content"] = Text != null ? Text : (Parts ?? Array.Empty<ChatPart>()).Select(p => (object?)p.ToValue()).ToList(),
    };
}

/// <summary>
/// A checkpoint's chat template, found and rendered as transformers does: chat_template.jinja,
/// else chat_template.json's "chat_template", else tokenizer_config.json's "chat_template" (a
/// string, or a list of named templates of which "default" is used). The special tokens named in
/// tokenizer_config.json (and special_tokens_map.json) are template variables, as in
/// apply_chat_template, alongside messages, tools=None, documents=None and add_generation_prompt.
/// </summary>
public sealed class ChatTemplate
{
    static readonly string[] SpecialTokenKeys = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token" };

    readonly JinjaTemplate _template;

    /// <summary>The file (and key) the template was read from.</summary>
    public string Source { get; }
    public string Text { get; }
    /// <summary>bos_token, eos_token, … as strings, and additional_special_tokens as a list; only those set.</summary>
    public IReadOnlyDictionary<string, object?> SpecialTokens { get; }
    /// <summary>What strftime_now reads; tests pin it.</summary>
    public Func<DateTime> Clock { get; set; } = () => DateTime.Now;

    ChatTemplate(string text, string source, IReadOnlyDictionary<string, object?> specialTokens)
    {
        Text = text;
        Source = source;
        SpecialTokens = specialTokens;
        _template = JinjaTemplate.Parse(text, source);
    }

    public static ChatTemplate FromText(string text, string source = "chat template", IReadOnlyDictionary<string, object?>? specialTokens = null) =>
        new(text, source, specialTokens ?? new Dictionary<string, object?>());

    /// <summary>The model folder's chat template, or null when it has none (see <see cref="NoTemplateNote"/>).</summary>
    public static ChatTemplate? Find(string modelDir)
    {
        var tokens = ReadSpecialTokens(modelDir);
        var jinja = Path.Combine(modelDir, "chat_template.jinja");
        if (File.Exists(jinja)) return new ChatTemplate(File.ReadAllText(jinja), jinja, tokens);

        var json = Path.Combine(modelDir, "chat_template.json");
        if (File.Exists(json) && ReadJson(json)?["chat_template"] is { } fromJson)
            return new ChatTemplate(PickTemplate(fromJson, json), json + " (chat_template)", tokens);

        var config = Path.Combine(modelDir, "tokenizer_config.json");
        if (File.Exists(config) && ReadJson(config)?["chat_template"] is { } fromConfig)
            return new ChatTemplate(PickTemplate(fromConfig, config), config + " (chat_template)", tokens);
        return null;
    }

    /// <summary>The one line to print when a model has no template and the built-in prompt is used.</summary>
    public static string NoTemplateNote(string modelDir) =>
        $"note: {modelDir} has no chat template (no chat_template.jinja, chat_template.json or chat_template in tokenizer_config.json); using the built-in prompt format";

    /// <summary>Renders a conversation; <paramref name="extra"/> adds template variables (e.g. add_vision_id), overriding the special tokens.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? extra = null) =>
        RenderValues(messages.Select(m => (object?)m.ToValue()).ToList(), addGenerationPrompt, extra);

    /// <summary>Renders messages given as JSON (the shape transformers takes: [{"role": …, "content": str | [parts]}]).</summary>
    public string Render(JsonArray messages, bool addGenerationPrompt = true, JsonObject? extra = null) =>
        RenderValues(JinjaTemplate.FromJson(messages), addGenerationPrompt,
            extra?.ToDictionary(kv => kv.Key, kv => (object?)kv.Value));

    string RenderValues(object? messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extra)
    {
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        foreach (var (k, v) in SpecialTokens) vars[k] = v;
        if (extra != null) foreach (var (k, v) in extra) vars[k] = v;
        return _template.Render(vars, Clock);
    }

    static string PickTemplate(JsonNode node, string file)
    {
        switch (node)
        {
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return v.GetValue<string>();
            case JsonArray list:
                foreach (var entry in list)
                    if ((string?)entry?["name"] == "default")
                        return entry["template"] is JsonValue t && t.GetValueKind() == JsonValueKind.String
                            ? t.GetValue<string>() : throw new UserError($"{file}: the 'default' chat template is not a string");
                throw new UserError($"{file} has several chat templates and none is named 'default'");
            default:
                throw new UserError($"{file}: chat_template must be a string or a list of {{name, template}}");
        }
    }

    static JsonNode? ReadJson(string path)
    {
        try { return JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
    }

    /// <summary>The special tokens of tokenizer_config.json, overridden by special_tokens_map.json as transformers loads them.</summary>
    public static IReadOnlyDictionary<string, object?> ReadSpecialTokens(string modelDir)
    {
        var tokens = new Dictionary<string, object?>();
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(modelDir, file);
            if (!File.Exists(path) || ReadJson(path) is not JsonObject o) continue;
            foreach (var key in SpecialTokenKeys)
                if (o.ContainsKey(key))
                {
                    if (TokenContent(o[key], path) is { } s) tokens[key] = s;
                    else tokens.Remove(key);
                }
            if (o["additional_special_tokens"] is JsonArray extra)
            {
                var list = extra.Select(t => (object?)TokenContent(t, path)).Where(t => t != null).ToList();
                if (list.Count > 0) tokens["additional_special_tokens"] = list;
                else tokens.Remove("additional_special_tokens");
            }
        }
        return tokens;
    }

    /// <summary>A token written as a string or as an AddedToken object {"content": …}.</summary>
    static string? TokenContent(JsonNode? node, string file) => node switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonObject o when o["content"] is JsonValue c && c.GetValueKind() == JsonValueKind.String => c.GetValue<string>(),
        _ => throw new UserError($"{file}: a special token must be a string or an object with a 'content' string"),
    };
}
