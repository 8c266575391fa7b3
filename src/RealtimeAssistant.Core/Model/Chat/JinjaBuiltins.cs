using System.Globalization;
using System.Text;

namespace RealtimeAssistant.Model.Chat;

/// <summary>
/// The filters, tests, globals and value methods a template can call: Jinja's built-ins that chat
/// templates use, Python's str/dict/list methods that the immutable sandbox allows, and Hugging
/// Face's additions (tojson with non-ASCII kept, raise_exception, strftime_now).
/// </summary>
static class Builtins
{
    /// <summary>Arguments bound to a Python-style signature by position or keyword.</summary>
    sealed class Args
    {
        readonly object?[] _values;
        readonly bool[] _given;

        public Args(string fn, (List<object?> Args, List<(string Name, object? Value)> Kwargs) call, params string[] names)
        {
            _values = new object?[names.Length];
            _given = new bool[names.Length];
            if (call.Args.Count > names.Length)
                throw new JinjaError($"{fn}() takes at most {names.Length} argument(s) ({call.Args.Count} given)");
            for (int i = 0; i < call.Args.Count; i++) { _values[i] = call.Args[i]; _given[i] = true; }
            foreach (var (name, value) in call.Kwargs)
            {
                int i = Array.IndexOf(names, name);
                if (i < 0) throw new JinjaError($"{fn}() got an unexpected keyword argument '{name}'");
                if (_given[i]) throw new JinjaError($"{fn}() got multiple values for argument '{name}'");
                _values[i] = value;
                _given[i] = true;
            }
        }

        public bool Has(int i) => _given[i];
        public object? this[int i, object? dflt = null] => _given[i] ? _values[i] : dflt;
        public bool Bool(int i, bool dflt = false) => _given[i] ? PyOps.Truthy(_values[i]) : dflt;
    }

    delegate object? FilterFn(Evaluator ev, object? value, (List<object?> Args, List<(string Name, object? Value)> Kwargs) call);

    static string Soft(object? v) => PyOps.Str(v);

    static readonly Dictionary<string, FilterFn> Filters = new()
    {
        ["abs"] = (_, v, c) => v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), bool b => b ? 1L : 0L, _ => throw new JinjaError($"bad operand type for abs(): '{PyOps.TypeName(v)}'") },
        ["attr"] = (ev, v, c) => { var a = new Args("attr", c, "name"); return ev.GetAttr(v, Soft(a[0])); },
        ["capitalize"] = (_, v, _) => PyText.Capitalize(Soft(v)),
        ["center"] = (_, v, c) => Center(Soft(v), (int)PyOps.ToLong(new Args("center", c, "width")[0, 80L])),
        ["count"] = (_, v, _) => PyOps.Length(v),
        ["default"] = Default,
        ["d"] = Default,
        ["dictsort"] = DictSort,
        ["escape"] = (_, v, _) => Escape(Soft(v)),
        ["e"] = (_, v, _) => Escape(Soft(v)),
        ["first"] = (_, v, _) => PyOps.Iterate(v) is { Count: > 0 } l ? l[0] : new Undefined("No first item, sequence was empty."),
        ["float"] = (_, v, c) => ToFloat(v) ?? new Args("float", c, "default")[0, 0.0],
        ["format"] = (_, v, c) => c.Kwargs.Count > 0 ? throw new JinjaError("format filter: keyword arguments are not supported")
            : PyText.PercentFormat(Soft(v), new PyTuple(c.Args.ToArray())),
        ["indent"] = Indent,
        ["int"] = ToIntFilter,
        ["items"] = (_, v, _) => v switch
        {
            Undefined => new List<object?>(),
            PyDict d => d.Items.Select(kv => (object?)new PyTuple(new[] { kv.Key, kv.Value })).ToList(),
            _ => throw new JinjaError("Can only get item pairs from a mapping."),
        },
        ["join"] = (ev, v, c) =>
        {
            var a = new Args("join", c, "d", "attribute");
            var items = PyOps.Iterate(v);
            if (a.Has(1)) items = items.Select(x => Lookup(ev, x, a[1])).ToList();
            return Limit(string.Join(Soft(a[0, ""]), items.Select(Soft)));
        },
        ["last"] = (_, v, _) => PyOps.Iterate(v) is { Count: > 0 } l ? l[^1] : new Undefined("No last item, sequence was empty."),
        ["length"] = (_, v, _) => PyOps.Length(v),
        ["list"] = (_, v, _) => PyOps.Iterate(v),
        ["lower"] = (_, v, _) => PyText.Lower(Soft(v)),
        ["map"] = Map,
        ["max"] = (ev, v, c) => MinMax(ev, v, c, "max"),
        ["min"] = (ev, v, c) => MinMax(ev, v, c, "min"),
        ["reject"] = (ev, v, c) => Select(ev, v, c, byAttribute: false, keep: false),
        ["rejectattr"] = (ev, v, c) => Select(ev, v, c, byAttribute: true, keep: false),
        ["replace"] = (_, v, c) =>
        {
            var a = new Args("replace", c, "old", "new", "count");
            return Replace(Soft(v), Soft(a[0]), Soft(a[1]), a.Has(2) && a[2] != null ? PyOps.ToLong(a[2]) : -1);
        },
        ["reverse"] = (_, v, _) => v is string s ? string.Concat(PyText.CodePoints(s).Reverse()) : Enumerable.Reverse(PyOps.Iterate(v)).ToList(),
        ["round"] = Round,
        ["safe"] = (_, v, _) => Soft(v),
        ["select"] = (ev, v, c) => Select(ev, v, c, byAttribute: false, keep: true),
        ["selectattr"] = (ev, v, c) => Select(ev, v, c, byAttribute: true, keep: true),
        ["sort"] = Sort,
        ["string"] = (_, v, _) => Soft(v),
        ["sum"] = (ev, v, c) =>
        {
            var a = new Args("sum", c, "attribute", "start");
            var items = PyOps.Iterate(v);
            if (a.Has(0)) items = items.Select(x => Lookup(ev, x, a[0])).ToList();
            return items.Aggregate(a[1, 0L], (acc, x) => PyOps.Binary("+", acc, x));
        },
        ["title"] = (_, v, _) => JinjaTitle(Soft(v)),
        ["tojson"] = (_, v, c) => ToJson(v, c),
        ["trim"] = (_, v, c) => PyText.Strip(Soft(v), new Args("trim", c, "chars")[0] is string chars ? chars : null),
        ["unique"] = Unique,
        ["upper"] = (_, v, _) => PyText.Upper(Soft(v)),
        ["wordcount"] = (_, v, _) => (long)System.Text.RegularExpressions.Regex.Matches(Soft(v), @"\w+").Count,
    };

    public static bool HasFilter(string name) => Filters.ContainsKey(name);

    public static object? Filter(Evaluator ev, string name, object? value, (List<object?>, List<(string, object?)>) call) =>
        Filters.TryGetValue(name, out var f) ? f(ev, value, call) : throw new JinjaError($"No filter named '{name}'.");

    static string Limit(string s)
    {
        Limits.NewString(s.Length);
        return s;
    }

    static object? Default(Evaluator _, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("default", c, "default_value", "boolean");
        return v is Undefined || (a.Bool(1) && !PyOps.Truthy(v)) ? a[0, ""] : v;
    }

    static string Escape(string s) =>
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");

    static string Center(string s, int width)
    {
        int pad = width - s.Length;
        if (pad <= 0) return s;
        int left = pad / 2 + (pad & width & 1);
        return new string(' ', left) + s + new string(' ', pad - left);
    }

    static string Replace(string s, string old, string repl, long count)
    {
        if (count < 0) return Limit(old.Length == 0 ? string.Join(repl, PyText.CodePoints(s).Prepend("").Append("")) : s.Replace(old, repl, StringComparison.Ordinal));
        var sb = new StringBuilder();
        int at = 0;
        for (long n = 0; n < count; n++)
        {
            int i = old.Length == 0 ? (at <= s.Length ? at : -1) : s.IndexOf(old, at, StringComparison.Ordinal);
            if (i < 0) break;
            sb.Append(s, at, i - at).Append(repl);
            if (old.Length == 0) { if (i < s.Length) sb.Append(s[i]); at = i + 1; }
            else at = i + old.Length;
        }
        if (at < s.Length) sb.Append(s, at, s.Length - at);
        return Limit(sb.ToString());
    }

    static double? ToFloat(object? v) => v switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        string s when double.TryParse(PyText.Strip(s).Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        _ => null,
    };

    static object? ToIntFilter(Evaluator _, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("int", c, "default", "base");
        int radix = (int)PyOps.ToLong(a[1, 10L]);
        switch (v)
        {
            case long or bool: return PyOps.ToLong(v);
            case double d when !double.IsNaN(d) && !double.IsInfinity(d) && Math.Abs(d) < 9.2e18: return (long)Math.Truncate(d);
            case string s:
                var t = PyText.Strip(s).Replace("_", "");
                try { return Convert.ToInt64(t, radix is 2 or 8 or 10 or 16 ? radix : 10); } catch (Exception e) when (e is FormatException or OverflowException or ArgumentException) { }
                if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && Math.Abs(f) < 9.2e18) return (long)Math.Truncate(f);
                break;
        }
        return a[0, 0L];
    }

    static object? Indent(Evaluator _, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("indent", c, "width", "first", "blank");
        string indention = a[0, 4L] is string w ? w : new string(' ', (int)Math.Max(0, PyOps.ToLong(a[0, 4L])));
        var lines = PyText.SplitLines(Soft(v) + "\n", false).Cast<string>().ToList();
        string rv;
        if (a.Bool(2)) rv = string.Join("\n" + indention, lines);
        else
        {
            rv = lines[0];
            if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? indention + l : l));
        }
        if (a.Bool(1)) rv = indention + rv;
        return Limit(rv);
    }

    static object? Round(Evaluator _, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("round", c, "precision", "method");
        int precision = (int)PyOps.ToLong(a[0, 0L]);
        string method = Soft(a[1, "common"]);
        if (method == "common")
            return v is long or bool ? (object)PyOps.ToLong(v) : Math.Round(ToFloat(v) ?? throw new JinjaError("round: a number is required"), Math.Clamp(precision, 0, 15), MidpointRounding.ToEven);
        double x = ToFloat(v) ?? throw new JinjaError("round: a number is required"), scale = Math.Pow(10, precision);
        return method switch
        {
            "floor" => Math.Floor(x * scale) / scale,
            "ceil" => Math.Ceiling(x * scale) / scale,
            _ => throw new JinjaError("method must be common, ceil or floor"),
        };
    }

    /// <summary>Jinja's make_attrgetter: "a.b.0" looks up each part as an item, then as an attribute.</summary>
    static object? Lookup(Evaluator ev, object? item, object? attribute)
    {
        if (attribute is long or bool) return ev.GetItem(item, attribute);
        foreach (var part in Soft(attribute).Split('.'))
            item = ev.GetItem(item, long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : part);
        return item;
    }

    static object? Select(Evaluator ev, object? v, (List<object?> Args, List<(string Name, object? Value)> Kwargs) c, bool byAttribute, bool keep)
    {
        var args = c.Args;
        int off = 0;
        object? attribute = null;
        if (byAttribute)
        {
            if (args.Count == 0) throw new JinjaError("Missing parameter for attribute name");
            attribute = args[0];
            off = 1;
        }
        Func<object?, bool> test = args.Count > off
            ? x => PyOps.Truthy(Test(ev, Soft(args[off]), x, (args.Skip(off + 1).ToList(), c.Kwargs)))
            : PyOps.Truthy;
        return PyOps.Iterate(v).Where(x => test(byAttribute ? Lookup(ev, x, attribute) : x) == keep).ToList();
    }

    static object? Map(Evaluator ev, object? v, (List<object?> Args, List<(string Name, object? Value)> Kwargs) c)
    {
        var items = PyOps.Iterate(v);
        if (c.Args.Count == 0 && c.Kwargs.Any(k => k.Name == "attribute"))
        {
            var a = new Args("map", c, "attribute", "default");
            return items.Select(x =>
            {
                var r = Lookup(ev, x, a[0]);
                return r is Undefined && a.Has(1) ? a[1] : r;
            }).ToList();
        }
        if (c.Args.Count == 0) throw new JinjaError("map requires a filter argument");
        var name = Soft(c.Args[0]);
        var rest = (c.Args.Skip(1).ToList(), c.Kwargs);
        return items.Select(x => Filter(ev, name, x, rest)).ToList();
    }

    static Func<object?, object?> SortKey(Evaluator ev, object? attribute, bool caseSensitive) => x =>
    {
        var k = attribute != null ? Lookup(ev, x, attribute) : x;
        return !caseSensitive && k is string s ? s.ToLowerInvariant() : k;
    };

    sealed class PyComparer : IComparer<object?>
    {
        public static readonly PyComparer Instance = new();
        public int Compare(object? a, object? b) => PyOps.Compare(a, b, "<");
    }

    static object? Sort(Evaluator ev, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("sort", c, "reverse", "case_sensitive", "attribute");
        var key = SortKey(ev, a[2], a.Bool(1));
        var items = PyOps.Iterate(v);
        // Stable, like Python's sorted(); reverse keeps equal items in order, as Python does.
        return a.Bool(0) ? items.OrderByDescending(key, PyComparer.Instance).ToList() : items.OrderBy(key, PyComparer.Instance).ToList();
    }

    static object? DictSort(Evaluator _, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("dictsort", c, "case_sensitive", "by", "reverse");
        if (v is not PyDict d) throw new JinjaError("dictsort: a mapping is required");
        int pos = Soft(a[1, "key"]) switch { "key" => 0, "value" => 1, _ => throw new JinjaError("You can only sort by either 'key' or 'value'") };
        bool cs = a.Bool(0);
        Func<object?, object?> key = x => ((PyTuple)x!).Items[pos] is string s && !cs ? s.ToLowerInvariant() : ((PyTuple)x!).Items[pos];
        var items = d.Items.Select(kv => (object?)new PyTuple(new[] { kv.Key, kv.Value }));
        return (a.Bool(2) ? items.OrderByDescending(key, PyComparer.Instance) : items.OrderBy(key, PyComparer.Instance)).ToList();
    }

    static object? Unique(Evaluator ev, object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("unique", c, "case_sensitive", "attribute");
        var key = SortKey(ev, a[1], a.Bool(0));
        var seen = new PyDict();
        var result = new List<object?>();
        foreach (var x in PyOps.Iterate(v))
        {
            var k = key(x);
            if (seen.ContainsKey(k)) continue;
            seen[k] = true;
            result.Add(x);
        }
        return result;
    }

    static object? MinMax(Evaluator ev, object? v, (List<object?>, List<(string, object?)>) c, string which)
    {
        var a = new Args(which, c, "case_sensitive", "attribute");
        var items = PyOps.Iterate(v);
        if (items.Count == 0) return new Undefined("No aggregated item, sequence was empty.");
        var key = SortKey(ev, a[1], a.Bool(0));
        var best = items[0];
        foreach (var x in items.Skip(1))
        {
            int cmp = PyOps.Compare(key(x), key(best), "<");
            if (which == "max" ? cmp > 0 : cmp < 0) best = x;
        }
        return best;
    }

    /// <summary>Jinja's title filter: each word (split at whitespace, '-', and opening brackets) capitalised.</summary>
    static string JinjaTitle(string s)
    {
        var parts = System.Text.RegularExpressions.Regex.Split(s, @"([-\s({\[<]+)");
        return string.Concat(parts.Where(p => p.Length > 0).Select(p => p[..1].ToUpperInvariant() + p[1..].ToLowerInvariant()));
    }

    // ---- tojson, as Hugging Face overrides it: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) ----

    static object? ToJson(object? v, (List<object?>, List<(string, object?)>) c)
    {
        var a = new Args("tojson", c, "ensure_ascii", "indent", "separators", "sort_keys");
        string? indent = a[1] switch
        {
            null => null,
            string s => s,
            long or bool => new string(' ', (int)Math.Max(0, Math.Min(PyOps.ToLong(a[1]), 1000))),
            var x => throw new JinjaError($"tojson: indent must be an integer or a string, not {PyOps.TypeName(x)}"),
        };
        string itemSep = indent == null ? ", " : ",", keySep = ": ";
        if (a[2] != null)
        {
            var seps = PyOps.Iterate(a[2]);
            if (seps.Count != 2 || seps[0] is not string i || seps[1] is not string k) throw new JinjaError("tojson: separators must be two strings");
            (itemSep, keySep) = (i, k);
        }
        var sb = new StringBuilder();
        WriteJson(sb, v, new JsonStyle(indent, itemSep, keySep, a.Bool(3), a.Bool(0)), 0);
        return sb.ToString();
    }

    sealed record JsonStyle(string? Indent, string ItemSep, string KeySep, bool SortKeys, bool EnsureAscii);

    static void WriteJson(StringBuilder sb, object? v, JsonStyle st, int level)
    {
        Limits.Step();
        if (sb.Length > Limits.MaxString) Limits.CheckString(sb.Length);
        if (level > 500) throw new JinjaError("tojson: value nested too deeply");
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case double d: sb.Append(JsonFloat(d)); return;
            case string s: JsonString(sb, s, st.EnsureAscii); return;
            case List<object?> or PyTuple:
            {
                var items = PyOps.Iterate(v);
                if (items.Count == 0) { sb.Append("[]"); return; }
                sb.Append('[');
                for (int i = 0; i < items.Count; i++)
                {
                    if (i > 0) sb.Append(st.ItemSep);
                    NewLine(sb, st, level + 1);
                    WriteJson(sb, items[i], st, level + 1);
                }
                NewLine(sb, st, level);
                sb.Append(']');
                return;
            }
            case PyDict dict:
            {
                if (dict.Count == 0) { sb.Append("{}"); return; }
                var entries = dict.Items.ToList();
                if (st.SortKeys) entries = entries.OrderBy(kv => kv.Key, PyComparer.Instance).ToList();
                sb.Append('{');
                for (int i = 0; i < entries.Count; i++)
                {
                    if (i > 0) sb.Append(st.ItemSep);
                    NewLine(sb, st, level + 1);
                    JsonString(sb, entries[i].Key switch
                    {
                        string s => s,
                        bool b => b ? "true" : "false",
                        null => "null",
                        long l => l.ToString(CultureInfo.InvariantCulture),
                        double d => JsonFloat(d),
                        var k => throw new JinjaError($"keys must be str, int, float, bool or None, not {PyOps.TypeName(k)}"),
                    }, st.EnsureAscii);
                    sb.Append(st.KeySep);
                    WriteJson(sb, entries[i].Value, st, level + 1);
                }
                NewLine(sb, st, level);
                sb.Append('}');
                return;
            }
            default: throw new JinjaError($"Object of type {PyOps.TypeName(v)} is not JSON serializable");
        }
    }

    static void NewLine(StringBuilder sb, JsonStyle st, int level)
    {
        if (st.Indent == null) return;
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(st.Indent);
    }

    static string JsonFloat(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PyText.FloatRepr(d);

    static void JsonString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (var ch in s)
        {
            switch (ch)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (ch < 0x20 || (ensureAscii && ch > 0x7e)) sb.Append($"\\u{(int)ch:x4}");
                    else sb.Append(ch);
                    break;
            }
        }
        sb.Append('"');
    }

    // ---- tests ----

    static readonly Dictionary<string, Func<Evaluator, object?, List<object?>, bool>> Tests = new()
    {
        ["defined"] = (_, v, _) => v is not Undefined,
        ["undefined"] = (_, v, _) => v is Undefined,
        ["none"] = (_, v, _) => v is null,
        ["boolean"] = (_, v, _) => v is bool,
        ["true"] = (_, v, _) => v is true,
        ["false"] = (_, v, _) => v is false,
        ["integer"] = (_, v, _) => v is long,
        ["float"] = (_, v, _) => v is double,
        ["number"] = (_, v, _) => v is long or double or bool,
        ["string"] = (_, v, _) => v is string,
        ["mapping"] = (_, v, _) => v is PyDict,
        ["sequence"] = (_, v, _) => v is string or List<object?> or PyTuple or PyDict or Undefined,
        ["iterable"] = (_, v, _) => v is string or List<object?> or PyTuple or PyDict or Undefined,
        ["callable"] = (_, v, _) => v is PyCallable,
        ["escaped"] = (_, _, _) => false,
        ["lower"] = (_, v, _) => IsCase(PyOps.Str(v), lower: true),
        ["upper"] = (_, v, _) => IsCase(PyOps.Str(v), lower: false),
        ["odd"] = (_, v, _) => PyOps.Binary("%", v, 2L) is long r && r == 1,
        ["even"] = (_, v, _) => PyOps.Binary("%", v, 2L) is long r && r == 0,
        ["divisibleby"] = (_, v, a) => PyOps.Eq(PyOps.Binary("%", v, Arg(a, 0, "divisibleby")), 0L),
        ["sameas"] = (_, v, a) => SameAs(v, Arg(a, 0, "sameas")),
        ["in"] = (_, v, a) => PyOps.Contains(Arg(a, 0, "in"), v),
        ["filter"] = (_, v, _) => v is string s && HasFilter(s),
        ["test"] = (_, v, _) => v is string s && Tests!.ContainsKey(s),
        ["eq"] = (_, v, a) => PyOps.Eq(v, Arg(a, 0, "eq")),
        ["ne"] = (_, v, a) => !PyOps.Eq(v, Arg(a, 0, "ne")),
        ["lt"] = (_, v, a) => PyOps.Compare(v, Arg(a, 0, "lt"), "<") < 0,
        ["le"] = (_, v, a) => PyOps.Compare(v, Arg(a, 0, "le"), "<=") <= 0,
        ["gt"] = (_, v, a) => PyOps.Compare(v, Arg(a, 0, "gt"), ">") > 0,
        ["ge"] = (_, v, a) => PyOps.Compare(v, Arg(a, 0, "ge"), ">=") >= 0,
    };

    static readonly Dictionary<string, string> TestAliases = new()
    {
        ["=="] = "eq", ["equalto"] = "eq", ["!="] = "ne", ["<"] = "lt", ["lessthan"] = "lt", ["<="] = "le",
        [">"] = "gt", ["greaterthan"] = "gt", [">="] = "ge",
    };

    static object? Arg(List<object?> args, int i, string test) =>
        i < args.Count ? args[i] : throw new JinjaError($"test '{test}' is missing an argument");

    static bool IsCase(string s, bool lower)
    {
        bool cased = false;
        foreach (var ch in s)
        {
            if (lower ? char.IsUpper(ch) : char.IsLower(ch)) return false;
            if (char.IsUpper(ch) || char.IsLower(ch)) cased = true;
        }
        return cased;
    }

    static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y && x is >= -5 and <= 256, // CPython caches these small ints
        _ => ReferenceEquals(a, b),
    };

    public static bool Test(Evaluator ev, string name, object? value, (List<object?> Args, List<(string Name, object? Value)> Kwargs) call)
    {
        if (TestAliases.TryGetValue(name, out var alias)) name = alias;
        if (!Tests.TryGetValue(name, out var test)) throw new JinjaError($"No test named '{name}'.");
        if (call.Kwargs.Count > 0) throw new JinjaError($"test '{name}' takes no keyword arguments");
        return test(ev, value, call.Args);
    }

    // ---- methods of values (what the immutable sandbox lets a template call) ----

    static readonly HashSet<string> MutatingList = new() { "append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort" };
    static readonly HashSet<string> MutatingDict = new() { "clear", "pop", "popitem", "setdefault", "update" };

    public static PyCallable? Method(object? obj, string name)
    {
        BuiltinFunction M(Func<Args, object?> fn, params string[] names) =>
            new($"{PyOps.TypeName(obj)}.{name}", (args, kwargs) => fn(new Args(name, (args, kwargs), names)));
        switch (obj)
        {
            case string s:
                return name switch
                {
                    "startswith" => M(a => Affix(s, a[0], start: true), "prefix"),
                    "endswith" => M(a => Affix(s, a[0], start: false), "suffix"),
                    "strip" => M(a => PyText.Strip(s, a[0] as string), "chars"),
                    "lstrip" => M(a => PyText.LStrip(s, a[0] as string), "chars"),
                    "rstrip" => M(a => PyText.RStrip(s, a[0] as string), "chars"),
                    "split" => M(a => PyText.Split(s, a[0] as string, a.Has(1) ? PyOps.ToLong(a[1]) : -1, fromRight: false), "sep", "maxsplit"),
                    "rsplit" => M(a => PyText.Split(s, a[0] as string, a.Has(1) ? PyOps.ToLong(a[1]) : -1, fromRight: true), "sep", "maxsplit"),
                    "splitlines" => M(a => PyText.SplitLines(s, a.Bool(0)), "keepends"),
                    "upper" => M(_ => PyText.Upper(s)),
                    "lower" => M(_ => PyText.Lower(s)),
                    "title" => M(_ => PyText.Title(s)),
                    "capitalize" => M(_ => PyText.Capitalize(s)),
                    "replace" => M(a => Replace(s, Str(a[0], "replace"), Str(a[1], "replace"), a.Has(2) ? PyOps.ToLong(a[2]) : -1), "old", "new", "count"),
                    "find" => M(a => (long)CodePointIndex(s, s.IndexOf(Str(a[0], "find"), StringComparison.Ordinal)), "sub"),
                    "rfind" => M(a => (long)CodePointIndex(s, s.LastIndexOf(Str(a[0], "rfind"), StringComparison.Ordinal)), "sub"),
                    "count" => M(a => (long)CountOf(s, Str(a[0], "count")), "sub"),
                    "join" => M(a => Limit(string.Join(s, PyOps.Iterate(a[0]).Select(x => x as string ?? throw new JinjaError($"sequence item: expected str instance, {PyOps.TypeName(x)} found")))), "iterable"),
                    "isdigit" => M(_ => s.Length > 0 && s.All(char.IsDigit)),
                    "isalpha" => M(_ => s.Length > 0 && s.All(char.IsLetter)),
                    "isalnum" => M(_ => s.Length > 0 && s.All(char.IsLetterOrDigit)),
                    "isspace" => M(_ => s.Length > 0 && s.All(PyText.IsSpace)),
                    "islower" => M(_ => IsCase(s, lower: true)),
                    "isupper" => M(_ => IsCase(s, lower: false)),
                    "format" => new BuiltinFunction("str.format", (args, kwargs) => StrFormat(s, args, kwargs)),
                    "ljust" => M(a => s.PadRight((int)PyOps.ToLong(a[0])), "width"),
                    "rjust" => M(a => s.PadLeft((int)PyOps.ToLong(a[0])), "width"),
                    "center" => M(a => Center(s, (int)PyOps.ToLong(a[0])), "width"),
                    _ => null,
                };
            case PyDict d:
                if (MutatingDict.Contains(name)) return Unsafe(obj, name);
                return name switch
                {
                    "items" => M(_ => d.Items.Select(kv => (object?)new PyTuple(new[] { kv.Key, kv.Value })).ToList()),
                    "keys" => M(_ => d.Keys.ToList()),
                    "values" => M(_ => d.Items.Select(kv => kv.Value).ToList()),
                    "get" => M(a => d.TryGet(a[0], out var v) ? v : a[1], "key", "default"),
                    "copy" => M(_ => { var c = new PyDict(); foreach (var kv in d.Items) c[kv.Key] = kv.Value; return c; }),
                    _ => null,
                };
            case List<object?> l:
                if (MutatingList.Contains(name)) return Unsafe(obj, name);
                return name switch
                {
                    "index" => M(a => (long)l.FindIndex(x => PyOps.Eq(x, a[0])) is var i && i >= 0 ? i : throw new JinjaError($"{PyOps.Repr(a[0])} is not in list"), "value"),
                    "count" => M(a => (long)l.Count(x => PyOps.Eq(x, a[0])), "value"),
                    "copy" => M(_ => new List<object?>(l)),
                    _ => null,
                };
        }
        return null;
    }

    /// <summary>The immutable sandbox refuses methods that change a list or dict: calling one fails.</summary>
    static PyCallable Unsafe(object? obj, string name) => new BuiltinFunction(name, (_, _) =>
        throw new JinjaError($"access to attribute '{name}' of '{PyOps.TypeName(obj)}' object is unsafe."));

    static string Str(object? v, string fn) => v as string ?? throw new JinjaError($"{fn}() argument must be str, not {PyOps.TypeName(v)}");

    static bool Affix(string s, object? affix, bool start)
    {
        var options = affix is PyTuple t ? t.Items : new[] { affix };
        return options.Any(o => o is string a ? (start ? s.StartsWith(a, StringComparison.Ordinal) : s.EndsWith(a, StringComparison.Ordinal))
            : throw new JinjaError($"{(start ? "startswith" : "endswith")} first arg must be str or a tuple of str, not {PyOps.TypeName(o)}"));
    }

    static int CodePointIndex(string s, int utf16Index) =>
        utf16Index <= 0 ? utf16Index : utf16Index - Enumerable.Range(0, utf16Index).Count(i => char.IsLowSurrogate(s[i]));

    static int CountOf(string s, string sub)
    {
        if (sub.Length == 0) return PyText.CodePoints(s).Count() + 1;
        int n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>str.format with plain fields: {}, {0}, {name} and {{ }} escapes (no format specs).</summary>
    static string StrFormat(string fmt, List<object?> args, List<(string Name, object? Value)> kwargs)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c == '{' && i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c == '}') throw new JinjaError("Single '}' encountered in format string");
            if (c != '{') { sb.Append(c); continue; }
            int end = fmt.IndexOf('}', i);
            if (end < 0) throw new JinjaError("Single '{' encountered in format string");
            var field = fmt[(i + 1)..end];
            if (field.Contains(':') || field.Contains('!') || field.Contains('.') || field.Contains('['))
                throw new JinjaError("str.format: format specs and attribute fields are not supported");
            object? value;
            if (field.Length == 0) value = auto < args.Count ? args[auto++] : throw new JinjaError("Replacement index out of range for positional args tuple");
            else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) value = n < args.Count ? args[n] : throw new JinjaError("Replacement index out of range for positional args tuple");
            else value = kwargs.FirstOrDefault(k => k.Name == field) is { Name: not null } kv ? kv.Value : throw new JinjaError($"KeyError: '{field}'");
            sb.Append(PyOps.Str(value));
            i = end;
        }
        return Limit(sb.ToString());
    }

    // ---- globals ----

    public static Dictionary<string, object?> Globals(Func<DateTime> clock) => new()
    {
        ["range"] = new BuiltinFunction("range", (args, kwargs) => Range(args, kwargs)),
        ["dict"] = new BuiltinFunction("dict", (args, kwargs) =>
        {
            var d = new PyDict();
            if (args.Count > 1) throw new JinjaError("dict expected at most 1 argument");
            if (args.Count == 1)
            {
                if (args[0] is PyDict src) foreach (var kv in src.Items) d[kv.Key] = kv.Value;
                else foreach (var pair in PyOps.Iterate(args[0]))
                    {
                        var kv = PyOps.Iterate(pair);
                        if (kv.Count != 2) throw new JinjaError("dictionary update sequence element has the wrong length");
                        d[kv[0]] = kv[1];
                    }
            }
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        }),
        ["namespace"] = new BuiltinFunction("namespace", (args, kwargs) =>
        {
            var ns = new Namespace();
            if (args.Count > 1) throw new JinjaError("namespace expected at most 1 positional argument");
            if (args.Count == 1)
            {
                if (args[0] is not PyDict src) throw new JinjaError("namespace() argument must be a mapping");
                foreach (var kv in src.Items) ns.Attributes[kv.Key as string ?? throw new JinjaError("namespace keys must be strings")] = kv.Value;
            }
            foreach (var (k, v) in kwargs) ns.Attributes[k] = v;
            return ns;
        }),
        ["joiner"] = new BuiltinFunction("joiner", (args, _) =>
        {
            var sep = args.Count > 0 ? PyOps.Str(args[0]) : ", ";
            bool used = false;
            return new BuiltinFunction("joiner", (_, _) => { var r = used ? sep : ""; used = true; return r; });
        }),
        ["raise_exception"] = new BuiltinFunction("raise_exception", (args, _) =>
            throw new JinjaError(args.Count > 0 ? PyOps.Str(args[0]) : "raise_exception() called")),
        ["strftime_now"] = new BuiltinFunction("strftime_now", (args, _) =>
            Strftime(clock(), args.Count > 0 && args[0] is string f ? f : throw new JinjaError("strftime_now() needs a format string"))),
    };

    static List<object?> Range(List<object?> args, List<(string, object?)> kwargs)
    {
        if (kwargs.Count > 0) throw new JinjaError("range() takes no keyword arguments");
        long L(int i) => args[i] is long or bool ? PyOps.ToLong(args[i]) : throw new JinjaError($"'{PyOps.TypeName(args[i])}' object cannot be interpreted as an integer");
        var (start, stop, step) = args.Count switch
        {
            1 => (0L, L(0), 1L),
            2 => (L(0), L(1), 1L),
            3 => (L(0), L(1), L(2)),
            _ => throw new JinjaError($"range expected 1 to 3 arguments, got {args.Count}"),
        };
        if (step == 0) throw new JinjaError("range() arg 3 must not be zero");
        double count = Math.Max(0, Math.Ceiling(((double)stop - start) / step));
        if (count > Limits.MaxRange) throw new JinjaError($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({Limits.MaxRange}).");
        Limits.CheckCount((long)count);
        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step) result.Add(i);
        return result;
    }

    /// <summary>Python's datetime.strftime with the C locale (the directives glibc gives Python, '-' for no padding included).</summary>
    public static string Strftime(DateTime t, string format)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            bool noPad = format[i + 1] == '-' && i + 2 < format.Length;
            char d = format[noPad ? i + 2 : i + 1];
            string Num(int v, int width) => noPad ? v.ToString(inv) : v.ToString(new string('0', width), inv);
            int hour12 = t.Hour % 12 == 0 ? 12 : t.Hour % 12;
            string? s = d switch
            {
                'a' => t.ToString("ddd", inv),
                'A' => t.ToString("dddd", inv),
                'b' or 'h' => t.ToString("MMM", inv),
                'B' => t.ToString("MMMM", inv),
                'd' => Num(t.Day, 2),
                'e' => noPad ? t.Day.ToString(inv) : t.Day.ToString(inv).PadLeft(2),
                'm' => Num(t.Month, 2),
                'y' => Num(t.Year % 100, 2),
                'Y' => t.Year.ToString(inv),
                'H' => Num(t.Hour, 2),
                'I' => Num(hour12, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv),
                'j' => Num(t.DayOfYear, 3),
                'w' => ((int)t.DayOfWeek).ToString(inv),
                'u' => (t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(inv),
                'U' => Num((t.DayOfYear + 6 - (int)t.DayOfWeek) / 7, 2),
                'W' => Num((t.DayOfYear + 6 - ((int)t.DayOfWeek + 6) % 7) / 7, 2),
                'c' => t.ToString("ddd MMM ", inv) + t.Day.ToString(inv).PadLeft(2) + t.ToString(" HH:mm:ss yyyy", inv),
                'x' => t.ToString("MM/dd/yy", inv),
                'X' => t.ToString("HH:mm:ss", inv),
                'D' => t.ToString("MM/dd/yy", inv),
                'F' => t.ToString("yyyy-MM-dd", inv),
                'T' => t.ToString("HH:mm:ss", inv),
                'R' => t.ToString("HH:mm", inv),
                'z' or 'Z' => "", // datetime.now() is naive: Python prints nothing for these
                'n' => "\n",
                't' => "\t",
                '%' => "%",
                _ => null,
            };
            if (s == null) { sb.Append('%'); continue; }
            sb.Append(s);
            i += noPad ? 2 : 1;
        }
        return sb.ToString();
    }
}
