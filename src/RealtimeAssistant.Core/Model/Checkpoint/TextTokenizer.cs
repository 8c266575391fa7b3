using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// A Hugging Face tokenizer.json, encoded with Microsoft.ML.Tokenizers where it can:
/// byte-level BPE (Qwen2, GPT-2 style) and metaspace BPE (LLaMA/Vicuna) go through
/// <see cref="BpeTokenizer"/>; the WordLevel kind used by our own small models is a dictionary
/// lookup after the library's pre-tokenizer, the smallest adapter the library lacks.
/// Decoding is ours and works in bytes, so a token stream never splits a multi-byte character.
/// </summary>
public sealed class TextTokenizer
{
    public enum Kind { ByteLevelBpe, MetaspaceBpe, WordLevel }

    public Kind ModelKind { get; }
    public int VocabSize => _idToToken.Count;
    public int? BosId { get; }
    public int? EosId { get; }
    public int? UnknownId { get; }
    public IReadOnlyDictionary<string, int> AddedTokens => _added;

    readonly Tokenizer? _bpe;
    readonly PreTokenizer? _wordSplitter;
    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<int, string> _idToToken = new();
    readonly Dictionary<string, int> _added = new(StringComparer.Ordinal);
    readonly HashSet<int> _special = new();
    readonly Regex? _addedSplit;
    readonly bool _addBos;

    TextTokenizer(Kind kind, Dictionary<string, int> vocab, Tokenizer? bpe, PreTokenizer? splitter,
                  IEnumerable<(string Content, int Id, bool Special)> added, bool addBos, string? unk)
    {
        ModelKind = kind;
        _vocab = vocab;
        _bpe = bpe;
        _wordSplitter = splitter;
        foreach (var (tok, id) in vocab) _idToToken[id] = tok;
        foreach (var (content, id, special) in added)
        {
            _added[content] = id;
            _idToToken[id] = content;
            if (special) _special.Add(id);
        }
        if (_added.Count > 0)
            _addedSplit = new Regex(string.Join("|", _added.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)));
        int? Find(params string[] names) => names.Select(n => _added.TryGetValue(n, out var i) ? i : vocab.TryGetValue(n, out var j) ? j : (int?)null).FirstOrDefault(x => x != null);
        BosId = Find("<s>", "<|begin_of_text|>", "<bos>");
        EosId = Find("</s>", "<|im_end|>", "<|endoftext|>", "<eos>", "<|eot_id|>");
        UnknownId = unk != null && vocab.TryGetValue(unk, out var u) ? u : null;
        _addBos = addBos && BosId != null;
    }

    public static TextTokenizer Load(string modelDir)
    {
        var path = Directory.Exists(modelDir) ? Path.Combine(modelDir, "tokenizer.json") : modelDir;
        if (!File.Exists(path)) throw new UserError($"no tokenizer.json in {modelDir}");
        var root = JsonFile.Read(path, "tokenizer.json");
        // FromJson reads the document's shape unchecked: a key of the wrong kind, a duplicate token
        // or a broken pattern surfaces as one of these. From a file they are the file's fault.
        try { return FromJson(root, path); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or InvalidCastException
                                  or NullReferenceException or KeyNotFoundException or IndexOutOfRangeException or OverflowException)
        {
            throw new UserError($"{path} is not a tokenizer.json this loader can read: {e.Message}", e);
        }
    }

    public static TextTokenizer FromJson(JsonNode root, string source = "tokenizer.json")
    {
        var model = root["model"] ?? throw new UserError($"{source} has no 'model'");
        var type = (string?)model["type"] ?? (model["merges"] != null ? "BPE" : "WordLevel");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (k, v) in model["vocab"]?.AsObject() ?? throw new UserError($"{source} has no vocabulary"))
            vocab[k] = v!.GetValue<int>();
        var added = (root["added_tokens"] as JsonArray ?? new JsonArray())
            .Select(a => ((string)a!["content"]!, (int)a["id"]!, (bool?)a["special"] ?? true)).ToList();
        var unk = (string?)model["unk_token"];
        var addBos = PostProcessorAddsBos(root["post_processor"]);

        switch (type)
        {
            case "WordLevel":
            {
                var pre = Types(root["pre_tokenizer"]).Contains("WhitespaceSplit")
                    ? PreTokenizer.CreateWhiteSpace() : PreTokenizer.CreateWordOrNonWord();
                return new TextTokenizer(Kind.WordLevel, vocab, null, pre, added, addBos, unk);
            }
            case "BPE":
            {
                var merges = (model["merges"] as JsonArray ?? new JsonArray()).Select(m => m switch
                {
                    JsonArray pair => $"{(string)pair[0]!} {(string)pair[1]!}",
                    _ => (string)m!,
                }).ToList();
                var special = added.ToDictionary(a => a.Item1, a => a.Item2);
                var preTypes = Types(root["pre_tokenizer"]);
                var normTypes = Types(root["normalizer"]);
                var byteLevel = preTypes.Contains("ByteLevel") || Types(root["decoder"]).Contains("ByteLevel");
                if (byteLevel)
                {
                    var pattern = FindSplitPattern(root["pre_tokenizer"]) ?? Gpt2Pattern;
                    var bpe = BpeTokenizer.Create(new BpeOptions(vocab)
                    {
                        Merges = merges,
                        ByteLevel = true,
                        PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
                        SpecialTokens = special,
                    });
                    return new TextTokenizer(Kind.ByteLevelBpe, vocab, bpe, null, added, addBos, unk);
                }
                if (preTypes.Contains("Metaspace") || normTypes.Contains("Replace") || normTypes.Contains("Prepend"))
                {
                    var bpe = BpeTokenizer.Create(new BpeOptions(vocab)
                    {
                        Merges = merges,
                        Normalizer = new MetaspaceNormalizer(),
                        // Sentencepiece pieces never hold a '▁' past their first char, so splitting
                        // before each '▁' gives the same pieces as running BPE on the whole text.
                        PreTokenizer = new RegexPreTokenizer(new Regex("▁*[^▁]+|▁+", RegexOptions.Compiled), special),
                        UnknownToken = unk,
                        FuseUnknownTokens = (bool?)model["fuse_unk"] ?? false,
                        SpecialTokens = special,
                    });
                    return new TextTokenizer(Kind.MetaspaceBpe, vocab, bpe, null, added, addBos, unk);
                }
                throw new UserError($"{source}: this BPE tokenizer is neither byte-level nor metaspace; unsupported");
            }
            default:
                throw new UserError($"{source}: tokenizer model type '{type}' is not supported (supported: BPE, WordLevel)");
        }
    }

    const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static HashSet<string> Types(JsonNode? n)
    {
        var set = new HashSet<string>();
        void Walk(JsonNode? x)
        {
            if (x is not JsonObject o) return;
            if ((string?)o["type"] is { } t) set.Add(t);
            foreach (var key in new[] { "pretokenizers", "normalizers", "decoders", "processors" })
                if (o[key] is JsonArray arr) foreach (var c in arr) Walk(c);
        }
        Walk(n);
        return set;
    }

    static string? FindSplitPattern(JsonNode? n)
    {
        if (n is not JsonObject o) return null;
        if ((string?)o["type"] == "Split" && o["pattern"]?["Regex"] is JsonValue r) return (string?)r;
        if (o["pretokenizers"] is JsonArray arr)
            foreach (var c in arr) if (FindSplitPattern(c) is { } p) return p;
        return null;
    }

    static bool PostProcessorAddsBos(JsonNode? pp)
    {
        // TemplateProcessing whose single template starts with a special token (LLaMA's "<s> $A").
        if (pp is not JsonObject o) return false;
        if ((string?)o["type"] == "TemplateProcessing" && o["single"] is JsonArray single && single.Count > 0)
            return single[0]!["SpecialToken"] != null;
        if (o["processors"] is JsonArray arr) return arr.Any(PostProcessorAddsBos);
        return false;
    }

    /// <summary>Text to ids. Added tokens (e.g. "&lt;image&gt;") are matched whole, never split.</summary>
    public List<int> Encode(string text, bool addSpecialTokens = true)
    {
        var ids = new List<int>();
        if (addSpecialTokens && _addBos) ids.Add(BosId!.Value);
        int at = 0;
        if (_addedSplit != null)
            foreach (Match m in _addedSplit.Matches(text))
            {
                EncodePlain(text[at..m.Index], ids);
                ids.Add(_added[m.Value]);
                at = m.Index + m.Length;
            }
        EncodePlain(text[at..], ids);
        return ids;
    }

    void EncodePlain(string text, List<int> ids)
    {
        if (text.Length == 0) return;
        if (_bpe != null)
        {
            ids.AddRange(_bpe.EncodeToIds(text));
            return;
        }
        foreach (var (offset, length) in _wordSplitter!.PreTokenize(text))
        {
            var word = text.Substring(offset, length);
            if (_vocab.TryGetValue(word, out var id)) ids.Add(id);
            else if (UnknownId is { } u) ids.Add(u);
            else throw new UserError($"word '{word}' is not in the tokenizer's vocabulary and it has no unknown token");
        }
    }

    public bool IsSpecial(int id) => _special.Contains(id);

    public int? TokenToId(string token) => _added.TryGetValue(token, out var a) ? a : _vocab.TryGetValue(token, out var v) ? v : null;

    public string IdToToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : throw new UserError($"token id {id} is outside the vocabulary");
    public string? IdToTokenOrNull(int id) => _idToToken.TryGetValue(id, out var t) ? t : null;

    /// <summary>
    /// Appends the UTF-8 bytes a token contributes to decoded text. An id with no token adds
    /// nothing, as HF's decoders: an embedding table may be padded past the vocabulary (Qwen2's
    /// 151936 rows for 151665 tokens), and a model can sample those rows.
    /// </summary>
    public void AppendBytes(int id, List<byte> sink, bool atStart)
    {
        if (_special.Contains(id) || IdToTokenOrNull(id) is not { } tok) return;
        switch (ModelKind)
        {
            case Kind.ByteLevelBpe:
                foreach (var ch in tok)
                    sink.Add(ByteLevelDecode.TryGetValue(ch, out var b) ? b : (byte)'?');
                break;
            case Kind.MetaspaceBpe:
                if (tok.Length == 6 && tok.StartsWith("<0x") && tok.EndsWith('>'))
                {
                    sink.Add(Convert.ToByte(tok.Substring(3, 2), 16));
                    break;
                }
                var s = tok.Replace('▁', ' ');
                if (atStart && s.StartsWith(' ')) s = s[1..];
                sink.AddRange(Encoding.UTF8.GetBytes(s));
                break;
            default:
                if (!atStart) sink.Add((byte)' ');
                sink.AddRange(Encoding.UTF8.GetBytes(tok));
                break;
        }
    }

    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        bool start = true;
        foreach (var id in ids)
        {
            int before = bytes.Count;
            AppendBytes(id, bytes, start);
            if (bytes.Count > before) start = false;
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>GPT-2's reversible byte-to-unicode table, inverted.</summary>
    static readonly Dictionary<char, byte> ByteLevelDecode = BuildByteLevel();

    static Dictionary<char, byte> BuildByteLevel()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var cs = bs.ToList();
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n++); }
        var map = new Dictionary<char, byte>();
        for (int i = 0; i < bs.Count; i++) map[(char)cs[i]] = (byte)bs[i];
        return map;
    }

    /// <summary>LLaMA's normaliser: spaces become '▁' and the text gets a leading '▁'.</summary>
    sealed class MetaspaceNormalizer : Normalizer
    {
        public override string Normalize(string original) => Normalize(original.AsSpan());
        public override string Normalize(ReadOnlySpan<char> original)
        {
            var s = original.ToString().Replace(' ', '▁');
            return s.StartsWith('▁') ? s : "▁" + s;
        }
    }

    /// <summary>Writes a WordLevel tokenizer.json in the Hugging Face layout (for our own small models).</summary>
    public static JsonObject WordLevelJson(IReadOnlyList<string> specialTokens, IEnumerable<string> words, string unk = "<unk>")
    {
        var vocab = new JsonObject();
        var added = new JsonArray();
        int id = 0;
        foreach (var s in specialTokens)
        {
            vocab[s] = id;
            added.Add(new JsonObject { ["id"] = id, ["content"] = s, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
            id++;
        }
        foreach (var w in words.Distinct(StringComparer.Ordinal))
            if (vocab[w] == null) vocab[w] = id++;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = unk },
        };
    }
}

/// <summary>
/// Turns a stream of token ids into text deltas. Bytes are held back until they form whole
/// UTF-8 characters, so a delta never splits a multi-byte character.
/// </summary>
public sealed class TextStreamDecoder
{
    readonly TextTokenizer _tok;
    readonly List<byte> _pending = new();
    bool _atStart = true;

    public TextStreamDecoder(TextTokenizer tokenizer) => _tok = tokenizer;

    /// <summary>The text that token <paramref name="id"/> completes; empty while a character is incomplete.</summary>
    public string Push(int id)
    {
        int before = _pending.Count;
        _tok.AppendBytes(id, _pending, _atStart);
        if (_pending.Count > before) _atStart = false;
        var complete = CompletePrefixLength(_pending);
        if (complete == 0) return "";
        var text = Encoding.UTF8.GetString(_pending.GetRange(0, complete).ToArray());
        _pending.RemoveRange(0, complete);
        return text;
    }

    /// <summary>Whatever is left at the end (an invalid tail becomes U+FFFD).</summary>
    public string Flush()
    {
        var text = Encoding.UTF8.GetString(_pending.ToArray());
        _pending.Clear();
        return text;
    }

    static int CompletePrefixLength(List<byte> b)
    {
        int i = 0, lastComplete = 0;
        while (i < b.Count)
        {
            int need = b[i] < 0x80 ? 1 : (b[i] & 0xE0) == 0xC0 ? 2 : (b[i] & 0xF0) == 0xE0 ? 3 : (b[i] & 0xF8) == 0xF0 ? 4 : 1;
            if (i + need > b.Count) break;
            i += need;
            lastComplete = i;
        }
        return lastComplete;
    }
}
