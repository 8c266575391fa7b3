namespace RealtimeAssistant.Model.Chat;

// The template tree. Every node keeps its line for error messages.

abstract record Node(int Line);

abstract record Expr(int Line) : Node(Line);
sealed record ConstExpr(int Line, object? Value) : Expr(Line);
sealed record NameExpr(int Line, string Name) : Expr(Line);
sealed record TupleExpr(int Line, List<Expr> Items) : Expr(Line);
sealed record ListExpr(int Line, List<Expr> Items) : Expr(Line);
sealed record DictExpr(int Line, List<(Expr Key, Expr Value)> Items) : Expr(Line);
sealed record GetAttrExpr(int Line, Expr Target, string Name) : Expr(Line);
sealed record GetItemExpr(int Line, Expr Target, Expr Key) : Expr(Line);
sealed record SliceExpr(int Line, Expr? Start, Expr? Stop, Expr? Step) : Expr(Line);
sealed record CallArgs(List<Expr> Args, List<(string Name, Expr Value)> Kwargs, Expr? DynArgs, Expr? DynKwargs)
{
    public static readonly CallArgs None = new(new(), new(), null, null);
}
sealed record CallExpr(int Line, Expr Target, CallArgs Args) : Expr(Line);
/// <summary>A filter; <see cref="Value"/> is null in a filter block or set block, where the body is the input.</summary>
sealed record FilterExpr(int Line, Expr? Value, string Name, CallArgs Args) : Expr(Line);
sealed record TestExpr(int Line, Expr Value, string Name, CallArgs Args) : Expr(Line);
sealed record UnaryExpr(int Line, string Op, Expr Operand) : Expr(Line);
sealed record BinaryExpr(int Line, string Op, Expr Left, Expr Right) : Expr(Line);
sealed record ConcatExpr(int Line, List<Expr> Items) : Expr(Line);
sealed record CompareExpr(int Line, Expr First, List<(string Op, Expr Operand)> Rest) : Expr(Line);
sealed record CondExpr(int Line, Expr Test, Expr Then, Expr? Else) : Expr(Line);

abstract record Target(int Line) : Node(Line);
sealed record NameTarget(int Line, string Name) : Target(Line);
sealed record TupleTarget(int Line, List<Target> Items) : Target(Line);
sealed record NamespaceTarget(int Line, string Namespace, string Attribute) : Target(Line);

abstract record Stmt(int Line) : Node(Line);
sealed record DataStmt(int Line, string Text) : Stmt(Line);
sealed record OutputStmt(int Line, Expr Value) : Stmt(Line);
sealed record IfStmt(int Line, List<(Expr Test, List<Stmt> Body)> Branches, List<Stmt> Else) : Stmt(Line);
sealed record ForStmt(int Line, Target Target, Expr Iterable, Expr? Filter, List<Stmt> Body, List<Stmt> Else) : Stmt(Line);
sealed record SetStmt(int Line, Target Target, Expr Value) : Stmt(Line);
sealed record SetBlockStmt(int Line, Target Target, Expr? Filter, List<Stmt> Body) : Stmt(Line);
sealed record MacroStmt(int Line, string Name, List<(string Name, Expr? Default)> Params, List<Stmt> Body, bool TakesVarargs, bool TakesKwargs, bool TakesCaller) : Stmt(Line);
/// <summary>{% call [(params)] macro(args) %}body{% endcall %}: the macro is called with the body as 'caller'.</summary>
sealed record CallBlockStmt(int Line, CallExpr Call, MacroStmt Caller) : Stmt(Line);
sealed record FilterBlockStmt(int Line, Expr Filter, List<Stmt> Body) : Stmt(Line);
sealed record WithStmt(int Line, List<(Target Target, Expr Value)> Assignments, List<Stmt> Body) : Stmt(Line);
/// <summary>A block rendered in place: Hugging Face's {% generation %} (it only marks assistant text).</summary>
sealed record BlockStmt(int Line, List<Stmt> Body) : Stmt(Line);
sealed record BreakStmt(int Line) : Stmt(Line);
sealed record ContinueStmt(int Line) : Stmt(Line);
