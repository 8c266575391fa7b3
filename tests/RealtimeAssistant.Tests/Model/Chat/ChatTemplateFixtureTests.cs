using System.Globalization;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Chat;

namespace RealtimeAssistant.Tests.Model.Chat;

/// <summary>
/// Our renderer against Jinja itself: Fixtures/chat/renderings.json holds what Debian's
/// python3-jinja2, set up as transformers' apply_chat_template sets it up, renders for each
/// template and conversation in cases.json (regen.py writes it). Every rendering must match
/// byte for byte, and where Jinja raised, we must raise a UserError.
/// </summary>
public class ChatTemplateFixtureTests
{
    static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat");
    static readonly Lazy<JsonObject> Cases = new(() => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "cases.json")))!);
    static readonly Lazy<JsonArray> Renderings = new(() => (JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "renderings.json")))!["renderings"]!);

    public static TheoryData<string, string, bool> AllRenderings()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var r in Renderings.Value)
            data.Add((string)r!["template"]!, (string)r["conversation"]!, (bool)r["add_generation_prompt"]!);
        return data;
    }

    static JsonObject Find(string list, string name) =>
        Cases.Value[list]!.AsArray().Single(x => (string)x!["name"]! == name)!.AsObject();

    /// <summary>A template of cases.json with its special tokens, strftime_now pinned to the fixtures' clock.</summary>
    internal static ChatTemplate LoadTemplate(string name)
    {
        var meta = Find("templates", name);
        var file = Path.Combine(Dir, "templates", (string)meta["file"]!);
        var tokens = meta["special_tokens"]!.AsObject()
            .Where(kv => kv.Value != null) // as transformers' special_tokens_map leaves out unset tokens
            .ToDictionary(kv => kv.Key, kv => (object?)kv.Value!.DeepClone());
        var clock = DateTime.Parse((string)Cases.Value["clock"]!, CultureInfo.InvariantCulture);
        var chat = ChatTemplate.FromText(File.ReadAllText(file), file, tokens);
        chat.Clock = () => clock;
        return chat;
    }

    [Theory]
    [MemberData(nameof(AllRenderings))]
    public void MatchesJinja(string template, string conversation, bool addGenerationPrompt)
    {
        var expected = Renderings.Value.Single(r => (string)r!["template"]! == template && (string)r["conversation"]! == conversation
                                                    && (bool)r["add_generation_prompt"]! == addGenerationPrompt)!;
        var conv = Find("conversations", conversation);
        var chat = LoadTemplate(template);
        var messages = conv["messages"]!.DeepClone().AsArray();
        var extra = conv["extra"]?.DeepClone().AsObject();

        if (expected["error"] is { } error)
        {
            var e = Assert.Throws<UserError>(() => chat.Render(messages, addGenerationPrompt, extra));
            Assert.Contains(chat.Source, e.Message);
            return;
        }
        Assert.Equal((string)expected["output"]!, chat.Render(messages, addGenerationPrompt, extra));
    }
}
