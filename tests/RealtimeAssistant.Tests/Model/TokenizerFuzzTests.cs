using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// tokenizer.json arrives with a downloaded model: a damaged one (keys missing, values of the wrong
/// type, text cut short) must load and work or fail with a UserError, never another exception.
/// </summary>
public class TokenizerFuzzTests
{
    static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers");
    static readonly string[] Names = { "qwen2", "smollm2", "llama3", "llama-legacy", "llama-metaspace" };

    static JsonNode? RandomValue(Random rng) => rng.Next(7) switch
    {
        0 => null,
        1 => JsonValue.Create(rng.Next(-3, 400)),
        2 => JsonValue.Create("x" + rng.Next(9)),
        3 => JsonValue.Create(rng.Next(2) == 0),
        4 => new JsonArray(JsonValue.Create("a"), JsonValue.Create(1)),
        5 => new JsonObject { ["type"] = "Bogus" },
        _ => JsonValue.Create("(unclosed["),
    };

    /// <summary>Picks a random object or array inside <paramref name="root"/> and damages one entry of it.</summary>
    static void Damage(JsonNode root, Random rng)
    {
        var containers = new List<JsonNode>();
        void Walk(JsonNode? n, int depth)
        {
            if (n is JsonObject o) { containers.Add(o); if (depth < 4) foreach (var (_, v) in o) Walk(v, depth + 1); }
            else if (n is JsonArray a) { containers.Add(a); if (depth < 4) foreach (var v in a.Take(40)) Walk(v, depth + 1); }
        }
        Walk(root, 0);
        var target = containers[rng.Next(containers.Count)];
        if (target is JsonObject obj && obj.Count > 0)
        {
            var key = obj.ElementAt(rng.Next(obj.Count)).Key;
            if (rng.Next(3) == 0) obj.Remove(key);
            else obj[key] = RandomValue(rng);
        }
        else if (target is JsonArray arr && arr.Count > 0)
        {
            int i = rng.Next(arr.Count);
            if (rng.Next(3) == 0) arr.RemoveAt(i);
            else arr[i] = RandomValue(rng);
        }
    }

    static void LoadAndUse(Func<TextTokenizer> load, string what)
    {
        try
        {
            var tok = load();
            foreach (var text in new[] { "Hello world <|im_start|>user 12 é🙂", "", "  \n" })
            {
                var ids = tok.Encode(text, addSpecialTokens: true);
                tok.Decode(ids);
            }
        }
        catch (UserError) { }
        catch (Exception e)
        {
            Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}");
        }
    }

    [Fact]
    public void DamagedTokenizerJsonFailsCleanly()
    {
        var rng = new Random(5);
        foreach (var name in Names)
        {
            var text = File.ReadAllText(Path.Combine(Dir, name + ".json"));
            for (int i = 0; i < 120; i++)
            {
                var root = JsonNode.Parse(text)!;
                for (int k = 0; k < 1 + rng.Next(3); k++) Damage(root, rng);
                LoadAndUse(() => TextTokenizer.FromJson(root, name), $"{name} damaged #{i}: {root.ToJsonString()[..Math.Min(300, root.ToJsonString().Length)]}");
            }
        }
    }

    [Fact]
    public void TruncatedTokenizerFileIsAUserError()
    {
        using var dir = new TempDir();
        var text = File.ReadAllText(Path.Combine(Dir, "qwen2.json"));
        var path = dir.File("tokenizer.json");
        var rng = new Random(3);
        for (int i = 0; i < 20; i++)
        {
            File.WriteAllText(path, text[..rng.Next(text.Length)]);
            var e = Assert.Throws<UserError>(() => TextTokenizer.Load(dir.Path));
            Assert.Contains("tokenizer.json", e.Message);
        }
    }
}
