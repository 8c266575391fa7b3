using System.Globalization;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Chat;

namespace RealtimeAssistant.Tests.Model.Chat;

/// <summary>
/// Our renderer against Jinja itself: Fixtures/chat/renderings.json holds what Debian's
/// python3-jinja2, set up as transformers' apply_chat_template sets it up, renders for each
/// template and conversation in cases.json (regen.py writes it). Every rendering must match
/// byte for byte, and where Jinja raised, we must raise a UserError. corpus-renderings.json does
/// the same for 166 more real models' templates (corpus-templates.json) on text conversations.
/// </summary>
public class ChatTemplateFixtureTests
{
    static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat");
    static readonly Lazy<JsonObject> Cases = new(() => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "cases.json")))!);
    static readonly Lazy<JsonArray> Renderings = new(() => ReadArray("renderings.json", "renderings"));
    static readonly Lazy<JsonArray> CorpusRenderings = new(() => ReadArray("corpus-renderings.json", "renderings"));
    static readonly Lazy<JsonArray> Corpus = new(() => ReadArray("corpus-templates.json", "templates"));

    static JsonArray ReadArray(string file, string key) => (JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, file)))![key]!;

    static TheoryData<string, string, bool> Keys(JsonArray renderings)
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var r in renderings)
            data.Add((string)r!["template"]!, (string?)r["conversation"] ?? "", (bool)r["add_generation_prompt"]!);
        return data;
    }

    public static TheoryData<string, string, bool> AllRenderings() => Keys(Renderings.Value);
    public static TheoryData<string, string, bool> AllCorpusRenderings() => Keys(CorpusRenderings.Value);

    static JsonNode Expected(JsonArray renderings, string template, string conversation, bool addGenerationPrompt) =>
        renderings.Single(r => (string)r!["template"]! == template && ((string?)r["conversation"] ?? "") == conversation
                               && (bool)r["add_generation_prompt"]! == addGenerationPrompt)!;

    static DateTime Clock => DateTime.Parse((string)Cases.Value["clock"]!, CultureInfo.InvariantCulture);

    static Dictionary<string, object?> Tokens(JsonNode specialTokens) => specialTokens.AsObject()
        .Where(kv => kv.Value != null) // as transformers' special_tokens_map leaves out unset tokens
        .ToDictionary(kv => kv.Key, kv => (object?)kv.Value!.DeepClone());

    static void Check(Func<ChatTemplate> load, string conversation, bool addGenerationPrompt, JsonNode expected)
    {
        if (expected["error"] != null && conversation == "")
        {
            Assert.Throws<UserError>(load); // Jinja could not compile it
            return;
        }
        var chat = load();
        chat.Clock = () => Clock;
        var conv = Find("conversations", conversation);
        var messages = conv["messages"]!.DeepClone().AsArray();
        var extra = conv["extra"]?.DeepClone().AsObject();
        if (expected["error"] != null)
        {
            var e = Assert.Throws<UserError>(() => chat.Render(messages, addGenerationPrompt, extra));
            Assert.Contains(chat.Source, e.Message);
            return;
        }
        Assert.Equal((string)expected["output"]!, chat.Render(messages, addGenerationPrompt, extra));
    }

    static JsonObject Find(string list, string name) =>
        Cases.Value[list]!.AsArray().Single(x => (string)x!["name"]! == name)!.AsObject();

    /// <summary>A template of cases.json with its special tokens.</summary>
    internal static ChatTemplate LoadTemplate(string name)
    {
        var meta = Find("templates", name);
        var file = Path.Combine(Dir, "templates", (string)meta["file"]!);
        return ChatTemplate.FromText(File.ReadAllText(file), file, Tokens(meta["special_tokens"]!));
    }

    [Theory]
    [MemberData(nameof(AllRenderings))]
    public void MatchesJinja(string template, string conversation, bool addGenerationPrompt) =>
        Check(() => LoadTemplate(template), conversation, addGenerationPrompt, Expected(Renderings.Value, template, conversation, addGenerationPrompt));

    [Theory]
    [MemberData(nameof(AllCorpusRenderings))]
    public void CorpusMatchesJinja(string template, string conversation, bool addGenerationPrompt)
    {
        var meta = Corpus.Value.Single(t => (string)t!["name"]! == template)!;
        Check(() => ChatTemplate.FromText((string)meta["template"]!, template, Tokens(meta["special_tokens"]!)),
            conversation, addGenerationPrompt, Expected(CorpusRenderings.Value, template, conversation, addGenerationPrompt));
    }
}
