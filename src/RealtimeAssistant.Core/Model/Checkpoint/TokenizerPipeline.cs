using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace RealtimeAssistant.Model.Checkpoint;

// The stages of a Hugging Face tokenizer.json ahead of the model, as the tokenizers library runs
// them: added tokens are split out of the raw text first, then each remaining segment is
// normalized on its own and cut into words by the pre-tokenizers.

/// <summary>An added token (special or not) of tokenizer.json's "added_tokens".</summary>
sealed record AddedToken(string Content, int Id, bool Special, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>A piece of text between pre-tokenization steps; <see cref="AtStart"/>: it begins the input.</summary>
readonly record struct Piece(string Text, bool AtStart);

/// <summary>
/// Finds added tokens in raw text, leftmost-longest as the tokenizers library's matcher does;
/// lstrip/rstrip tokens swallow the whitespace beside them, single_word tokens only match whole words.
/// </summary>
sealed class AddedTokenSplitter
{
    readonly Dictionary<char, List<AddedToken>> _byFirst = new();

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        foreach (var t in tokens.Where(t => t.Content.Length > 0))
        {
            if (!_byFirst.TryGetValue(t.Content[0], out var list)) _byFirst[t.Content[0]] = list = new();
            list.Add(t);
        }
        foreach (var list in _byFirst.Values) list.Sort((a, b) => b.Content.Length.CompareTo(a.Content.Length));
    }

    /// <summary>The text as plain segments (with their start offsets) and added tokens, in order.</summary>
    public IEnumerable<(string? Segment, int Start, AddedToken? Token)> Split(string text)
    {
        int segStart = 0, i = 0;
        while (i < text.Length)
        {
            var match = _byFirst.TryGetValue(text[i], out var candidates)
                ? candidates.FirstOrDefault(t => string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0 && WholeWord(text, i, t))
                : null;
            if (match == null) { i++; continue; }
            int start = i, end = i + match.Content.Length;
            if (match.LStrip) while (start > segStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (match.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > segStart) yield return (text[segStart..start], segStart, null);
            yield return (null, start, match);
            segStart = i = end;
        }
        if (segStart < text.Length) yield return (text[segStart..], segStart, null);
    }

    static bool WholeWord(string text, int i, AddedToken t) =>
        !t.SingleWord || ((i == 0 || !char.IsLetterOrDigit(text[i - 1])) && (i + t.Content.Length >= text.Length || !char.IsLetterOrDigit(text[i + t.Content.Length])));
}

static class TokenizerPipeline
{
    static string Type(JsonNode n) => (string?)n["type"] ?? "";

    static string PatternOf(JsonNode? pattern, string source, string where) => pattern switch
    {
        JsonObject o when o["String"] is JsonValue s => Regex.Escape((string)s!),
        JsonObject o when o["Regex"] is JsonValue r => (string)r!,
        _ => throw new UserError($"{source}: {where} has no String or Regex pattern"),
    };

    static Regex Compile(string pattern, string source)
    {
        try { return new Regex(pattern, RegexOptions.CultureInvariant); }
        catch (ArgumentException e) { throw new UserError($"{source}: regex '{pattern}' is not supported: {e.Message}"); }
    }

    /// <summary>The normalizer, applied to each segment between added tokens.</summary>
    public static Func<string, string> Normalizer(JsonNode? n, string source)
    {
        if (n == null) return s => s;
        switch (Type(n))
        {
            // ICU's normalizers: string.Normalize is a no-op under InvariantGlobalization.
            case "NFC": return ICU4N.Text.Normalizer2.NFCInstance.Normalize;
            case "NFD": return ICU4N.Text.Normalizer2.NFDInstance.Normalize;
            case "NFKC": return ICU4N.Text.Normalizer2.NFKCInstance.Normalize;
            case "NFKD": return ICU4N.Text.Normalizer2.NFKDInstance.Normalize;
            case "Lowercase": return s => s.ToLowerInvariant();
            case "Prepend":
            {
                var prefix = (string?)n["prepend"] ?? "";
                return s => s.Length > 0 ? prefix + s : s;
            }
            case "Replace":
            {
                var regex = Compile(PatternOf(n["pattern"], source, "a Replace normalizer"), source);
                var content = (string?)n["content"] ?? "";
                return s => regex.Replace(s, content.Replace("$", "$$"));
            }
            case "Strip":
            {
                bool left = (bool?)n["strip_left"] ?? true, right = (bool?)n["strip_right"] ?? true;
                return s => right ? (left ? s.Trim() : s.TrimEnd()) : left ? s.TrimStart() : s;
            }
            case "Sequence":
            {
                var steps = (n["normalizers"] as JsonArray ?? new JsonArray()).Select(x => Normalizer(x, source)).ToList();
                return s => steps.Aggregate(s, (acc, f) => f(acc));
            }
            default:
                throw new UserError($"{source}: normalizer '{Type(n)}' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)");
        }
    }

    enum Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

    /// <summary>GPT-2's split, which a ByteLevel pre-tokenizer with use_regex applies.</summary>
    static readonly Regex Gpt2 = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled | RegexOptions.CultureInvariant);
    static readonly Regex Numeric = new(@"\p{N}", RegexOptions.Compiled);
    static readonly Regex NumericRun = new(@"\p{N}+", RegexOptions.Compiled);
    static readonly Regex WhitespaceWords = new(@"\w+|[^\w\s]+", RegexOptions.Compiled);
    static readonly Regex NonSpace = new(@"\S+", RegexOptions.Compiled);

    /// <summary>The pre-tokenizer: one piece in, the words it is cut into out.</summary>
    public static Func<Piece, IEnumerable<Piece>> PreTokenizer(JsonNode? n, string source)
    {
        if (n == null) return p => new[] { p };
        switch (Type(n))
        {
            case "Split":
            {
                var regex = Compile(PatternOf(n["pattern"], source, "a Split pre-tokenizer"), source);
                var behavior = Enum.TryParse<Behavior>((string?)n["behavior"], out var b) ? b
                    : throw new UserError($"{source}: Split behavior '{(string?)n["behavior"]}' is not supported");
                bool invert = (bool?)n["invert"] ?? false;
                return p => SplitBy(p, regex, behavior, invert);
            }
            case "ByteLevel":
            {
                bool prefix = (bool?)n["add_prefix_space"] ?? true, useRegex = (bool?)n["use_regex"] ?? true;
                return p =>
                {
                    var q = prefix && !p.Text.StartsWith(' ') ? p with { Text = " " + p.Text } : p;
                    return useRegex ? SplitBy(q, Gpt2, Behavior.Isolated, invert: false) : new[] { q };
                };
            }
            case "Digits":
            {
                var regex = (bool?)n["individual_digits"] ?? false ? Numeric : NumericRun;
                return p => SplitBy(p, regex, Behavior.Isolated, invert: false);
            }
            case "Metaspace":
            {
                var replacement = (string?)n["replacement"] ?? "▁";
                var scheme = (string?)n["prepend_scheme"] ?? ((bool?)n["add_prefix_space"] ?? true ? "always" : "never");
                bool split = (bool?)n["split"] ?? true;
                var splitter = new Regex(Regex.Escape(replacement));
                return p =>
                {
                    var text = p.Text.Replace(" ", replacement);
                    if (!text.StartsWith(replacement, StringComparison.Ordinal) && (scheme == "always" || (scheme == "first" && p.AtStart)))
                        text = replacement + text;
                    var q = p with { Text = text };
                    return split ? SplitBy(q, splitter, Behavior.MergedWithNext, invert: false) : new[] { q };
                };
            }
            case "Whitespace": return p => SplitBy(p, WhitespaceWords, Behavior.Removed, invert: true);
            case "WhitespaceSplit": return p => SplitBy(p, NonSpace, Behavior.Removed, invert: true);
            case "Sequence":
            {
                var steps = (n["pretokenizers"] as JsonArray ?? new JsonArray()).Select(x => PreTokenizer(x, source)).ToList();
                return p => steps.Aggregate((IEnumerable<Piece>)new[] { p }, (pieces, step) => pieces.SelectMany(step).ToList());
            }
            default:
                throw new UserError($"{source}: pre-tokenizer '{Type(n)}' is not supported (supported: Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Sequence)");
        }
    }

    /// <summary>The tokenizers library's split of a piece at a pattern's matches, with its delimiter behaviours.</summary>
    static IEnumerable<Piece> SplitBy(Piece p, Regex regex, Behavior behavior, bool invert)
    {
        // (start, end, isDelimiter) spans covering the piece
        var spans = new List<(int Start, int End, bool Match)>();
        var (subject, toText) = CodePointShadow(p.Text);
        int at = 0;
        foreach (Match m in regex.Matches(subject))
        {
            if (m.Length == 0) continue;
            int start = toText(m.Index), end = toText(m.Index + m.Length);
            if (start > at) spans.Add((at, start, invert));
            spans.Add((start, end, !invert));
            at = end;
        }
        if (at < p.Text.Length) spans.Add((at, p.Text.Length, invert));

        var result = new List<(int Start, int End)>();
        bool lastWasMatch = false;
        foreach (var (start, end, isMatch) in spans)
        {
            switch (behavior)
            {
                case Behavior.Removed:
                    if (!isMatch) result.Add((start, end));
                    break;
                case Behavior.Isolated:
                    result.Add((start, end));
                    break;
                case Behavior.Contiguous:
                    if (isMatch && lastWasMatch && result.Count > 0) result[^1] = (result[^1].Start, end);
                    else result.Add((start, end));
                    break;
                case Behavior.MergedWithPrevious:
                    if (isMatch && result.Count > 0 && !lastWasMatch) result[^1] = (result[^1].Start, end);
                    else result.Add((start, end));
                    break;
                case Behavior.MergedWithNext:
                    if (!isMatch && lastWasMatch && result.Count > 0) result[^1] = (result[^1].Start, end);
                    else result.Add((start, end));
                    break;
            }
            lastWasMatch = isMatch;
        }
        foreach (var (start, end) in result)
            yield return new Piece(p.Text[start..end], p.AtStart && start == 0);
    }

    /// <summary>
    /// .NET regexes see a character outside the BMP as two surrogates, neither a letter nor a digit;
    /// the Rust regexes of tokenizers see one code point. So a text with such characters is matched
    /// in a copy where each becomes one rare BMP character of the same class (letter, digit or
    /// other), and match offsets are mapped back.
    /// </summary>
    static (string Subject, Func<int, int> ToText) CodePointShadow(string text)
    {
        if (!text.Any(char.IsSurrogate)) return (text, i => i);
        var sb = new StringBuilder(text.Length);
        var starts = new List<int>();
        for (int i = 0; i < text.Length; i++)
        {
            starts.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var cat = System.Globalization.CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                sb.Append(cat switch
                {
                    <= System.Globalization.UnicodeCategory.OtherLetter => '\uA4D0',      // Lisu letter: \p{L}
                    System.Globalization.UnicodeCategory.DecimalDigitNumber => '\u1040',  // Myanmar zero: \d, \p{N}
                    System.Globalization.UnicodeCategory.LetterNumber or System.Globalization.UnicodeCategory.OtherNumber => '\u2155', // a fraction: \p{N}
                    _ => '\u237C',                                                        // a symbol
                });
                i++;
            }
            else sb.Append(text[i]);
        }
        starts.Add(text.Length);
        return (sb.ToString(), k => starts[k]);
    }

    /// <summary>The ids a post-processor puts around a single sequence (TemplateProcessing, Roberta/Bert processing).</summary>
    public static (List<int> Prefix, List<int> Suffix) PostProcessor(JsonNode? n, Func<string, int?> idOf, string source)
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        void Walk(JsonNode? x)
        {
            if (x == null) return;
            switch (Type(x))
            {
                case "TemplateProcessing":
                {
                    var map = x["special_tokens"] as JsonObject;
                    bool afterSequence = false;
                    foreach (var piece in x["single"] as JsonArray ?? new JsonArray())
                    {
                        if (piece?["Sequence"] != null) { afterSequence = true; continue; }
                        var name = (string?)piece?["SpecialToken"]?["id"] ?? throw new UserError($"{source}: a TemplateProcessing piece is neither a SpecialToken nor a Sequence");
                        var ids = map?[name]?["ids"] is JsonArray a ? a.Select(v => (int)v!) : idOf(name) is int id ? new[] { id } : throw new UserError($"{source}: post-processor token '{name}' is unknown");
                        (afterSequence ? suffix : prefix).AddRange(ids);
                    }
                    break;
                }
                case "RobertaProcessing" or "BertProcessing":
                    prefix.Add((int)x["cls"]![1]!);
                    suffix.Add((int)x["sep"]![1]!);
                    break;
                case "Sequence":
                    foreach (var p in x["processors"] as JsonArray ?? new JsonArray()) Walk(p);
                    break;
                case "ByteLevel":
                    break; // offsets only
                default:
                    throw new UserError($"{source}: post-processor '{Type(x)}' is not supported");
            }
        }
        Walk(n);
        return (prefix, suffix);
    }

    public static JsonNode ReadJson(string path)
    {
        try { return JsonNode.Parse(File.ReadAllText(path)) ?? throw new UserError($"{path} is empty"); }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
    }
}
