using System.Globalization;
using System.Text;

namespace RealtimeAssistant.Model.Chat;

enum TokenKind { Data, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, Eof }

readonly record struct Token(TokenKind Kind, string Text, int Line, object? Value = null)
{
    public bool Is(string op) => (Kind == TokenKind.Operator || Kind == TokenKind.Name) && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableEnd => "end of print statement",
        TokenKind.Data => "template data",
        _ => $"'{Text}'",
    };
}

/// <summary>A template error: the message and the 1-based line it happened on.</summary>
sealed class JinjaError(string message, int line = 0) : Exception(message)
{
    public int Line { get; set; } = line;
}

/// <summary>
/// Splits a template into tokens the way Jinja's lexer does with Hugging Face's settings:
/// trim_blocks (a block or comment tag eats the newline after it), lstrip_blocks (spaces
/// before a block or comment tag on its own line are dropped), '-'/'+' whitespace control,
/// no trailing newline kept, and "\r\n"/"\r" read as "\n".
/// </summary>
static class JinjaLexer
{
    const int MaxTokens = 2_000_000;

    public static List<Token> Tokenize(string source)
    {
        var src = NormalizeNewlines(source);
        var lines = new LineMap(src);
        var tokens = new List<Token>();
        int pos = 0;
        bool lineStarting = true;
        while (pos < src.Length)
        {
            int tag = FindTagStart(src, pos);
            if (tag < 0)
            {
                tokens.Add(new Token(TokenKind.Data, src[pos..], lines.At(pos)));
                break;
            }
            char kind = src[tag + 1];
            int after = tag + 2;
            char sign = after < src.Length && (src[after] == '-' || src[after] == '+') ? src[after] : '\0';
            int rawBodyStart = 0;
            bool isRaw = kind == '%' && TryRawBegin(src, tag, out rawBodyStart);
            var text = StripBefore(src[pos..tag], sign, lstrip: kind != '{', lineStarting);
            if (text.Length > 0) tokens.Add(new Token(TokenKind.Data, text, lines.At(pos)));
            if (sign != '\0' && !isRaw) after++;

            if (isRaw)
            {
                pos = LexRaw(src, rawBodyStart, tokens, lines, out lineStarting);
                continue;
            }
            if (kind == '#')
            {
                pos = SkipComment(src, after, lines.At(tag), out lineStarting);
                continue;
            }
            var begin = kind == '{' ? TokenKind.VariableBegin : TokenKind.BlockBegin;
            tokens.Add(new Token(begin, src.Substring(tag, after - tag), lines.At(tag)));
            pos = LexTag(src, after, begin == TokenKind.BlockBegin, tokens, lines, out lineStarting);
            if (tokens.Count > MaxTokens) throw new JinjaError("template too large", lines.At(pos));
        }
        tokens.Add(new Token(TokenKind.Eof, "", lines.At(src.Length)));
        return tokens;
    }

    static string NormalizeNewlines(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\r')
            {
                sb.Append('\n');
                if (i + 1 < s.Length && s[i + 1] == '\n') i++;
            }
            else sb.Append(s[i]);
        }
        if (sb.Length > 0 && sb[^1] == '\n') sb.Length--; // keep_trailing_newline=False drops one
        return sb.ToString();
    }

    static int FindTagStart(string s, int from)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            if (s[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>'-' strips all whitespace before a tag; otherwise lstrip_blocks strips a
    /// block/comment tag's indentation when only whitespace precedes it on its line.</summary>
    static string StripBefore(string text, char sign, bool lstrip, bool lineStarting)
    {
        if (sign == '-') return PyText.RStrip(text);
        if (sign == '+' || !lstrip) return text;
        int lpos = text.LastIndexOf('\n') + 1;
        if ((lpos > 0 || lineStarting) && lpos < text.Length && PyText.AllSpace(text, lpos))
            return text[..lpos];
        return text;
    }

    /// <summary>Matches "{%[-+]? raw [-]?%}" at <paramref name="at"/> (no trim_blocks after it, as in Jinja).</summary>
    static bool TryRawBegin(string s, int at, out int bodyStart)
    {
        bodyStart = 0;
        int i = at + 2;
        if (i < s.Length && (s[i] == '-' || s[i] == '+')) i++;
        while (i < s.Length && PyText.IsSpace(s[i])) i++;
        if (!At(s, i, "raw")) return false;
        i += 3;
        while (i < s.Length && PyText.IsSpace(s[i])) i++;
        if (At(s, i, "-%}"))
        {
            i += 3;
            while (i < s.Length && PyText.IsSpace(s[i])) i++;
        }
        else if (At(s, i, "%}")) i += 2;
        else return false;
        bodyStart = i;
        return true;
    }

    static int LexRaw(string s, int bodyStart, List<Token> tokens, LineMap lines, out bool lineStarting)
    {
        for (int i = s.IndexOf("{%", bodyStart, StringComparison.Ordinal); i >= 0; i = s.IndexOf("{%", i + 1, StringComparison.Ordinal))
        {
            int j = i + 2;
            char sign = j < s.Length && (s[j] == '-' || s[j] == '+') ? s[j] : '\0';
            if (sign != '\0') j++;
            while (j < s.Length && PyText.IsSpace(s[j])) j++;
            if (!At(s, j, "endraw")) continue;
            j += 6;
            while (j < s.Length && PyText.IsSpace(s[j])) j++;
            int end = MatchBlockEnd(s, j);
            if (end < 0) continue;
            var text = StripBefore(s[bodyStart..i], sign, lstrip: true, lineStarting: false);
            if (text.Length > 0) tokens.Add(new Token(TokenKind.Data, text, lines.At(bodyStart)));
            lineStarting = s[end - 1] == '\n';
            return end;
        }
        throw new JinjaError("Missing end of raw directive", lines.At(bodyStart));
    }

    /// <summary>"+%}", "-%}" plus following whitespace, or "%}" plus one newline (trim_blocks). Returns the end, or -1.</summary>
    static int MatchBlockEnd(string s, int i)
    {
        if (At(s, i, "+%}")) return i + 3;
        if (At(s, i, "-%}"))
        {
            i += 3;
            while (i < s.Length && PyText.IsSpace(s[i])) i++;
            return i;
        }
        if (At(s, i, "%}"))
        {
            i += 2;
            if (i < s.Length && s[i] == '\n') i++;
            return i;
        }
        return -1;
    }

    static int MatchVariableEnd(string s, int i)
    {
        if (At(s, i, "-}}"))
        {
            i += 3;
            while (i < s.Length && PyText.IsSpace(s[i])) i++;
            return i;
        }
        return At(s, i, "}}") ? i + 2 : -1;
    }

    static int SkipComment(string s, int from, int line, out bool lineStarting)
    {
        int q = s.IndexOf("#}", from, StringComparison.Ordinal);
        if (q < 0) throw new JinjaError("Missing end of comment tag", line);
        int end = q + 2;
        char sign = q - 1 >= from ? s[q - 1] : '\0';
        if (sign == '-') while (end < s.Length && PyText.IsSpace(s[end])) end++;
        else if (sign != '+' && end < s.Length && s[end] == '\n') end++;
        lineStarting = s[end - 1] == '\n';
        return end;
    }

    static readonly string[] Operators =
        { "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";" };

    static int LexTag(string s, int i, bool block, List<Token> tokens, LineMap lines, out bool lineStarting)
    {
        var balance = new Stack<char>();
        while (true)
        {
            if (i >= s.Length)
                throw new JinjaError(block ? "Unexpected end of template: a '{%' tag is not closed" : "Unexpected end of template: a '{{' tag is not closed", lines.At(i));
            if (balance.Count == 0)
            {
                int end = block ? MatchBlockEnd(s, i) : MatchVariableEnd(s, i);
                if (end >= 0)
                {
                    tokens.Add(new Token(block ? TokenKind.BlockEnd : TokenKind.VariableEnd, s[i..end], lines.At(i)));
                    lineStarting = s[end - 1] == '\n';
                    return end;
                }
            }
            char c = s[i];
            if (PyText.IsSpace(c)) { i++; continue; }
            int line = lines.At(i);
            int n;
            if ((n = MatchFloat(s, i)) > 0)
            {
                var text = s.Substring(i, n);
                tokens.Add(new Token(TokenKind.Float, text, line, double.Parse(text.Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture)));
            }
            else if ((n = MatchInteger(s, i, out var value)) > 0)
                tokens.Add(new Token(TokenKind.Integer, s.Substring(i, n), line, value));
            else if ((n = MatchName(s, i)) > 0)
            {
                var name = s.Substring(i, n);
                if (!PyText.IsIdentifier(name)) throw new JinjaError("Invalid character in identifier", line);
                tokens.Add(new Token(TokenKind.Name, name, line));
            }
            else if (c is '\'' or '"')
            {
                n = MatchString(s, i, line);
                tokens.Add(new Token(TokenKind.String, s.Substring(i, n), line, PyText.UnescapeLiteral(s.Substring(i + 1, n - 2), line)));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => At(s, i, o))
                    ?? throw new JinjaError($"unexpected char {PyText.Repr(char.IsHighSurrogate(c) && i + 1 < s.Length ? s.Substring(i, 2) : c.ToString())} at {i}", line);
                n = op.Length;
                if (op is "{" or "(" or "[") balance.Push(op switch { "{" => '}', "(" => ')', _ => ']' });
                else if (op is "}" or ")" or "]")
                {
                    if (balance.Count == 0) throw new JinjaError($"unexpected '{op}'", line);
                    var want = balance.Pop();
                    if (want != op[0]) throw new JinjaError($"unexpected '{op}', expected '{want}'", line);
                }
                tokens.Add(new Token(TokenKind.Operator, op, line));
            }
            i += n;
        }
    }

    static bool At(string s, int i, string literal) =>
        i <= s.Length - literal.Length && string.CompareOrdinal(s, i, literal, 0, literal.Length) == 0;

    static int Digits(string s, int i)
    {
        // (\d+_)*\d+
        int j = i;
        if (j >= s.Length || !char.IsAsciiDigit(s[j])) return 0;
        while (true)
        {
            while (j < s.Length && char.IsAsciiDigit(s[j])) j++;
            if (j + 1 < s.Length && s[j] == '_' && char.IsAsciiDigit(s[j + 1])) { j++; continue; }
            return j - i;
        }
    }

    static int MatchFloat(string s, int i)
    {
        if (i > 0 && s[i - 1] == '.') return 0;
        int n = Digits(s, i);
        if (n == 0) return 0;
        int j = i + n;
        int frac = 0;
        if (j < s.Length && s[j] == '.' && (frac = Digits(s, j + 1)) > 0) j += 1 + frac;
        if (j < s.Length && (s[j] == 'e' || s[j] == 'E'))
        {
            int k = j + 1;
            if (k < s.Length && (s[k] == '+' || s[k] == '-')) k++;
            int e = Digits(s, k);
            if (e > 0) return k + e - i;
        }
        return frac > 0 ? j - i : 0;
    }

    static int MatchInteger(string s, int i, out long value)
    {
        value = 0;
        if (!char.IsAsciiDigit(s[i])) return 0;
        int j = i;
        int radix = 10;
        if (s[i] == '0' && i + 1 < s.Length && char.ToLowerInvariant(s[i + 1]) is 'b' or 'o' or 'x')
        {
            radix = char.ToLowerInvariant(s[i + 1]) switch { 'b' => 2, 'o' => 8, _ => 16 };
            int k = i + 2, digits = 0;
            while (k < s.Length)
            {
                int off = k < s.Length && s[k] == '_' ? 1 : 0;
                if (k + off < s.Length && DigitValue(s[k + off]) is int d && d < radix) { k += off + 1; digits++; }
                else break;
            }
            if (digits > 0) j = k; else radix = 10;
        }
        if (radix == 10)
        {
            if (s[i] == '0')
            {
                j = i + 1;
                while (j < s.Length && (s[j] == '0' || (s[j] == '_' && j + 1 < s.Length && s[j + 1] == '0'))) j++;
            }
            else j = i + Digits(s, i);
        }
        var text = s[(radix == 10 ? i : i + 2)..j].Replace("_", "");
        try
        {
            foreach (var ch in text) value = checked(value * radix + DigitValue(ch)!.Value);
        }
        catch (OverflowException) { throw new JinjaError($"integer literal {s[i..j]} is too large"); }
        return j - i;
    }

    static int? DigitValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => null,
    };

    static int MatchName(string s, int i)
    {
        int j = i;
        while (j < s.Length && PyText.IsWordChar(s, j)) j += char.IsHighSurrogate(s[j]) && j + 1 < s.Length ? 2 : 1;
        return j - i;
    }

    static int MatchString(string s, int i, int line)
    {
        char q = s[i];
        int j = i + 1;
        while (j < s.Length)
        {
            if (s[j] == '\\') { j += 2; continue; }
            if (s[j] == q) return j + 1 - i;
            j++;
        }
        throw new JinjaError("unexpected end of string literal", line);
    }

    sealed class LineMap
    {
        readonly List<int> _starts = new() { 0 };
        public LineMap(string s)
        {
            for (int i = 0; i < s.Length; i++) if (s[i] == '\n') _starts.Add(i + 1);
        }
        public int At(int pos)
        {
            int k = _starts.BinarySearch(pos);
            return (k >= 0 ? k : ~k - 1) + 1;
        }
    }
}
