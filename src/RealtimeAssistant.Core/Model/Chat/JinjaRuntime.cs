using System.Text;

namespace RealtimeAssistant.Model.Chat;

/// <summary>Variables of one scope; lookups fall through to the enclosing scope.</summary>
sealed class Scope(Scope? parent)
{
    readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);
    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>Slice bounds, the key of a subscript like x[1:] or x[::-1].</summary>
sealed record SliceValue(object? Start, object? Stop, object? Step);

/// <summary>
/// Runs a parsed template with Jinja's semantics: a for-loop's body gets a fresh scope each
/// iteration (so a plain 'set' inside a loop never leaks out; namespace() is how templates carry
/// state), macros see the scope they were defined in, undefined names render as "".
/// </summary>
sealed class Evaluator
{
    const int MaxDepth = 600;

    public Func<DateTime> Clock { get; init; } = () => DateTime.Now;
    int _depth;
    int _line;

    public int Line => _line;

    enum Flow { Normal, Break, Continue }

    public void Run(List<Stmt> body, Scope scope, StringBuilder output)
    {
        Limits.Reset();
        Exec(body, scope, output);
    }

    void Enter(int line)
    {
        _line = line;
        if (++_depth > MaxDepth) throw new JinjaError("maximum recursion depth exceeded");
        Limits.Step();
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
    }

    static void Append(StringBuilder sb, string s)
    {
        Limits.CheckString(sb.Length + (long)s.Length);
        Limits.Step(s.Length >> 8);
        sb.Append(s);
    }

    Flow Exec(List<Stmt> body, Scope scope, StringBuilder output)
    {
        foreach (var stmt in body)
        {
            var flow = Exec(stmt, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    Flow Exec(Stmt stmt, Scope scope, StringBuilder output)
    {
        Enter(stmt.Line);
        try
        {
            switch (stmt)
            {
                case DataStmt d: Append(output, d.Text); return Flow.Normal;
                case OutputStmt o: Append(output, PyOps.Str(Eval(o.Value, scope))); return Flow.Normal;
                case IfStmt i:
                    foreach (var (test, branch) in i.Branches)
                        if (PyOps.Truthy(Eval(test, scope))) return Exec(branch, scope, output);
                    return Exec(i.Else, scope, output);
                case ForStmt f: return ExecFor(f, scope, output);
                case SetStmt s: Assign(s.Target, Eval(s.Value, scope), scope); return Flow.Normal;
                case SetBlockStmt sb:
                {
                    var buf = new StringBuilder();
                    Exec(sb.Body, scope, buf);
                    object? value = buf.ToString();
                    if (sb.Filter != null) value = Eval(sb.Filter, scope, value);
                    Assign(sb.Target, value, scope);
                    return Flow.Normal;
                }
                case MacroStmt m: scope.Set(m.Name, new Macro(this, m, scope)); return Flow.Normal;
                case CallBlockStmt cb:
                {
                    var (args, kwargs) = EvalArgs(cb.Call.Args, scope);
                    kwargs.Add(("caller", new Macro(this, cb.Caller, scope)));
                    var result = Eval(cb.Call.Target, scope) switch
                    {
                        PyCallable c => c.Call(args, kwargs),
                        Undefined u => throw u.Error(),
                        var fn => throw new JinjaError($"'{PyOps.TypeName(fn)}' object is not callable"),
                    };
                    Append(output, PyOps.Str(result));
                    return Flow.Normal;
                }
                case FilterBlockStmt fb:
                {
                    var buf = new StringBuilder();
                    var flow = Exec(fb.Body, scope, buf);
                    Append(output, PyOps.Str(Eval(fb.Filter, scope, buf.ToString())));
                    return flow;
                }
                case WithStmt w:
                {
                    var inner = new Scope(scope);
                    foreach (var (target, value) in w.Assignments) Assign(target, Eval(value, scope), inner);
                    return Exec(w.Body, inner, output);
                }
                case BlockStmt b: return Exec(b.Body, scope, output);
                case BreakStmt: return Flow.Break;
                case ContinueStmt: return Flow.Continue;
                default: throw new JinjaError($"unknown statement {stmt.GetType().Name}");
            }
        }
        finally { _depth--; }
    }

    Flow ExecFor(ForStmt f, Scope scope, StringBuilder output)
    {
        var items = PyOps.Iterate(Eval(f.Iterable, scope));
        if (f.Filter != null)
        {
            items = items.Where(item =>
            {
                var s = new Scope(scope);
                Assign(f.Target, item, s);
                return PyOps.Truthy(Eval(f.Filter, s));
            }).ToList();
        }
        var loop = new LoopInfo(items);
        for (int i = 0; i < items.Count; i++)
        {
            Limits.Step();
            loop.Index0 = i;
            var iteration = new Scope(scope);
            Assign(f.Target, items[i], iteration);
            iteration.Set("loop", loop);
            if (Exec(f.Body, iteration, output) == Flow.Break) break;
        }
        if (items.Count == 0) return Exec(f.Else, scope, output);
        return Flow.Normal;
    }

    void Assign(Target target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameTarget n: scope.Set(n.Name, value); break;
            case NamespaceTarget ns:
                if (!scope.TryGet(ns.Namespace, out var obj) || obj is not Namespace space)
                    throw new JinjaError($"cannot assign attribute on non-namespace object {PyOps.Repr(obj)}");
                space.Attributes[ns.Attribute] = value;
                break;
            case TupleTarget t:
            {
                var items = PyOps.Iterate(value is Undefined u ? throw u.Error() : value);
                if (items.Count < t.Items.Count) throw new JinjaError($"not enough values to unpack (expected {t.Items.Count}, got {items.Count})");
                if (items.Count > t.Items.Count) throw new JinjaError($"too many values to unpack (expected {t.Items.Count})");
                for (int i = 0; i < items.Count; i++) Assign(t.Items[i], items[i], scope);
                break;
            }
        }
    }

    public object? Eval(Expr expr, Scope scope, object? blockInput = null)
    {
        Enter(expr.Line);
        try
        {
            return expr switch
            {
                ConstExpr c => c.Value,
                NameExpr n => scope.TryGet(n.Name, out var v) ? v : Undefined.Name(n.Name),
                TupleExpr t => new PyTuple(t.Items.Select(e => Eval(e, scope)).ToArray()),
                ListExpr l => l.Items.Select(e => Eval(e, scope)).ToList(),
                DictExpr d => MakeDict(d, scope),
                GetAttrExpr g => GetAttr(Eval(g.Target, scope), g.Name),
                GetItemExpr g => GetItem(Eval(g.Target, scope), Eval(g.Key, scope)),
                SliceExpr s => new SliceValue(Opt(s.Start, scope), Opt(s.Stop, scope), Opt(s.Step, scope)),
                CallExpr c => CallValue(Eval(c.Target, scope), c.Args, scope),
                FilterExpr f => Builtins.Filter(this, f.Name, f.Value == null ? blockInput : Eval(f.Value, scope, blockInput), EvalArgs(f.Args, scope)),
                TestExpr t => Builtins.Test(this, t.Name, Eval(t.Value, scope), EvalArgs(t.Args, scope)),
                UnaryExpr { Op: "not" } u => !PyOps.Truthy(Eval(u.Operand, scope)),
                UnaryExpr { Op: "-" } u => PyOps.Negate(Eval(u.Operand, scope)),
                UnaryExpr u => PyOps.Plus(Eval(u.Operand, scope)),
                BinaryExpr { Op: "and" } b => Eval(b.Left, scope) is var l && !PyOps.Truthy(l) ? l : Eval(b.Right, scope),
                BinaryExpr { Op: "or" } b => Eval(b.Left, scope) is var l && PyOps.Truthy(l) ? l : Eval(b.Right, scope),
                BinaryExpr b => PyOps.Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope)),
                ConcatExpr c => Concat(c, scope),
                CompareExpr c => Compare(c, scope),
                CondExpr c => PyOps.Truthy(Eval(c.Test, scope)) ? Eval(c.Then, scope)
                    : c.Else != null ? Eval(c.Else, scope)
                    : new Undefined($"the inline if-expression on line {c.Line} evaluated to false and no else section was defined."),
                _ => throw new JinjaError($"unknown expression {expr.GetType().Name}"),
            };
        }
        finally { _depth--; }
    }

    object? Opt(Expr? e, Scope scope) => e == null ? null : Eval(e, scope);

    PyDict MakeDict(DictExpr d, Scope scope)
    {
        var dict = new PyDict();
        foreach (var (k, v) in d.Items) dict[Eval(k, scope)] = Eval(v, scope);
        return dict;
    }

    string Concat(ConcatExpr c, Scope scope)
    {
        var sb = new StringBuilder();
        foreach (var item in c.Items) Append(sb, PyOps.Str(Eval(item, scope)));
        return sb.ToString();
    }

    bool Compare(CompareExpr c, Scope scope)
    {
        var left = Eval(c.First, scope);
        foreach (var (op, operand) in c.Rest)
        {
            var right = Eval(operand, scope);
            bool ok = op switch
            {
                "==" => PyOps.Eq(left, right),
                "!=" => !PyOps.Eq(left, right),
                "<" => PyOps.Compare(left, right, op) < 0,
                "<=" => PyOps.Compare(left, right, op) <= 0,
                ">" => PyOps.Compare(left, right, op) > 0,
                ">=" => PyOps.Compare(left, right, op) >= 0,
                "in" => PyOps.Contains(right, left),
                _ => !PyOps.Contains(right, left),
            };
            if (!ok) return false;
            left = right;
        }
        return true;
    }

    public (List<object?> Args, List<(string Name, object? Value)> Kwargs) EvalArgs(CallArgs a, Scope scope)
    {
        var args = a.Args.Select(e => Eval(e, scope)).ToList();
        if (a.DynArgs != null) args.AddRange(PyOps.Iterate(Eval(a.DynArgs, scope)));
        var kwargs = a.Kwargs.Select(k => (k.Name, Eval(k.Value, scope))).ToList();
        if (a.DynKwargs != null)
        {
            if (Eval(a.DynKwargs, scope) is not PyDict d) throw new JinjaError("argument after ** must be a mapping");
            foreach (var kv in d.Items)
                kwargs.Add((kv.Key as string ?? throw new JinjaError("keywords must be strings"), kv.Value));
        }
        return (args, kwargs);
    }

    object? CallValue(object? fn, CallArgs callArgs, Scope scope)
    {
        var (args, kwargs) = EvalArgs(callArgs, scope);
        return fn switch
        {
            PyCallable c => c.Call(args, kwargs),
            Undefined u => throw u.Error(),
            _ => throw new JinjaError($"'{PyOps.TypeName(fn)}' object is not callable"),
        };
    }

    /// <summary>obj.name: an attribute first (methods, namespace and loop fields), then obj['name'].</summary>
    public object? GetAttr(object? obj, string name)
    {
        if (obj is Undefined u) throw u.Error();
        if (name.StartsWith("__", StringComparison.Ordinal))
            return new Undefined($"access to attribute '{name}' of '{PyOps.TypeName(obj)}' object is unsafe.", unsafeAccess: true);
        switch (obj)
        {
            case Namespace ns: return ns.Attributes.TryGetValue(name, out var v) ? v : Undefined.Attribute(obj, name);
            case LoopInfo loop: return loop.Get(name);
        }
        if (Builtins.Method(obj, name) is { } method) return method;
        var item = ItemOnly(obj, name);
        return item is NullItem ? null : item ?? Undefined.Attribute(obj, name);
    }

    /// <summary>obj[key]: the item first, then (for a string key) the attribute.</summary>
    public object? GetItem(object? obj, object? key)
    {
        if (obj is Undefined u) throw u.Error();
        if (key is SliceValue slice) return Slice(obj, slice);
        if (ItemOnly(obj, key) is { } found) return found is NullItem ? null : found;
        if (key is string s && !s.StartsWith("__", StringComparison.Ordinal))
        {
            switch (obj)
            {
                case Namespace ns: return ns.Attributes.TryGetValue(s, out var v) ? v : Undefined.Attribute(obj, s);
                case LoopInfo loop: return loop.Get(s);
            }
            if (Builtins.Method(obj, s) is { } method) return method;
        }
        return new Undefined($"{PyOps.Repr(obj)} has no element {PyOps.Repr(key)}");
    }

    /// <summary>Marks a found item whose value is None, so "not found" can be null.</summary>
    sealed class NullItem { public static readonly NullItem Instance = new(); }

    object? ItemOnly(object? obj, object? key)
    {
        object? Wrap(object? v) => v ?? NullItem.Instance;
        switch (obj)
        {
            case PyDict d: return d.TryGet(key, out var v) ? Wrap(v) : null;
            case List<object?> l when key is long or bool: return Index(l.Count, key) is int i ? Wrap(l[i]) : null;
            case PyTuple t when key is long or bool: return Index(t.Items.Length, key) is int j ? Wrap(t.Items[j]) : null;
            case string s when key is long or bool:
            {
                var chars = PyText.CodePoints(s).ToList();
                return Index(chars.Count, key) is int k ? chars[k] : null;
            }
        }
        return null;
    }

    static int? Index(int count, object? key)
    {
        long i = PyOps.ToLong(key);
        if (i < 0) i += count;
        return i >= 0 && i < count ? (int)i : null;
    }

    static object? Slice(object? obj, SliceValue s)
    {
        List<object?> items = obj switch
        {
            List<object?> l => l,
            PyTuple t => t.Items.ToList(),
            string str => PyText.CodePoints(str).Select(c => (object?)c).ToList(),
            _ => throw new JinjaError($"'{PyOps.TypeName(obj)}' object is not subscriptable"),
        };
        long Bound(object? v, string what) => v switch
        {
            long or bool => PyOps.ToLong(v),
            _ => throw new JinjaError($"slice {what} must be an integer or None"),
        };
        long n = items.Count;
        long step = s.Step == null ? 1 : Bound(s.Step, "step");
        if (step == 0) throw new JinjaError("slice step cannot be zero");
        long Clamp(object? v, long dflt)
        {
            if (v == null) return dflt;
            long x = Bound(v, "index");
            if (x < 0) x += n;
            return step > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long start = Clamp(s.Start, step > 0 ? 0 : n - 1), stop = Clamp(s.Stop, step > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step) result.Add(items[(int)i]);
        return obj switch
        {
            PyTuple => new PyTuple(result.ToArray()),
            string => string.Concat(result.Cast<string>()),
            _ => result,
        };
    }

    /// <summary>A macro: renders its body with its arguments bound, in a scope below the one it was defined in.</summary>
    sealed class Macro(Evaluator ev, MacroStmt def, Scope closure) : PyCallable
    {
        public override string Name => def.Name;

        public override object? Call(List<object?> args, List<(string Name, object? Value)> kwargs)
        {
            var scope = new Scope(closure);
            var parameters = def.Params;
            if (args.Count > parameters.Count && !def.TakesVarargs)
                throw new JinjaError($"macro '{def.Name}' takes not more than {parameters.Count} argument(s)");
            var given = new Dictionary<string, object?>(StringComparer.Ordinal);
            var extraKw = new PyDict();
            foreach (var (name, value) in kwargs)
            {
                int idx = parameters.FindIndex(p => p.Name == name);
                if (idx < 0 && name == "caller" && def.TakesCaller) scope.Set("caller", value);
                else if (idx < 0)
                {
                    if (!def.TakesKwargs) throw new JinjaError($"macro '{def.Name}' takes no keyword argument '{name}'");
                    extraKw[name] = value;
                }
                else if (idx < args.Count) throw new JinjaError($"macro '{def.Name}' got multiple values for argument '{name}'");
                else given[name] = value;
            }
            for (int i = 0; i < parameters.Count; i++)
            {
                var (name, dflt) = parameters[i];
                object? value = i < args.Count ? args[i]
                    : given.TryGetValue(name, out var kv) ? kv
                    : dflt != null ? ev.Eval(dflt, scope)
                    : new Undefined($"parameter '{name}' was not provided");
                scope.Set(name, value);
            }
            scope.Set("varargs", new PyTuple(args.Skip(parameters.Count).ToArray()));
            scope.Set("kwargs", extraKw);
            var output = new StringBuilder();
            ev.Exec(def.Body, scope, output);
            return output.ToString();
        }
    }
}
