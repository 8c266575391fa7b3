using System.Text;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;

namespace RealtimeAssistant.Tests.Model;

public class TokenizerTests
{
    public const int ByteLevelImageId = 290;

    static List<char> ByteChars()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var cs = bs.ToList();
        int n = 0;
        for (int b = 0; b < 256; b++) if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n++); }
        var map = new char[256];
        for (int i = 0; i < 256; i++) map[bs[i]] = (char)cs[i];
        return map.ToList();
    }

    /// <summary>A tiny Qwen2-style byte-level BPE tokenizer.json: 256 byte tokens plus a few merges.</summary>
    public static JsonObject ByteLevelTokenizerJson()
    {
        var chars = ByteChars();
        var vocab = new JsonObject();
        for (int i = 0; i < 256; i++) vocab[chars[i].ToString()] = i;
        string G(char c) => chars[c].ToString();
        var merges = new[] { (G(' '), G('w')), (G('h'), G('e')), (G(' ') + G('w'), G('o')), (G('l'), G('l')) };
        int id = 256;
        foreach (var (a, b) in merges) vocab[a + b] = id++;
        return new JsonObject
        {
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = 280, ["content"] = "<|endoftext|>", ["special"] = true },
                new JsonObject { ["id"] = ByteLevelImageId, ["content"] = "<image>", ["special"] = true }),
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" } },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m.Item1, m.Item2)).ToArray()) },
        };
    }

    /// <summary>A tiny LLaMA-style metaspace BPE tokenizer.json with byte-fallback tokens.</summary>
    internal static JsonObject MetaspaceTokenizerJson()
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        int id = 3;
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = id++;
        foreach (var c in "▁abcdefghijklmnopqrstuvwxyz,.") vocab[c.ToString()] = id++;
        var merges = new[] { ("▁", "h"), ("e", "l"), ("▁h", "el"), ("l", "o"), ("▁", "w"), ("o", "r") };
        foreach (var (a, b) in merges) vocab[a + b] = id++;
        return new JsonObject
        {
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["special"] = true },
                new JsonObject { ["id"] = 1, ["content"] = "<s>", ["special"] = true },
                new JsonObject { ["id"] = 2, ["content"] = "</s>", ["special"] = true }),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" }, new JsonObject { ["type"] = "Replace" }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>" } }, new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A" } }),
            },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)$"{m.Item1} {m.Item2}").ToArray()), ["unk_token"] = "<unk>", ["byte_fallback"] = true },
        };
    }

    [Fact]
    public void ByteLevelBpeRoundTripsIncludingMultiByteText()
    {
        var tok = TextTokenizer.FromJson(ByteLevelTokenizerJson());
        Assert.Equal(TextTokenizer.Kind.ByteLevelBpe, tok.ModelKind);
        var text = "hello world, héllo 世界 🙂!";
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids));
        Assert.Contains(256 + 2, tok.Encode(" wo")); // merges applied: " w"+"o"
        var withImage = tok.Encode("<image>\nhello");
        Assert.Equal(ByteLevelImageId, withImage[0]);
    }

    [Fact]
    public void MetaspaceBpeRoundTripsAndAddsBos()
    {
        var tok = TextTokenizer.FromJson(MetaspaceTokenizerJson());
        Assert.Equal(TextTokenizer.Kind.MetaspaceBpe, tok.ModelKind);
        var ids = tok.Encode("hello world.");
        Assert.Equal(1, ids[0]);
        Assert.Equal(tok.TokenToId("▁hel"), ids[1]);
        Assert.Equal("hello world.", tok.Decode(ids));
        // Byte-fallback tokens decode to their bytes, joined into one character.
        var e9 = Encoding.UTF8.GetBytes("é").Select(b => tok.TokenToId($"<0x{b:X2}>")!.Value);
        Assert.Equal("é", tok.Decode(e9));
    }

    [Fact]
    public void WordLevelRoundTripsAndMapsUnknownWords()
    {
        var tok = TextTokenizer.FromJson(SyntheticCheckpoint.WordTokenizer(new[] { "a", "red", "circle", "." }));
        Assert.Equal(TextTokenizer.Kind.WordLevel, tok.ModelKind);
        var ids = tok.Encode("<image> a red circle .");
        Assert.Equal(SyntheticCheckpoint.ImageTokenId, ids[0]);
        Assert.Equal("a red circle .", tok.Decode(ids));
        Assert.Equal(tok.UnknownId, tok.Encode("purple")[0]);
    }

    [Fact]
    public void StreamDecoderNeverSplitsACharacter()
    {
        var tok = TextTokenizer.FromJson(ByteLevelTokenizerJson());
        var text = "a世🙂b";
        var ids = tok.Encode(text);
        Assert.True(ids.Count >= 9); // one token per byte here
        var dec = new TextStreamDecoder(tok);
        var deltas = ids.Select(dec.Push).Where(d => d.Length > 0).ToList();
        Assert.Equal(new[] { "a", "世", "🙂", "b" }, deltas);
        Assert.Equal("", dec.Flush());
    }

    [Fact]
    public void UnsupportedTokenizerModelIsAClearError()
    {
        var json = new JsonObject { ["model"] = new JsonObject { ["type"] = "Unigram", ["vocab"] = new JsonObject { ["a"] = 0 } } };
        var e = Assert.Throws<UserError>(() => TextTokenizer.FromJson(json));
        Assert.Contains("Unigram", e.Message);
    }
}
