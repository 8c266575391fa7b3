using System.Text.Json;
using RealtimeAssistant.Streaming;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// A validated POST /v1/streams body:
/// {"source": "demo.mp4" | "rtsp://…" | "http://…" | "0" | "push", "prompt"?, "policy"?, "frame_budget_ms"?,
///  "prune"?, "mode"?, "stride"?, "window"?, "gate"?, "loop"?, "max_tokens"?, "fps"?}.
/// </summary>
public sealed record StreamRequest
{
    public required string Source { get; init; }
    /// <summary>The caption instruction (null: the model's own).</summary>
    public string? Prompt { get; init; }
    public WritePolicy Policy { get; init; } = new(WriteTrigger.WhenFinished);
    /// <summary>null: one stride of the source's frames; 0: no governor.</summary>
    public double? FrameBudgetMs { get; init; }
    public bool Prune { get; init; } = true;
    public string Mode { get; init; } = SessionModes.Gpe;
    public int Stride { get; init; } = 5;
    /// <summary>Frames the session keeps: what a caption or an answer sees (the CLI's --window).</summary>
    public int Window { get; init; } = 2;
    /// <summary>The scene-change gate: the mean colour change a frame needs to be read (<see cref="RealtimeAssistant.Streaming.SceneChangeGate"/>; 0: read every stride frame).</summary>
    public double Gate { get; init; } = 1.0;
    /// <summary>Replay a file when it ends.</summary>
    public bool Loop { get; init; }
    public int MaxTokens { get; init; } = 48;
    /// <summary>A push stream's frame rate as its client will send it (sets the default frame budget).</summary>
    public double? Fps { get; init; }

    static readonly string[] Known = ["source", "prompt", "policy", "frame_budget_ms", "prune", "mode", "stride", "window", "gate", "loop", "max_tokens", "fps"];

    /// <summary>The most frames a stream's session may keep (a real checkpoint's frame is hundreds of positions).</summary>
    public const int MaxWindow = 16;

    public static StreamRequest Parse(ReadOnlyMemory<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) throw ApiError.BadRequest("the request body is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object");
            foreach (var p in root.EnumerateObject())
                if (!Known.Contains(p.Name))
                    throw ApiError.BadRequest($"unknown parameter '{Truncate(p.Name)}' (known: {string.Join(", ", Known)})", Truncate(p.Name), "unknown_parameter");
            try
            {
                var source = String(root, "source") ?? throw ApiError.BadRequest("source is required: a file in the media folder, an rtsp:// or http:// URL, a camera index, or \"push\"", "source");
                if (source.Length > 2048) throw ApiError.BadRequest("source is longer than 2048 characters", "source");
                var prompt = String(root, "prompt");
                if (prompt is not null && (string.IsNullOrWhiteSpace(prompt) || prompt.Length > 1000))
                    throw ApiError.BadRequest("prompt must be 1..1000 characters of text", "prompt");
                var budget = Number(root, "frame_budget_ms");
                if (budget is not null and not (>= 0 and < 1e7)) throw ApiError.BadRequest($"frame_budget_ms must be ≥ 0 (0: no frame budget), got {budget}", "frame_budget_ms");
                var stride = Int(root, "stride") ?? 5;
                if (stride is < 1 or > 1000) throw ApiError.BadRequest($"stride must be 1..1000, got {stride}", "stride");
                var window = Int(root, "window") ?? 2;
                if (window is < 1 or > MaxWindow) throw ApiError.BadRequest($"window must be 1..{MaxWindow} frames, got {window}", "window");
                var gate = Number(root, "gate") ?? 1.0;
                if (gate is not (>= 0 and <= 255)) throw ApiError.BadRequest($"gate must be a colour change in [0, 255] (0: read every stride frame), got {gate}", "gate");
                var maxTokens = Int(root, "max_tokens") ?? 48;
                if (maxTokens is < 1 or > 512) throw ApiError.BadRequest($"max_tokens must be 1..512, got {maxTokens}", "max_tokens");
                var fps = Number(root, "fps");
                if (fps is not null and not (> 0 and <= 240)) throw ApiError.BadRequest($"fps must be in (0, 240], got {fps}", "fps");
                return new StreamRequest
                {
                    Source = source.Trim(), Prompt = prompt?.Trim(),
                    Policy = Parsed("policy", () => WritePolicy.Parse(String(root, "policy") ?? "finished")),
                    FrameBudgetMs = budget, Prune = Bool(root, "prune") ?? true,
                    Mode = Parsed("mode", () => SessionModes.Parse(String(root, "mode"))),
                    Stride = stride, Window = window, Gate = gate, Loop = Bool(root, "loop") ?? false, MaxTokens = maxTokens, Fps = fps,
                };
            }
            catch (InvalidOperationException e) when (e is not ObjectDisposedException)
            {
                throw ApiError.BadRequest($"the request body holds a string that is not valid Unicode text: {e.Message}");
            }
        }
    }

    static T Parsed<T>(string param, Func<T> parse)
    {
        try { return parse(); }
        catch (UserError e) { throw ApiError.BadRequest(e.Message.Replace("--mode", "mode").Replace("write policy", "policy"), param, "invalid_value"); }
    }

    static JsonElement? Get(JsonElement o, string name) => o.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    static string? String(JsonElement o, string name) => Get(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        var v => throw ApiError.BadRequest($"{name} must be a string, not {v.Value.ValueKind.ToString().ToLowerInvariant()}", name),
    };

    static bool? Bool(JsonElement o, string name) => Get(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        var v => throw ApiError.BadRequest($"{name} must be true or false, not {v.Value.ValueKind.ToString().ToLowerInvariant()}", name),
    };

    static double? Number(JsonElement o, string name) => Get(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v when v.TryGetDouble(out var d) && double.IsFinite(d) => d,
        _ => throw ApiError.BadRequest($"{name} must be a number", name),
    };

    static int? Int(JsonElement o, string name) => Get(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out var i) => i,
        _ => throw ApiError.BadRequest($"{name} must be an integer", name),
    };

    static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}

/// <summary>A validated POST /v1/streams/{id}/questions body: {"text": "…"}.</summary>
public static class QuestionRequest
{
    public static string Parse(ReadOnlyMemory<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) throw ApiError.BadRequest("the request body is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 4 }); }
        catch (JsonException e) { throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object: {\"text\": \"your question\"}");
            if (!root.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                throw ApiError.BadRequest("text is required: the question, as a string", "text");
            string text;
            try { text = t.GetString()!.Trim(); }
            catch (InvalidOperationException e) { throw ApiError.BadRequest($"text is not valid Unicode text: {e.Message}", "text"); }
            if (text.Length is 0 or > 1000) throw ApiError.BadRequest("text must be 1..1000 characters", "text");
            if (text.Any(c => char.IsControl(c) && c != ' ')) throw ApiError.BadRequest("text must be one line of text (no control characters)", "text");
            return text;
        }
    }
}
