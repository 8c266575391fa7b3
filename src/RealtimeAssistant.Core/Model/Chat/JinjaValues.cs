using System.Globalization;
using System.Text;

namespace RealtimeAssistant.Model.Chat;

// Template values are Python's, kept as plain .NET objects: null (None), bool, long (int),
// double (float), string, List<object?> (list), PyTuple, PyDict, plus the Jinja runtime's
// Undefined, Namespace, LoopInfo and callables. PyOps gives them Python's semantics.

/// <summary>Jinja's default Undefined: prints as "", is falsy and iterates as empty; most other uses fail.</summary>
sealed class Undefined(string hint, bool unsafeAccess = false)
{
    public string Hint { get; } = hint;
    public bool Unsafe { get; } = unsafeAccess;
    public JinjaError Error() => new(Hint);
    public static Undefined Name(string name) => new($"'{name}' is undefined");
    public static Undefined Attribute(object? obj, object? attr) =>
        new($"'{PyOps.TypeName(obj)}' object has no attribute {PyOps.Repr(attr)}");
}

sealed class PyTuple(object?[] items)
{
    public object?[] Items { get; } = items;
    public static readonly PyTuple Empty = new(Array.Empty<object?>());
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python's == (1 == 1.0 == True).</summary>
sealed class PyDict
{
    readonly Dictionary<object, object?> _map = new(KeyComparer.Instance);
    readonly List<object?> _keys = new();

    public int Count => _keys.Count;
    public IEnumerable<object?> Keys => _keys;
    public IEnumerable<KeyValuePair<object?, object?>> Items => _keys.Select(k => new KeyValuePair<object?, object?>(k, _map[k ?? NullKey]));

    public object? this[object? key]
    {
        set
        {
            var k = key ?? NullKey;
            KeyComparer.Instance.GetHashCode(k); // unhashable keys fail here, as in Python
            if (!_map.ContainsKey(k)) _keys.Add(key);
            _map[k] = value;
        }
    }

    public bool TryGet(object? key, out object? value)
    {
        if (key is List<object?> or PyDict) { value = null; return false; }
        return _map.TryGetValue(key ?? NullKey, out value);
    }

    public bool ContainsKey(object? key) => TryGet(key, out _);

    static readonly object NullKey = new();

    sealed class KeyComparer : IEqualityComparer<object>
    {
        public static readonly KeyComparer Instance = new();
        public new bool Equals(object? a, object? b) => PyOps.Eq(a, b);
        public int GetHashCode(object o) => o switch
        {
            string s => s.GetHashCode(StringComparison.Ordinal),
            bool b => b ? 1 : 0,
            long l => l.GetHashCode(),
            double d => d == Math.Floor(d) && Math.Abs(d) < 9e18 ? ((long)d).GetHashCode() : d.GetHashCode(),
            PyTuple t => t.Items.Aggregate(17, (h, x) => { Limits.Step(); return h * 31 + (x is null ? 0 : GetHashCode(x)); }),
            List<object?> or PyDict => throw new JinjaError($"unhashable type: '{PyOps.TypeName(o)}'"),
            _ => o.GetHashCode(),
        };
    }
}

/// <summary>namespace(...): the one object a template may change, so loops can carry state out.</summary>
sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>The 'loop' variable of a for-loop.</summary>
sealed class LoopInfo(List<object?> items)
{
    public int Index0 { get; set; }
    public List<object?> Items { get; } = items;
    object? _lastChanged = NoValue;
    static readonly object NoValue = new();

    public object? Get(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "revindex" => (long)(Items.Count - Index0),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("loop.cycle", (args, _) =>
            args.Count == 0 ? throw new JinjaError("no items for cycling given") : args[Index0 % args.Count]),
        "changed" => new BuiltinFunction("loop.changed", (args, _) =>
        {
            var value = new PyTuple(args.ToArray());
            if (_lastChanged != NoValue && PyOps.Eq(_lastChanged, value)) return false;
            _lastChanged = value;
            return true;
        }),
        _ => Undefined.Attribute(this, name),
    };
}

abstract class PyCallable
{
    public abstract string Name { get; }
    public abstract object? Call(List<object?> args, List<(string Name, object? Value)> kwargs);
}

sealed class BuiltinFunction(string name, Func<List<object?>, List<(string Name, object? Value)>, object?> fn) : PyCallable
{
    public override string Name => name;
    public override object? Call(List<object?> args, List<(string Name, object? Value)> kwargs) => fn(args, kwargs);
}

/// <summary>Python's semantics for template values.</summary>
static class PyOps
{
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        PyDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopInfo => "LoopContext",
        PyCallable => "function",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        PyTuple t => t.Items.Length > 0,
        PyDict d => d.Count > 0,
        _ => true,
    };

    /// <summary>Python's str().</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's repr().</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        Repr(v, sb);
        return sb.ToString();
    }

    static void Repr(object? v, StringBuilder sb)
    {
        Limits.Step();
        if (sb.Length > Limits.MaxString) Limits.CheckString(sb.Length);
        switch (v)
        {
            case List<object?> l: Join(sb, "[", l, "]"); break;
            case PyTuple t:
                if (t.Items.Length == 1) { sb.Append('('); Repr(t.Items[0], sb); sb.Append(",)"); }
                else Join(sb, "(", t.Items, ")");
                break;
            case PyDict d:
                sb.Append('{');
                bool first = true;
                foreach (var kv in d.Items)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    Repr(kv.Key, sb);
                    sb.Append(": ");
                    Repr(kv.Value, sb);
                }
                sb.Append('}');
                break;
            case Namespace ns:
                sb.Append("<Namespace {");
                sb.Append(string.Join(", ", ns.Attributes.Select(kv => PyText.Repr(kv.Key) + ": " + Repr(kv.Value))));
                sb.Append("}>");
                break;
            default: sb.Append(Scalar(v)); break;
        }
    }

    static void Join(StringBuilder sb, string open, IEnumerable<object?> items, string close)
    {
        sb.Append(open);
        bool first = true;
        foreach (var x in items)
        {
            if (!first) sb.Append(", ");
            first = false;
            Repr(x, sb);
        }
        sb.Append(close);
    }

    static string Scalar(object? v) => v switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => PyText.FloatRepr(d),
        string s => PyText.Repr(s),
        Undefined => "Undefined",
        PyCallable c => $"<function {c.Name}>",
        LoopInfo => "<LoopContext>",
        _ => v.ToString() ?? "",
    };

    static bool IsNumber(object? v) => v is long or double or bool;
    static double ToDouble(object? v) => v switch { bool b => b ? 1 : 0, long l => l, double d => d, _ => throw new InvalidOperationException() };
    static bool IsInt(object? v) => v is long or bool;
    public static long ToLong(object? v) => v switch { bool b => b ? 1 : 0, long l => l, _ => throw new InvalidOperationException() };

    public static bool Eq(object? a, object? b)
    {
        Limits.Step();
        if (ReferenceEquals(a, b) && a is not double) return true; // Python's identity shortcut (NaN aside)
        if (IsNumber(a) && IsNumber(b))
            return IsInt(a) && IsInt(b) ? ToLong(a) == ToLong(b) : ToDouble(a) == ToDouble(b);
        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (Undefined, Undefined) => true,
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Eq(p.First, p.Second)),
            (PyTuple x, PyTuple y) => x.Items.Length == y.Items.Length && x.Items.Zip(y.Items).All(p => Eq(p.First, p.Second)),
            (PyDict x, PyDict y) => x.Count == y.Count && x.Items.All(kv => y.TryGet(kv.Key, out var v) && Eq(kv.Value, v)),
            _ => ReferenceEquals(a, b),
        };
    }

    /// <summary>Python's ordering: numbers, strings (by code point), lists/tuples element by element.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return IsInt(a) && IsInt(b) ? ToLong(a).CompareTo(ToLong(b)) : ToDouble(a).CompareTo(ToDouble(b));
        switch (a, b)
        {
            case (string x, string y): return PyText.CompareCodePoints(x, y);
            case (List<object?> x, List<object?> y): return CompareSeq(x, y, op);
            case (PyTuple x, PyTuple y): return CompareSeq(x.Items, y.Items, op);
        }
        if (a is Undefined u) throw u.Error();
        if (b is Undefined w) throw w.Error();
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static int CompareSeq(IList<object?> x, IList<object?> y, string op)
    {
        Limits.Step();
        for (int i = 0; i < Math.Min(x.Count, y.Count); i++)
            if (!Eq(x[i], y[i])) return Compare(x[i], y[i], op);
        return x.Count.CompareTo(y.Count);
    }

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string t ? s.Contains(t, StringComparison.Ordinal)
            : throw new JinjaError($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        List<object?> l => l.Any(x => Eq(x, item)),
        PyTuple t => t.Items.Any(x => Eq(x, item)),
        PyDict d => d.ContainsKey(item),
        Undefined => false,
        Namespace ns => throw new JinjaError("argument of type 'Namespace' is not iterable"),
        _ => throw new JinjaError($"argument of type '{TypeName(container)}' is not iterable"),
    };

    /// <summary>What a for-loop (or list()) sees: list/tuple items, dict keys, string characters.</summary>
    public static List<object?> Iterate(object? v) => v switch
    {
        List<object?> l => Limits.CheckCount(l.Count) >= 0 ? new List<object?>(l) : null!,
        PyTuple t => t.Items.ToList(),
        PyDict d => d.Keys.ToList(),
        string s => PyText.CodePoints(s).Select(c => (object?)c).ToList(),
        Undefined u => u.Unsafe ? throw u.Error() : new List<object?>(),
        _ => throw new JinjaError($"'{TypeName(v)}' object is not iterable"),
    };

    public static long Length(object? v) => v switch
    {
        string s => PyText.CodePoints(s).Count(),
        List<object?> l => l.Count,
        PyTuple t => t.Items.Length,
        PyDict d => d.Count,
        Undefined => 0,
        _ => throw new JinjaError($"object of type '{TypeName(v)}' has no len()"),
    };

    public static object? Binary(string op, object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Error();
        if (b is Undefined ub) throw ub.Error();
        if (IsNumber(a) && IsNumber(b))
        {
            bool ints = IsInt(a) && IsInt(b);
            try
            {
                switch (op)
                {
                    // (object) keeps an int an int: a long/double conditional would widen both to double
                    case "+": return ints ? (object)checked(ToLong(a) + ToLong(b)) : ToDouble(a) + ToDouble(b);
                    case "-": return ints ? (object)checked(ToLong(a) - ToLong(b)) : ToDouble(a) - ToDouble(b);
                    case "*": return ints ? (object)checked(ToLong(a) * ToLong(b)) : ToDouble(a) * ToDouble(b);
                    case "/":
                        if (ToDouble(b) == 0) throw new JinjaError("division by zero");
                        return ToDouble(a) / ToDouble(b);
                    case "//":
                        if (ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                        if (ints) { long x = ToLong(a), y = ToLong(b), q = x / y; return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q; }
                        return Math.Floor(ToDouble(a) / ToDouble(b));
                    case "%":
                        if (ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                        if (ints) { long x = ToLong(a), y = ToLong(b), r = x % y; return r != 0 && (r < 0) != (y < 0) ? r + y : r; }
                        { double x = ToDouble(a), y = ToDouble(b), r = x % y; return r != 0 && (r < 0) != (y < 0) ? r + y : r; }
                    case "**":
                        if (ints && ToLong(b) >= 0)
                        {
                            long result = 1, x = ToLong(a);
                            for (long e = ToLong(b); e > 0; e >>= 1) // by squaring: fast for 1, -1 and 0 too
                            {
                                if ((e & 1) != 0) result = checked(result * x);
                                if (e > 1) x = checked(x * x);
                            }
                            return result;
                        }
                        return Math.Pow(ToDouble(a), ToDouble(b));
                }
            }
            catch (OverflowException) { throw new JinjaError("integer overflow (Python's big integers are not supported)"); }
        }
        switch (op, a, b)
        {
            case ("+", string x, string y): return Limits.NewString(x.Length + (long)y.Length) ? x + y : null;
            case ("+", List<object?> x, List<object?> y): Limits.CheckCount(x.Count + (long)y.Count); return x.Concat(y).ToList();
            case ("+", PyTuple x, PyTuple y): Limits.CheckCount(x.Items.Length + (long)y.Items.Length); return new PyTuple(x.Items.Concat(y.Items).ToArray());
            case ("*", string s, _) when IsInt(b): return Repeat(s, ToLong(b));
            case ("*", _, string s) when IsInt(a): return Repeat(s, ToLong(a));
            case ("*", List<object?> l, _) when IsInt(b): return Repeat(l, ToLong(b));
            case ("*", _, List<object?> l) when IsInt(a): return Repeat(l, ToLong(a));
            case ("%", string fmt, _): return PyText.PercentFormat(fmt, b);
        }
        string verb = op switch { "+" => "+", "-" => "-", "*" => "*", "/" => "/", "//" => "//", "%" => "%", _ => "** or pow()" };
        if (op == "+" && a is string) throw new JinjaError($"can only concatenate str (not \"{TypeName(b)}\") to str");
        if (op == "+" && a is List<object?>) throw new JinjaError($"can only concatenate list (not \"{TypeName(b)}\") to list");
        throw new JinjaError($"unsupported operand type(s) for {verb}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static string Repeat(string s, long n)
    {
        if (n <= 0 || s.Length == 0) return "";
        Limits.NewString(s.Length * n);
        return new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();
    }

    static List<object?> Repeat(List<object?> items, long n)
    {
        var result = new List<object?>();
        if (n <= 0) return result;
        Limits.CheckCount(items.Count * n);
        for (long i = 0; i < n; i++) result.AddRange(items);
        return result;
    }

    public static object? Negate(object? v) => v switch
    {
        bool b => b ? -1L : 0L,
        long l => l == long.MinValue ? throw new JinjaError("integer overflow") : (object)-l,
        double d => (object)-d,
        Undefined u => throw u.Error(),
        _ => throw new JinjaError($"bad operand type for unary -: '{TypeName(v)}'"),
    };

    public static object? Plus(object? v) => v switch
    {
        bool b => b ? 1L : 0L,
        long or double => v,
        Undefined u => throw u.Error(),
        _ => throw new JinjaError($"bad operand type for unary +: '{TypeName(v)}'"),
    };
}

/// <summary>
/// Bounds that keep a hostile template from exhausting memory or time (Jinja's sandbox caps range()
/// the same way): every evaluation step and every element compared, hashed or printed counts
/// against one budget per render, so even a template that builds exponentially shared structures ends.
/// </summary>
static class Limits
{
    public const long MaxString = 16_000_000;
    public const long MaxItems = 1_000_000;
    public const long MaxRange = 100_000;
    public const long MaxSteps = 1_000_000; // a real template takes a few thousand for a chat; a thousand turns fit

    [ThreadStatic] static long _steps;

    public static void Reset() => _steps = 0;
    public static long StepsTaken => _steps;

    /// <summary>Counts work: one step per node evaluated or element visited; copies count a step per 16 items or 256 characters.</summary>
    public static void Step(long n = 1)
    {
        if ((_steps += n) > MaxSteps) throw new JinjaError("template runs too long");
    }

    public static bool CheckString(long length) =>
        length <= MaxString ? true : throw new JinjaError($"string too long ({length} characters; the limit is {MaxString})");

    /// <summary>A string of <paramref name="length"/> characters is being built: within the limit, and counted as work.</summary>
    public static bool NewString(long length)
    {
        CheckString(length);
        Step(1 + (length >> 8));
        return true;
    }

    public static long CheckCount(long count)
    {
        if (count > MaxItems) throw new JinjaError($"sequence too long ({count} items; the limit is {MaxItems})");
        Step(1 + (count >> 4));
        return count;
    }
}
