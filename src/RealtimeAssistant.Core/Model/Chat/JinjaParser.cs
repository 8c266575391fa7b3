namespace RealtimeAssistant.Model.Chat;

/// <summary>
/// Jinja's grammar (jinja2/parser.py), as a recursive-descent parser over <see cref="JinjaLexer"/>'s
/// tokens. Statements: if/elif/else, for (with a filter and else), set (and set blocks, namespace
/// attributes, tuple targets), macro, filter blocks, with, print, break/continue (loopcontrols) and
/// Hugging Face's generation block. Template inheritance and includes need a loader, which chat
/// templates never have, so those tags are errors.
/// </summary>
sealed class JinjaParser
{
    const int MaxDepth = 100; // nesting beyond this is an error, never a stack overflow

    readonly List<Token> _t;
    int _pos;
    int _depth;
    int _loops; // enclosing for-loops, for break/continue

    JinjaParser(List<Token> tokens) => _t = tokens;

    public static List<Stmt> Parse(string source)
    {
        var p = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = p.Subparse();
        if (p.Cur.Kind != TokenKind.Eof) throw p.Fail($"unexpected {p.Cur}");
        return body;
    }

    Token Cur => _t[_pos];
    Token Look => _t[Math.Min(_pos + 1, _t.Count - 1)];
    Token Next() => _t[_pos < _t.Count - 1 ? _pos++ : _pos];

    JinjaError Fail(string message, int? line = null) => new(message, line ?? Cur.Line);

    Token Expect(TokenKind kind, string? text = null)
    {
        var tok = Cur;
        if (tok.Kind != kind || (text != null && tok.Text != text))
        {
            var want = text != null ? $"'{text}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VariableEnd => "end of print statement",
                _ => kind.ToString(),
            };
            if (tok.Kind == TokenKind.Eof) throw Fail($"unexpected end of template, expected {want}");
            throw Fail($"expected {want}, got {tok}");
        }
        return Next();
    }

    bool SkipOp(string op)
    {
        if (Cur.Kind == TokenKind.Operator && Cur.Text == op) { Next(); return true; }
        return false;
    }

    bool SkipName(string name)
    {
        if (Cur.IsName(name)) { Next(); return true; }
        return false;
    }

    void Enter()
    {
        if (++_depth > MaxDepth) throw Fail("template is nested too deeply");
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
    }

    // ---- statements ----

    /// <summary>Template data, prints and statements until a block tag named in <paramref name="endTags"/> (left current).</summary>
    List<Stmt> Subparse(params string[] endTags)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var tok = Cur;
            switch (tok.Kind)
            {
                case TokenKind.Data:
                    Next();
                    body.Add(new DataStmt(tok.Line, tok.Text));
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    body.Add(new OutputStmt(tok.Line, ParseTuple()));
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    Next();
                    if (Cur.Kind == TokenKind.Name && endTags.Contains(Cur.Text)) return body;
                    body.Add(ParseStatement());
                    Expect(TokenKind.BlockEnd);
                    break;
                case TokenKind.Eof:
                    if (endTags.Length > 0)
                        throw Fail($"Unexpected end of template. Jinja was looking for the following tags: {string.Join(" or ", endTags.Select(e => $"'{e}'"))}.");
                    return body;
                default:
                    throw Fail($"unexpected {tok}");
            }
        }
    }

    /// <summary>Ends the current tag and parses a body until one of <paramref name="endTags"/>; the end tag's name stays current.</summary>
    List<Stmt> ParseBody(params string[] endTags)
    {
        SkipOp(":");
        Expect(TokenKind.BlockEnd);
        Enter();
        var body = Subparse(endTags);
        _depth--;
        return body;
    }

    List<Stmt> ParseBodyAndEnd(string endTag)
    {
        var body = ParseBody(endTag);
        Next();
        return body;
    }

    Stmt ParseStatement()
    {
        var tok = Cur;
        if (tok.Kind != TokenKind.Name) throw Fail("tag name expected");
        switch (tok.Text)
        {
            case "if": return ParseIf();
            case "for": return ParseFor();
            case "set": return ParseSet();
            case "macro": return ParseMacro();
            case "with": return ParseWith();
            case "print":
            {
                Next();
                var items = new List<Expr>();
                while (Cur.Kind != TokenKind.BlockEnd)
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    items.Add(ParseExpression());
                }
                return new OutputStmt(tok.Line, new ConcatExpr(tok.Line, items));
            }
            case "filter":
            {
                Next();
                var filter = ParseFilter(null, startInline: true)!;
                return new FilterBlockStmt(tok.Line, filter, ParseBodyAndEnd("endfilter"));
            }
            case "generation":
                Next();
                return new BlockStmt(tok.Line, ParseBodyAndEnd("endgeneration"));
            case "break":
            case "continue":
                Next();
                if (_loops == 0) throw Fail($"'{tok.Text}' outside loop", tok.Line);
                return tok.Text == "break" ? new BreakStmt(tok.Line) : new ContinueStmt(tok.Line);
            case "call": return ParseCallBlock();
            case "block" or "extends" or "include" or "import" or "from" or "autoescape" or "do":
                throw Fail($"the '{tok.Text}' tag is not supported in chat templates", tok.Line);
            default:
                throw Fail($"Encountered unknown tag '{tok.Text}'.", tok.Line);
        }
    }

    Stmt ParseIf()
    {
        int line = Next().Line;
        var branches = new List<(Expr, List<Stmt>)>();
        var elseBody = new List<Stmt>();
        while (true)
        {
            var test = ParseTuple(withCondExpr: false);
            var body = ParseBody("elif", "else", "endif");
            branches.Add((test, body));
            var end = Next();
            if (end.Text == "elif") continue;
            if (end.Text == "else") elseBody = ParseBodyAndEnd("endif");
            break;
        }
        return new IfStmt(line, branches, elseBody);
    }

    Stmt ParseFor()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(extraEnd: "in");
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondExpr: false, extraEnd: "recursive");
        Expr? filter = SkipName("if") ? ParseExpression() : null;
        if (Cur.IsName("recursive")) throw Fail("recursive loops are not supported in chat templates");
        _loops++;
        var body = ParseBody("endfor", "else");
        _loops--;
        var elseBody = Next().Text == "else" ? ParseBodyAndEnd("endfor") : new List<Stmt>();
        return new ForStmt(line, target, iterable, filter, body, elseBody);
    }

    Stmt ParseSet()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(withNamespace: true);
        if (SkipOp("=")) return new SetStmt(line, target, ParseTuple());
        var filter = ParseFilter(null);
        return new SetBlockStmt(line, target, filter, ParseBodyAndEnd("endset"));
    }

    Stmt ParseWith()
    {
        int line = Next().Line;
        var assignments = new List<(Target, Expr)>();
        while (Cur.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0) Expect(TokenKind.Operator, ",");
            var target = ParseAssignTarget();
            Expect(TokenKind.Operator, "=");
            assignments.Add((target, ParseExpression()));
        }
        return new WithStmt(line, assignments, ParseBodyAndEnd("endwith"));
    }

    Stmt ParseMacro()
    {
        int line = Next().Line;
        var name = ((NameTarget)ParseAssignTarget(nameOnly: true)).Name;
        var parameters = ParseSignature();
        return MacroBody(line, name, parameters, "endmacro");
    }

    Stmt ParseCallBlock()
    {
        int line = Next().Line;
        var parameters = Cur.Is("(") ? ParseSignature() : new List<(string, Expr?)>();
        if (ParseExpression() is not CallExpr call) throw Fail("expected call", line);
        return new CallBlockStmt(line, call, MacroBody(line, "caller", parameters, "endcall"));
    }

    List<(string, Expr?)> ParseSignature()
    {
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!SkipOp(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            var p = ((NameTarget)ParseAssignTarget(nameOnly: true)).Name;
            Expr? def = null;
            if (SkipOp("=")) def = ParseExpression();
            else if (parameters.Any(x => x.Item2 != null)) throw Fail("non-default argument follows default argument");
            parameters.Add((p, def));
        }
        return parameters;
    }

    MacroStmt MacroBody(int line, string name, List<(string, Expr?)> parameters, string endTag)
    {
        int loops = _loops;
        _loops = 0; // a macro body is its own function: break/continue cannot reach an outer loop
        var body = ParseBodyAndEnd(endTag);
        _loops = loops;
        var names = new HashSet<string>();
        CollectNames(body, names);
        return new MacroStmt(line, name, parameters, body, names.Contains("varargs"), names.Contains("kwargs"), names.Contains("caller"));
    }

    /// <summary>Whether a macro reads 'varargs'/'kwargs' decides if it accepts extra arguments, as in Jinja.</summary>
    static void CollectNames(object? node, HashSet<string> names)
    {
        switch (node)
        {
            case NameExpr n: names.Add(n.Name); break;
            case MacroStmt: break; // a nested macro's own names are its own
            case System.Collections.IEnumerable list and not string:
                foreach (var x in list) CollectNames(x, names);
                break;
            case System.Runtime.CompilerServices.ITuple tuple:
                for (int i = 0; i < tuple.Length; i++) CollectNames(tuple[i], names);
                break;
            case Node n:
                foreach (var prop in n.GetType().GetProperties())
                    if (prop.Name != "EqualityContract") CollectNames(prop.GetValue(n), names);
                break;
            case CallArgs a:
                CollectNames(a.Args, names); CollectNames(a.Kwargs, names); CollectNames(a.DynArgs, names); CollectNames(a.DynKwargs, names);
                break;
        }
    }

    Target ParseAssignTarget(bool nameOnly = false, string? extraEnd = null, bool withNamespace = false)
    {
        int line = Cur.Line;
        if (withNamespace && Look.Kind == TokenKind.Operator && Look.Text == ".")
        {
            var ns = Expect(TokenKind.Name).Text;
            Next();
            return new NamespaceTarget(line, ns, Expect(TokenKind.Name).Text);
        }
        if (nameOnly)
        {
            var tok = Expect(TokenKind.Name);
            return AssignableName(tok.Text, line);
        }
        return ToTarget(ParseTuple(simplified: true, extraEnd: extraEnd));
    }

    Target ToTarget(Expr e) => e switch
    {
        NameExpr n => AssignableName(n.Name, n.Line),
        TupleExpr t => new TupleTarget(t.Line, t.Items.Select(ToTarget).ToList()),
        _ => throw Fail($"can't assign to {e.GetType().Name.Replace("Expr", "").ToLowerInvariant()}", e.Line),
    };

    NameTarget AssignableName(string name, int line) =>
        name is "true" or "false" or "none" or "True" or "False" or "None"
            ? throw Fail("can't assign to const", line)
            : new NameTarget(line, name);

    // ---- expressions ----

    bool IsTupleEnd(string? extraEnd) =>
        Cur.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd || Cur.Is(")") || (extraEnd != null && Cur.IsName(extraEnd));

    Expr ParseTuple(bool simplified = false, bool withCondExpr = true, string? extraEnd = null, bool explicitParens = false)
    {
        int line = Cur.Line;
        var items = new List<Expr>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0) Expect(TokenKind.Operator, ",");
            if (IsTupleEnd(extraEnd)) break;
            items.Add(simplified ? ParsePrimary() : ParseExpression(withCondExpr));
            if (Cur.Is(",")) isTuple = true;
            else break;
        }
        if (!isTuple)
        {
            if (items.Count > 0) return items[0];
            if (!explicitParens) throw Fail($"Expected an expression, got {Cur}");
        }
        return new TupleExpr(line, items);
    }

    Expr ParseExpression(bool withCondExpr = true)
    {
        Enter();
        var e = withCondExpr ? ParseCondExpr() : ParseOr();
        _depth--;
        return e;
    }

    Expr ParseCondExpr()
    {
        int line = Cur.Line;
        var expr = ParseOr();
        while (SkipName("if"))
        {
            var test = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseCondExpr() : null;
            expr = new CondExpr(line, test, expr, otherwise);
            line = Cur.Line;
        }
        return expr;
    }

    Expr ParseOr()
    {
        var left = ParseAnd();
        while (Cur.IsName("or")) { int line = Next().Line; left = new BinaryExpr(line, "or", left, ParseAnd()); }
        return left;
    }

    Expr ParseAnd()
    {
        var left = ParseNot();
        while (Cur.IsName("and")) { int line = Next().Line; left = new BinaryExpr(line, "and", left, ParseNot()); }
        return left;
    }

    Expr ParseNot()
    {
        if (Cur.IsName("not"))
        {
            int line = Next().Line;
            Enter();
            var operand = ParseNot();
            _depth--;
            return new UnaryExpr(line, "not", operand);
        }
        return ParseCompare();
    }

    static readonly HashSet<string> CompareOps = new() { "==", "!=", "<", "<=", ">", ">=" };

    Expr ParseCompare()
    {
        int line = Cur.Line;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == TokenKind.Operator && CompareOps.Contains(Cur.Text)) rest.Add((Next().Text, ParseMath1()));
            else if (SkipName("in")) rest.Add(("in", ParseMath1()));
            else if (Cur.IsName("not") && Look.IsName("in")) { Next(); Next(); rest.Add(("notin", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(line, first, rest);
    }

    Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Cur.Is("+") || Cur.Is("-")) { var op = Next(); left = new BinaryExpr(op.Line, op.Text, left, ParseConcat()); }
        return left;
    }

    Expr ParseConcat()
    {
        int line = Cur.Line;
        var items = new List<Expr> { ParseMath2() };
        while (SkipOp("~")) items.Add(ParseMath2());
        return items.Count == 1 ? items[0] : new ConcatExpr(line, items);
    }

    Expr ParseMath2()
    {
        var left = ParsePow();
        while (Cur.Is("*") || Cur.Is("/") || Cur.Is("//") || Cur.Is("%")) { var op = Next(); left = new BinaryExpr(op.Line, op.Text, left, ParsePow()); }
        return left;
    }

    Expr ParsePow()
    {
        var left = ParseUnary();
        while (Cur.Is("**")) { var op = Next(); left = new BinaryExpr(op.Line, "**", left, ParseUnary()); }
        return left;
    }

    Expr ParseUnary(bool withFilter = true)
    {
        Enter();
        Expr node;
        if (Cur.Is("-") || Cur.Is("+"))
        {
            var op = Next();
            node = new UnaryExpr(op.Line, op.Text, ParseUnary(false));
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        _depth--;
        return node;
    }

    Expr ParsePrimary()
    {
        var tok = Cur;
        switch (tok.Kind)
        {
            case TokenKind.Name:
                Next();
                return tok.Text switch
                {
                    "true" or "True" => new ConstExpr(tok.Line, true),
                    "false" or "False" => new ConstExpr(tok.Line, false),
                    "none" or "None" => new ConstExpr(tok.Line, null),
                    _ => new NameExpr(tok.Line, tok.Text),
                };
            case TokenKind.String:
            {
                Next();
                var s = (string)tok.Value!;
                while (Cur.Kind == TokenKind.String) s += (string)Next().Value!; // adjacent literals join
                return new ConstExpr(tok.Line, s);
            }
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return new ConstExpr(tok.Line, tok.Value);
            case TokenKind.Operator when tok.Text == "(":
            {
                Next();
                var e = ParseTuple(explicitParens: true);
                Expect(TokenKind.Operator, ")");
                return e;
            }
            case TokenKind.Operator when tok.Text == "[":
            {
                Next();
                var items = new List<Expr>();
                while (!Cur.Is("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.Is("]")) break;
                    items.Add(ParseExpression());
                }
                Expect(TokenKind.Operator, "]");
                return new ListExpr(tok.Line, items);
            }
            case TokenKind.Operator when tok.Text == "{":
            {
                Next();
                var items = new List<(Expr, Expr)>();
                while (!Cur.Is("}"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.Is("}")) break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    items.Add((key, ParseExpression()));
                }
                Expect(TokenKind.Operator, "}");
                return new DictExpr(tok.Line, items);
            }
            default:
                throw Fail(tok.Kind == TokenKind.Eof ? "unexpected end of template" : $"unexpected {tok}");
        }
    }

    Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (Cur.Is(".") || Cur.Is("[")) node = ParseSubscript(node);
            else if (Cur.Is("(")) node = new CallExpr(Cur.Line, node, ParseCallArgs());
            else return node;
        }
    }

    Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Cur.Is("|")) node = ParseFilter(node)!;
            else if (Cur.IsName("is")) node = ParseTest(node);
            else if (Cur.Is("(")) node = new CallExpr(Cur.Line, node, ParseCallArgs());
            else return node;
        }
    }

    Expr ParseSubscript(Expr node)
    {
        var tok = Next();
        if (tok.Text == ".")
        {
            var attr = Next();
            if (attr.Kind == TokenKind.Name) return new GetAttrExpr(tok.Line, node, attr.Text);
            if (attr.Kind != TokenKind.Integer) throw Fail("expected name or number", attr.Line);
            return new GetItemExpr(tok.Line, node, new ConstExpr(attr.Line, attr.Value));
        }
        var args = new List<Expr>();
        while (!Cur.Is("]"))
        {
            if (args.Count > 0) Expect(TokenKind.Operator, ",");
            args.Add(ParseSubscribed());
        }
        Expect(TokenKind.Operator, "]");
        if (args.Count == 0) throw Fail("expected subscript expression", tok.Line);
        return new GetItemExpr(tok.Line, node, args.Count == 1 ? args[0] : new TupleExpr(tok.Line, args));
    }

    Expr ParseSubscribed()
    {
        int line = Cur.Line;
        Expr? start = null;
        if (!SkipOp(":"))
        {
            var e = ParseExpression();
            if (!SkipOp(":")) return e;
            start = e;
        }
        Expr? stop = null, step = null;
        if (!Cur.Is(":") && !Cur.Is("]") && !Cur.Is(",")) stop = ParseExpression();
        if (SkipOp(":") && !Cur.Is("]") && !Cur.Is(",")) step = ParseExpression();
        return new SliceExpr(line, start, stop, step);
    }

    CallArgs ParseCallArgs()
    {
        var open = Expect(TokenKind.Operator, "(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        Expr? dynArgs = null, dynKwargs = null;
        bool needComma = false;
        void Ensure(bool ok)
        {
            if (!ok) throw Fail("invalid syntax for function call expression", open.Line);
        }
        while (!Cur.Is(")"))
        {
            if (needComma)
            {
                Expect(TokenKind.Operator, ",");
                if (Cur.Is(")")) break;
            }
            if (SkipOp("*")) { Ensure(dynArgs == null && dynKwargs == null); dynArgs = ParseExpression(); }
            else if (SkipOp("**")) { Ensure(dynKwargs == null); dynKwargs = ParseExpression(); }
            else if (Cur.Kind == TokenKind.Name && Look.Is("="))
            {
                Ensure(dynKwargs == null);
                var key = Next().Text;
                Next();
                kwargs.Add((key, ParseExpression()));
            }
            else
            {
                Ensure(dynArgs == null && dynKwargs == null && kwargs.Count == 0);
                args.Add(ParseExpression());
            }
            needComma = true;
        }
        Expect(TokenKind.Operator, ")");
        return new CallArgs(args, kwargs, dynArgs, dynKwargs);
    }

    Expr? ParseFilter(Expr? node, bool startInline = false)
    {
        while (Cur.Is("|") || startInline)
        {
            if (!startInline) Next();
            var tok = Expect(TokenKind.Name);
            var name = tok.Text;
            while (SkipOp(".")) name += "." + Expect(TokenKind.Name).Text;
            var args = Cur.Is("(") ? ParseCallArgs() : CallArgs.None;
            node = new FilterExpr(tok.Line, node, name, args);
            startInline = false;
        }
        return node;
    }

    Expr ParseTest(Expr node)
    {
        var isTok = Next();
        bool negated = SkipName("not");
        var name = Expect(TokenKind.Name).Text;
        while (SkipOp(".")) name += "." + Expect(TokenKind.Name).Text;
        CallArgs args;
        if (Cur.Is("(")) args = ParseCallArgs();
        else if ((Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || Cur.Is("[") || Cur.Is("{"))
                 && !Cur.IsName("else") && !Cur.IsName("or") && !Cur.IsName("and"))
        {
            if (Cur.IsName("is")) throw Fail("You cannot chain multiple tests with is");
            args = new CallArgs(new() { ParsePostfix(ParsePrimary()) }, new(), null, null);
        }
        else args = CallArgs.None;
        Expr test = new TestExpr(isTok.Line, node, name, args);
        return negated ? new UnaryExpr(isTok.Line, "not", test) : test;
    }
}
