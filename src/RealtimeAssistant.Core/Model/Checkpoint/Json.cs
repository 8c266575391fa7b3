using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// Typed reads of checkpoint JSON (config.json and friends): a missing key is null, a key of the
/// wrong type is a one-line error naming the file and key (a checkpoint is untrusted input).
/// </summary>
public static class Json
{
    public static string? Str(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw new UserError($"{source}: {key} must be a string, got {Short(other)}"),
    };

    public static bool? Bool(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var other => throw new UserError($"{source}: {key} must be true or false, got {Short(other)}"),
    };

    public static int? Int(JsonNode n, string key, string source)
    {
        switch (n[key])
        {
            case null: return null;
            case JsonValue v when v.GetValueKind() == JsonValueKind.Null: return null;
            case JsonValue v when v.TryGetValue<int>(out var i): return i;
            case JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue: return (int)d;
            case var other: throw new UserError($"{source}: {key} must be a whole number, got {Short(other)}");
        }
    }

    public static double? Dbl(JsonNode n, string key, string source) => n[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
        JsonValue v when v.TryGetValue<double>(out var d) && double.IsFinite(d) => d,
        var other => throw new UserError($"{source}: {key} must be a number, got {Short(other)}"),
    };

    static string Short(JsonNode? n)
    {
        var s = n?.ToJsonString() ?? "null";
        return s.Length > 40 ? s[..40] + "…" : s;
    }
}
