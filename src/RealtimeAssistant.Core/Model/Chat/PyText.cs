using System.Globalization;
using System.Text;

namespace RealtimeAssistant.Model.Chat;

/// <summary>Python's string rules where templates can observe them: whitespace, escapes, repr, float repr, split.</summary>
static class PyText
{
    /// <summary>str.isspace(): .NET's white space plus the four ASCII separators Python counts.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    public static bool AllSpace(string s, int from)
    {
        for (int i = from; i < s.Length; i++) if (!IsSpace(s[i])) return false;
        return true;
    }

    public static string Strip(string s, string? chars = null) => LStrip(RStrip(s, chars), chars);

    public static string LStrip(string s, string? chars = null)
    {
        int i = 0;
        while (i < s.Length && (chars == null ? IsSpace(s[i]) : chars.Contains(s[i]))) i++;
        return s[i..];
    }

    public static string RStrip(string s, string? chars = null)
    {
        int j = s.Length;
        while (j > 0 && (chars == null ? IsSpace(s[j - 1]) : chars.Contains(s[j - 1]))) j--;
        return s[..j];
    }

    /// <summary>The characters of a string as Python sees them: one per code point.</summary>
    public static IEnumerable<string> CodePoints(string s)
    {
        for (int i = 0; i < s.Length; i++)
            yield return char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? s.Substring(i++, 2) : s[i].ToString();
    }

    public static int CompareCodePoints(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            int x = NextCodePoint(a, ref i), y = NextCodePoint(b, ref j);
            if (x != y) return x.CompareTo(y);
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    static int NextCodePoint(string s, ref int i)
    {
        if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            int cp = char.ConvertToUtf32(s[i], s[i + 1]);
            i += 2;
            return cp;
        }
        return s[i++];
    }

    static bool IsLetterCategory(UnicodeCategory c) => c is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
        or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber;

    /// <summary>Characters of Jinja's name pattern (Python's \w plus combining marks).</summary>
    public static bool IsWordChar(string s, int i)
    {
        var cat = CharUnicodeInfo.GetUnicodeCategory(s, i);
        return s[i] == '_' || IsLetterCategory(cat) || cat is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.OtherNumber
            or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.ConnectorPunctuation;
    }

    public static bool IsIdentifier(string name)
    {
        if (name.Length == 0) return false;
        var first = CharUnicodeInfo.GetUnicodeCategory(name, 0);
        return name[0] == '_' || IsLetterCategory(first);
    }

    /// <summary>
    /// A string literal's body as Jinja decodes it: non-ASCII characters are first written as
    /// Python escapes (backslashreplace), then the whole is read with Python's unicode-escape codec.
    /// </summary>
    public static string UnescapeLiteral(string body, int line)
    {
        var ascii = new StringBuilder(body.Length);
        for (int i = 0; i < body.Length; i++)
        {
            int cp = char.IsHighSurrogate(body[i]) && i + 1 < body.Length && char.IsLowSurrogate(body[i + 1])
                ? char.ConvertToUtf32(body[i], body[++i]) : body[i];
            if (cp < 0x80) ascii.Append((char)cp);
            else if (cp <= 0xff) ascii.Append($"\\x{cp:x2}");
            else if (cp <= 0xffff) ascii.Append($"\\u{cp:x4}");
            else ascii.Append($"\\U{cp:x8}");
        }
        var s = ascii.ToString();
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c != '\\') { sb.Append(c); continue; }
            if (i + 1 >= s.Length) throw new JinjaError("\\ at end of string", line);
            char e = s[++i];
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case >= '0' and <= '7':
                {
                    int v = e - '0', n = 1;
                    while (n < 3 && i + 1 < s.Length && s[i + 1] is >= '0' and <= '7') { v = v * 8 + (s[++i] - '0'); n++; }
                    sb.Append((char)v);
                    break;
                }
                case 'x' or 'u' or 'U':
                {
                    int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (!IsHex(s, i + 1, len))
                        throw new JinjaError($"truncated \\{(e == 'x' ? "xXX" : e == 'u' ? "uXXXX" : "UXXXXXXXX")} escape", line);
                    long cp = long.Parse(s.AsSpan(i + 1, len), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (cp > 0x10FFFF) throw new JinjaError("illegal Unicode character", line);
                    sb.Append(FromCodePoint((int)cp));
                    i += len;
                    break;
                }
                case 'N': throw new JinjaError("\\N{...} escapes are not supported", line);
                default: sb.Append('\\').Append(e); break;
            }
        }
        return sb.ToString();
    }

    static bool IsHex(string s, int from, int len)
    {
        if (from + len > s.Length) return false;
        for (int i = from; i < from + len; i++) if (!char.IsAsciiHexDigit(s[i])) return false;
        return true;
    }

    static bool IsPrintable(int cp)
    {
        if (cp == ' ') return true;
        var cat = cp <= 0xffff ? CharUnicodeInfo.GetUnicodeCategory((char)cp) : CharUnicodeInfo.GetUnicodeCategory(cp);
        return cat is not (UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
            or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);
    }

    /// <summary>Python's repr() of a str.</summary>
    public static string Repr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder(s.Length + 2).Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            int cp = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[++i]) : s[i];
            if (cp == quote || cp == '\\') sb.Append('\\').Append((char)cp);
            else if (cp == '\t') sb.Append("\\t");
            else if (cp == '\n') sb.Append("\\n");
            else if (cp == '\r') sb.Append("\\r");
            else if (cp < 0x20 || cp == 0x7f) sb.Append($"\\x{cp:x2}");
            else if (cp < 0x7f || IsPrintable(cp)) sb.Append(FromCodePoint(cp));
            else if (cp <= 0xff) sb.Append($"\\x{cp:x2}");
            else if (cp <= 0xffff) sb.Append($"\\u{cp:x4}");
            else sb.Append($"\\U{cp:x8}");
        }
        return sb.Append(quote).ToString();
    }

    static string FromCodePoint(int cp) => cp is >= 0xD800 and <= 0xDFFF ? ((char)cp).ToString() : char.ConvertFromUtf32(cp);

    /// <summary>Python's repr() of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        bool negative = double.IsNegative(d);
        var shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int exp = 0;
        int ePos = shortest.IndexOfAny(new[] { 'E', 'e' });
        if (ePos >= 0)
        {
            exp = int.Parse(shortest[(ePos + 1)..], CultureInfo.InvariantCulture);
            shortest = shortest[..ePos];
        }
        int dot = shortest.IndexOf('.');
        string digits = dot >= 0 ? shortest.Remove(dot, 1) : shortest;
        int pointPos = (dot >= 0 ? dot : shortest.Length) + exp; // digits[0..pointPos] is the integer part
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) { digits = "0"; pointPos = 1; }
        int sciExp = pointPos - 1;
        string body;
        if (sciExp < -4 || sciExp >= 16)
        {
            body = digits[..1] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (sciExp < 0 ? "-" : "+") + Math.Abs(sciExp).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (pointPos <= 0) body = "0." + new string('0', -pointPos) + digits;
        else if (pointPos >= digits.Length) body = digits + new string('0', pointPos - digits.Length) + ".0";
        else body = digits[..pointPos] + "." + digits[pointPos..];
        return (negative ? "-" : "") + body;
    }

    public static string Upper(string s) => s.ToUpperInvariant();
    public static string Lower(string s) => s.ToLowerInvariant();

    /// <summary>str.capitalize(): first character upper case, the rest lower case.</summary>
    public static string Capitalize(string s) => s.Length == 0 ? s : CodePointAt0Upper(s);

    static string CodePointAt0Upper(string s)
    {
        int n = char.IsHighSurrogate(s[0]) && s.Length > 1 ? 2 : 1;
        return s[..n].ToUpperInvariant() + s[n..].ToLowerInvariant();
    }

    static bool IsCased(char c) => char.IsUpper(c) || char.IsLower(c) || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter;

    /// <summary>str.title(): a cased character after an uncased one is upper-cased, other cased characters lower-cased.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (var c in s)
        {
            sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            prevCased = IsCased(c);
        }
        return sb.ToString();
    }

    /// <summary>str.split(sep, maxsplit) and str.rsplit.</summary>
    public static List<object?> Split(string s, string? sep, long maxsplit, bool fromRight)
    {
        var parts = new List<string>();
        if (sep == null)
        {
            // runs of whitespace separate; leading/trailing whitespace yields nothing
            var words = new List<(int Start, int End)>();
            int i = 0;
            while (i < s.Length)
            {
                while (i < s.Length && IsSpace(s[i])) i++;
                if (i >= s.Length) break;
                int start = i;
                while (i < s.Length && !IsSpace(s[i])) i++;
                words.Add((start, i));
            }
            if (maxsplit < 0 || words.Count <= maxsplit + 1) return words.Select(w => (object?)s[w.Start..w.End]).ToList();
            if (!fromRight)
            {
                var head = words.Take((int)maxsplit).Select(w => (object?)s[w.Start..w.End]).ToList();
                head.Add(RStrip(s[words[(int)maxsplit].Start..]));
                return head;
            }
            var tail = words.Skip(words.Count - (int)maxsplit).Select(w => (object?)s[w.Start..w.End]).ToList();
            tail.Insert(0, LStrip(s[..words[words.Count - (int)maxsplit - 1].End]));
            return tail;
        }
        if (sep.Length == 0) throw new JinjaError("empty separator");
        var pieces = s.Split(sep);
        if (maxsplit < 0 || pieces.Length <= maxsplit + 1) return pieces.Select(p => (object?)p).ToList();
        if (!fromRight)
        {
            var head = pieces.Take((int)maxsplit).Select(p => (object?)p).ToList();
            head.Add(string.Join(sep, pieces.Skip((int)maxsplit)));
            return head;
        }
        var rest = pieces.Skip(pieces.Length - (int)maxsplit).Select(p => (object?)p).ToList();
        rest.Insert(0, string.Join(sep, pieces.Take(pieces.Length - (int)maxsplit)));
        return rest;
    }

    public static List<object?> SplitLines(string s, bool keepEnds)
    {
        var lines = new List<object?>();
        int start = 0, i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            int eol = c == '\r' && i + 1 < s.Length && s[i + 1] == '\n' ? 2
                : c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029' ? 1 : 0;
            if (eol == 0) { i++; continue; }
            lines.Add(s[start..(keepEnds ? i + eol : i)]);
            i += eol;
            start = i;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    /// <summary>The common cases of Python's printf-style "fmt % args": %s %r %d %i %f %x %%, with flags, width and precision.</summary>
    public static string PercentFormat(string fmt, object? args)
    {
        var values = args is PyTuple t ? t.Items : new[] { args };
        int next = 0;
        object? Take() => next < values.Length ? values[next++] : throw new JinjaError("not enough arguments for format string");
        var sb = new StringBuilder();
        for (int i = 0; i < fmt.Length; i++)
        {
            if (fmt[i] != '%') { sb.Append(fmt[i]); continue; }
            if (++i >= fmt.Length) throw new JinjaError("incomplete format");
            string flags = "";
            while (i < fmt.Length && "-+ 0#".Contains(fmt[i])) flags += fmt[i++];
            int width = 0;
            while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) width = width * 10 + (fmt[i++] - '0');
            int precision = -1;
            if (i < fmt.Length && fmt[i] == '.')
            {
                i++;
                precision = 0;
                while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) precision = precision * 10 + (fmt[i++] - '0');
            }
            if (i >= fmt.Length) throw new JinjaError("incomplete format");
            char conv = fmt[i];
            string text = conv switch
            {
                '%' => "%",
                's' => PyOps.Str(Take()),
                'r' => PyOps.Repr(Take()),
                'd' or 'i' => FormatInt(Take(), flags),
                'f' or 'F' => FormatFixed(Take(), precision < 0 ? 6 : precision, flags),
                'x' => Convert.ToString(PyOps.ToLong(AsInt(Take())), 16),
                _ => throw new JinjaError($"unsupported format character '{conv}'"),
            };
            if (conv == 's' && precision >= 0 && text.Length > precision) text = text[..precision];
            if (text.Length < width)
                text = flags.Contains('-') ? text.PadRight(width)
                    : flags.Contains('0') && conv is not ('s' or 'r') ? ZeroPad(text, width) : text.PadLeft(width);
            sb.Append(text);
        }
        if (next < values.Length && args is PyTuple) throw new JinjaError("not all arguments converted during string formatting");
        return sb.ToString();
    }

    static object? AsInt(object? v) => v switch
    {
        long or bool => v,
        double d => (long)Math.Truncate(d),
        _ => throw new JinjaError($"%d format: a real number is required, not {PyOps.TypeName(v)}"),
    };

    static string FormatInt(object? v, string flags)
    {
        long n = PyOps.ToLong(AsInt(v));
        var s = n.ToString(CultureInfo.InvariantCulture);
        return n >= 0 && flags.Contains('+') ? "+" + s : n >= 0 && flags.Contains(' ') ? " " + s : s;
    }

    static string FormatFixed(object? v, int precision, string flags)
    {
        double d = v switch { long l => l, bool b => b ? 1 : 0, double x => x, _ => throw new JinjaError($"must be real number, not {PyOps.TypeName(v)}") };
        var s = d.ToString("F" + precision, CultureInfo.InvariantCulture);
        return d >= 0 && flags.Contains('+') ? "+" + s : s;
    }

    static string ZeroPad(string s, int width)
    {
        bool sign = s.Length > 0 && (s[0] == '-' || s[0] == '+');
        return sign ? s[0] + s[1..].PadLeft(width - 1, '0') : s.PadLeft(width, '0');
    }
}
