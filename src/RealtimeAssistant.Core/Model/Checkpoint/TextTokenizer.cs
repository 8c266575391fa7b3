using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// A Hugging Face tokenizer.json, run as the tokenizers library runs it: added tokens are split out
/// of the raw text first (so "&lt;|im_start|&gt;system" is two tokens whatever the model kind), each
/// remaining segment is normalized and pre-tokenized on its own (<see cref="TokenizerPipeline"/>),
/// then the model maps words to ids and the post-processor adds the template's special tokens.
/// BPE merges run in Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>, one word at a time; around
/// it we give what that library lacks for tokenizer.json BPE: byte_fallback (a character outside
/// the vocabulary becomes its &lt;0xNN&gt; byte tokens), ignore_merges (a word in the vocabulary is
/// one token) and unknown-token fusing. The WordLevel kind our own small models use is a
/// dictionary lookup. Decoding is ours and works in bytes, so a token stream never splits a
/// multi-byte character.
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
    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<int, string> _idToToken = new();
    readonly Dictionary<string, int> _added = new(StringComparer.Ordinal);
    readonly HashSet<int> _special = new();
    readonly HashSet<int> _addedIds = new();
    readonly AddedTokenSplitter _splitter;
    readonly Func<string, string> _normalize;
    readonly Func<Piece, IEnumerable<Piece>> _preTokenize;
    readonly List<int> _prefix, _suffix;
    readonly bool _byteFallback, _ignoreMerges, _fuseUnknown;
    readonly int[]? _byteIds; // <0x00>..<0xFF>, when byte_fallback
    readonly Decoding _decoding;

    /// <summary>How ids become text: byte-level characters, or '▁' for spaces with &lt;0xNN&gt; bytes, or words joined by spaces.</summary>
    sealed record Decoding(bool ByteLevel, string? Metaspace, bool StripFirstSpace);

    TextTokenizer(Kind kind, Dictionary<string, int> vocab, Tokenizer? bpe, IReadOnlyList<AddedToken> added, string? unk,
                  Func<string, string> normalize, Func<Piece, IEnumerable<Piece>> preTokenize, JsonNode? postProcessor,
                  bool byteFallback, bool ignoreMerges, bool fuseUnknown, Decoding decoding, string source)
    {
        ModelKind = kind;
        _vocab = vocab;
        _bpe = bpe;
        foreach (var (tok, id) in vocab) _idToToken[id] = tok;
        foreach (var a in added)
        {
            _added[a.Content] = a.Id;
            _idToToken[a.Id] = a.Content;
            _addedIds.Add(a.Id);
            if (a.Special) _special.Add(a.Id);
        }
        _splitter = new AddedTokenSplitter(added);
        _normalize = normalize;
        _preTokenize = preTokenize;
        (_prefix, _suffix) = TokenizerPipeline.PostProcessor(postProcessor, TokenToId, source);
        _fuseUnknown = fuseUnknown;
        _ignoreMerges = ignoreMerges;
        _decoding = decoding;
        UnknownId = unk != null && TokenToId(unk) is int u ? u : null;
        if (byteFallback)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
            _byteFallback = true;
        }
        int? Find(params string[] names) => names.Select(TokenToId).FirstOrDefault(x => x != null);
        BosId = _prefix.Count > 0 ? _prefix[0] : Find("<s>", "<|begin_of_text|>", "<bos>");
        EosId = Find("</s>", "<|im_end|>", "<|endoftext|>", "<eos>", "<|eot_id|>");
    }

    public static TextTokenizer Load(string modelDir)
    {
        var path = Directory.Exists(modelDir) ? Path.Combine(modelDir, "tokenizer.json") : modelDir;
        if (!File.Exists(path)) throw new UserError($"no tokenizer.json in {modelDir}");
        var root = JsonFile.Read(path, "tokenizer.json");
        // FromJson reads the document's shape unchecked in places: a key of the wrong kind or a broken
        // pattern surfaces as one of these. From a file they are the file's fault.
        try { return FromJson(root, path); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or InvalidCastException
                                  or NullReferenceException or KeyNotFoundException or IndexOutOfRangeException or OverflowException)
        {
            throw new UserError($"{path} is not a tokenizer.json this loader can read: {e.Message}", e);
        }
    }

    public static TextTokenizer FromJson(JsonNode root, string source = "tokenizer.json")
    {
        try { return Build(root, source); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException or NullReferenceException or ArgumentException)
        {
            throw new UserError($"{source} is not a tokenizer.json this program can read: {e.Message}");
        }
    }

    static TextTokenizer Build(JsonNode root, string source)
    {
        var model = root["model"] ?? throw new UserError($"{source} has no 'model'");
        var type = (string?)model["type"] ?? (model["merges"] != null ? "BPE" : "WordLevel");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (k, v) in model["vocab"] as JsonObject ?? throw new UserError($"{source} has no vocabulary"))
            vocab[k] = v!.GetValue<int>();
        var added = (root["added_tokens"] as JsonArray ?? new JsonArray()).Select(a => new AddedToken(
            (string)a!["content"]!, (int)a["id"]!, (bool?)a["special"] ?? true,
            (bool?)a["lstrip"] ?? false, (bool?)a["rstrip"] ?? false, (bool?)a["single_word"] ?? false)).ToList();
        var unk = (string?)model["unk_token"];
        var normalize = TokenizerPipeline.Normalizer(root["normalizer"], source);
        var preTokenize = TokenizerPipeline.PreTokenizer(root["pre_tokenizer"], source);
        var post = root["post_processor"];

        switch (type)
        {
            case "WordLevel":
                return new TextTokenizer(Kind.WordLevel, vocab, null, added, unk, normalize, preTokenize,
                    post, false, false, false, new Decoding(false, null, false), source);
            case "BPE":
            {
                var merges = (model["merges"] as JsonArray ?? new JsonArray()).Select(m => m switch
                {
                    JsonArray pair => $"{(string)pair[0]!} {(string)pair[1]!}",
                    _ => (string)m!,
                }).ToList();
                var decoderTypes = Types(root["decoder"]);
                bool byteLevel = Types(root["pre_tokenizer"]).Contains("ByteLevel") || decoderTypes.Contains("ByteLevel");
                if (byteLevel)
                    foreach (var c in ByteLevelDecode.Keys)
                        if (!vocab.ContainsKey(c.ToString()))
                            throw new UserError($"{source}: this byte-level vocabulary lacks the byte token '{c}'");
                var metaspace = MetaspaceChar(root);
                if (!byteLevel && metaspace == null)
                    throw new UserError($"{source}: this BPE tokenizer is neither byte-level nor metaspace; unsupported");
                var bpe = BpeTokenizer.Create(new BpeOptions(vocab)
                {
                    Merges = merges,
                    ByteLevel = byteLevel,
                    ContinuingSubwordPrefix = NullIfEmpty((string?)model["continuing_subword_prefix"]),
                    EndOfWordSuffix = NullIfEmpty((string?)model["end_of_word_suffix"]),
                });
                var decoding = new Decoding(byteLevel, byteLevel ? null : metaspace,
                    decoderTypes.Contains("Strip") || MetaspaceStripsFirst(root["decoder"]));
                return new TextTokenizer(byteLevel ? Kind.ByteLevelBpe : Kind.MetaspaceBpe, vocab, bpe, added, unk, normalize, preTokenize, post,
                    (bool?)model["byte_fallback"] ?? false, (bool?)model["ignore_merges"] ?? false, (bool?)model["fuse_unk"] ?? false,
                    decoding, source);
            }
            default:
                throw new UserError($"{source}: tokenizer model type '{type}' is not supported (supported: BPE, WordLevel)");
        }
    }

    static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

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

    /// <summary>The character standing for a space: a Metaspace replacement, or what a Replace normalizer puts for " ".</summary>
    static string? MetaspaceChar(JsonNode root)
    {
        string? found = null;
        void Walk(JsonNode? x)
        {
            if (x is not JsonObject o || found != null) return;
            if ((string?)o["type"] == "Metaspace") found = (string?)o["replacement"] ?? "▁";
            else if ((string?)o["type"] == "Replace" && (string?)o["pattern"]?["String"] == " ") found = (string?)o["content"];
            foreach (var key in new[] { "pretokenizers", "normalizers" })
                if (o[key] is JsonArray arr) foreach (var c in arr) Walk(c);
        }
        Walk(root["pre_tokenizer"]);
        Walk(root["normalizer"]);
        return found;
    }

    static bool MetaspaceStripsFirst(JsonNode? decoder) =>
        decoder is JsonObject o && (string?)o["type"] == "Metaspace" && ((string?)o["prepend_scheme"] ?? ((bool?)o["add_prefix_space"] ?? true ? "always" : "never")) != "never";

    /// <summary>Text to ids. Added tokens (e.g. "&lt;image&gt;") are matched whole, never split; <paramref name="addSpecialTokens"/> applies the post-processor's template.</summary>
    public List<int> Encode(string text, bool addSpecialTokens = true)
    {
        var ids = new List<int>();
        if (addSpecialTokens) ids.AddRange(_prefix);
        foreach (var (segment, start, token) in _splitter.Split(text))
        {
            if (token != null) { ids.Add(token.Id); continue; }
            var normalized = _normalize(segment!);
            foreach (var word in _preTokenize(new Piece(normalized, start == 0)))
                if (word.Text.Length > 0) EncodeWord(word.Text, ids);
        }
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids;
    }

    void EncodeWord(string word, List<int> ids)
    {
        if (_bpe == null)
        {
            if (_vocab.TryGetValue(word, out var id)) ids.Add(id);
            else if (UnknownId is { } u) ids.Add(u);
            else throw new UserError($"word '{word}' is not in the tokenizer's vocabulary and it has no unknown token");
            return;
        }
        if (_ignoreMerges && _vocab.TryGetValue(ModelKind == Kind.ByteLevelBpe ? ToByteLevel(word) : word, out var whole))
        {
            ids.Add(whole);
            return;
        }
        if (ModelKind == Kind.ByteLevelBpe)
        {
            ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
            return;
        }
        // Characters outside the vocabulary never take part in a merge: BPE runs on the stretches
        // between them, and each becomes its UTF-8 bytes' tokens (byte_fallback) or the unknown token.
        int run = 0;
        bool lastUnknown = false;
        for (int i = 0; i < word.Length;)
        {
            int n = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            if (_vocab.ContainsKey(word.Substring(i, n))) { i += n; lastUnknown = false; continue; }
            if (i > run) ids.AddRange(_bpe.EncodeToIds(word[run..i], considerPreTokenization: false, considerNormalization: false));
            var bytes = Encoding.UTF8.GetBytes(word.Substring(i, n));
            if (_byteFallback && bytes.All(b => _byteIds![b] >= 0)) { foreach (var b in bytes) ids.Add(_byteIds![b]); lastUnknown = false; }
            else if (UnknownId is { } u)
            {
                if (!(_fuseUnknown && lastUnknown)) ids.Add(u);
                lastUnknown = true;
            }
            i += n;
            run = i;
        }
        if (run < word.Length) ids.AddRange(_bpe.EncodeToIds(word[run..], considerPreTokenization: false, considerNormalization: false));
    }

    static string ToByteLevel(string word) => string.Concat(Encoding.UTF8.GetBytes(word).Select(b => ByteLevelEncode[b]));

    public bool IsSpecial(int id) => _special.Contains(id);

    public int? TokenToId(string token) => _added.TryGetValue(token, out var a) ? a : _vocab.TryGetValue(token, out var v) ? v : null;

    public string IdToToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : throw new UserError($"token id {id} is outside the vocabulary");
    public string? IdToTokenOrNull(int id) => _idToToken.TryGetValue(id, out var t) ? t : null;

    /// <summary>
    /// Appends the UTF-8 bytes a token contributes to decoded text (special tokens contribute none).
    /// An id with no token adds nothing, as HF's decoders: an embedding table may be padded past
    /// the vocabulary (Qwen2's 151936 rows for 151665 tokens), and a model can sample those rows.
    /// </summary>
    public void AppendBytes(int id, List<byte> sink, bool atStart)
    {
        if (_special.Contains(id) || IdToTokenOrNull(id) is not { } tok) return;
        if (_addedIds.Contains(id))
        {
            sink.AddRange(Encoding.UTF8.GetBytes(tok)); // an added token decodes to its own text
            return;
        }
        if (_decoding.ByteLevel)
        {
            foreach (var ch in tok)
                sink.Add(ByteLevelDecode.TryGetValue(ch, out var b) ? b : (byte)'?');
            return;
        }
        if (_decoding.Metaspace is { } space)
        {
            if (tok.Length == 6 && tok.StartsWith("<0x", StringComparison.Ordinal) && tok.EndsWith('>')
                && byte.TryParse(tok.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var fallback))
            {
                sink.Add(fallback);
                return;
            }
            var s = tok.Replace(space, " ");
            if (atStart && _decoding.StripFirstSpace && s.StartsWith(' ')) s = s[1..];
            sink.AddRange(Encoding.UTF8.GetBytes(s));
            return;
        }
        if (!atStart) sink.Add((byte)' ');
        sink.AddRange(Encoding.UTF8.GetBytes(tok));
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

    /// <summary>GPT-2's reversible byte-to-unicode table, both ways.</summary>
    static readonly char[] ByteLevelEncode = BuildByteLevel();
    static readonly Dictionary<char, byte> ByteLevelDecode = Enumerable.Range(0, 256).ToDictionary(b => ByteLevelEncode[b], b => (byte)b);

    static char[] BuildByteLevel()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var cs = bs.ToList();
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n++); }
        var map = new char[256];
        for (int i = 0; i < bs.Count; i++) map[bs[i]] = (char)cs[i];
        return map;
    }

    /// <summary>
    /// Writes a WordLevel tokenizer.json in the Hugging Face layout (for our own small models): words
    /// split at whitespace unless <paramref name="preTokenizer"/> says otherwise, with an optional
    /// <paramref name="normalizer"/>.
    /// </summary>
    public static JsonObject WordLevelJson(IReadOnlyList<string> specialTokens, IEnumerable<string> words, string unk = "<unk>", JsonNode? normalizer = null, JsonNode? preTokenizer = null)
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
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer ?? new JsonObject { ["type"] = "WhitespaceSplit" },
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
