using System.Collections;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Chat;

/// <summary>
/// A Jinja template rendered as Hugging Face's apply_chat_template renders chat templates: an
/// immutable sandboxed environment with trim_blocks and lstrip_blocks, no trailing newline kept,
/// loop controls, the {% generation %} tag, raise_exception, strftime_now and HF's tojson.
/// Any error in the template, or raised by it, is a <see cref="UserError"/> naming the source and line.
/// </summary>
public sealed class JinjaTemplate
{
    readonly List<Stmt> _body;

    /// <summary>Where the template came from, used in error messages.</summary>
    public string Name { get; }

    JinjaTemplate(string name, List<Stmt> body)
    {
        Name = name;
        _body = body;
    }

    public static JinjaTemplate Parse(string source, string name = "template")
    {
        try
        {
            return new JinjaTemplate(name, JinjaParser.Parse(source));
        }
        catch (JinjaError e) { throw new UserError($"{name}, line {e.Line}: {e.Message}"); }
        catch (InsufficientExecutionStackException) { throw new UserError($"{name}: template is nested too deeply"); }
    }

    /// <summary>
    /// Renders with the given variables (strings, numbers, bools, null, lists, dictionaries and
    /// System.Text.Json nodes are accepted). <paramref name="clock"/> feeds strftime_now.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? clock = null)
    {
        var ev = new Evaluator { Clock = clock ?? (() => DateTime.Now) };
        var globals = new Scope(null);
        foreach (var (k, v) in Builtins.Globals(ev.Clock)) globals.Set(k, v);
        foreach (var (k, v) in variables) globals.Set(k, ToValue(v));
        var output = new StringBuilder();
        try
        {
            ev.Run(_body, new Scope(globals), output);
        }
        catch (JinjaError e) { throw new UserError($"{Name}, line {(e.Line > 0 ? e.Line : ev.Line)}: {e.Message}"); }
        catch (InsufficientExecutionStackException) { throw new UserError($"{Name}, line {ev.Line}: maximum recursion depth exceeded"); }
        return output.ToString();
    }

    /// <summary>A .NET value as a template value.</summary>
    internal static object? ToValue(object? v) => v switch
    {
        null or string or bool or long or double or PyDict or PyTuple or List<object?> or Namespace or PyCallable => v,
        int or short or byte or sbyte or uint or ushort => Convert.ToInt64(v),
        float or decimal => Convert.ToDouble(v),
        JsonNode n => FromJson(n),
        JsonElement e => FromJson(JsonSerializer.SerializeToNode(e)),
        IDictionary d => ToDict(d),
        IEnumerable e => e.Cast<object?>().Select(ToValue).ToList(),
        ITuple t => new PyTuple(Enumerable.Range(0, t.Length).Select(i => ToValue(t[i])).ToArray()),
        _ => throw new ArgumentException($"a {v.GetType().Name} cannot be passed to a template"),
    };

    static PyDict ToDict(IDictionary d)
    {
        var dict = new PyDict();
        foreach (DictionaryEntry kv in d) dict[ToValue(kv.Key)] = ToValue(kv.Value);
        return dict;
    }

    /// <summary>JSON as Python's json.loads reads it: integers stay integers, numbers with a point or exponent are floats.</summary>
    internal static object? FromJson(JsonNode? node)
    {
        switch (node)
        {
            case null: return null;
            case JsonObject o:
            {
                var dict = new PyDict();
                foreach (var (k, v) in o) dict[k] = FromJson(v);
                return dict;
            }
            case JsonArray a: return a.Select(FromJson).ToList();
            case JsonValue v:
                return v.GetValueKind() switch
                {
                    JsonValueKind.String => v.GetValue<string>(),
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Number => v.TryGetValue<long>(out var l) && !v.ToJsonString().AsSpan().ContainsAny(".eE") ? (object)l : v.GetValue<double>(),
                    _ => null,
                };
        }
        return null;
    }
}
