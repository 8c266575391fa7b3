using System.Text;
using System.Text.Json;

namespace RealtimeAssistant.Output;

/// <summary>The captions.jsonl line format, both ways.</summary>
public static class CaptionJsonl
{
    static readonly JsonWriterOptions Compact = new() { Indented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly HashSet<string> Known = ["t_start", "t_end", "text", "latency_ms", "kept_tokens", "frame"];

    public static string Line(CaptionEntry e)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Compact))
        {
            w.WriteStartObject();
            w.WriteNumber("t_start", Math.Round(e.Start.TotalSeconds, 3));
            w.WriteNumber("t_end", Math.Round(e.End.TotalSeconds, 3));
            w.WriteString("text", e.Text);
            if (e.LatencyMs is { } l) w.WriteNumber("latency_ms", Math.Round(l, 2)); else w.WriteNull("latency_ms");
            if (e.KeptTokens is { } k) w.WriteNumber("kept_tokens", k); else w.WriteNull("kept_tokens");
            if (e.Frame is { } f) w.WriteNumber("frame", f); else w.WriteNull("frame");
            foreach (var (key, value) in e.Extra ?? new Dictionary<string, object?>())
            {
                if (Known.Contains(key)) continue; // never let an extra shadow a standard field
                w.WritePropertyName(key);
                JsonSerializer.Serialize(w, value, value?.GetType() ?? typeof(object));
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Parses one line; extra fields come back as <see cref="JsonElement"/> values.</summary>
    public static CaptionEntry Parse(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var o = doc.RootElement;
        if (o.ValueKind != JsonValueKind.Object) throw new FormatException("not a JSON object");
        double? Num(string name) => o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
        // Seconds into the video: finite, ≥ 0 and within what a TimeSpan holds (about 29,000 years).
        TimeSpan Seconds(string name) => Num(name) is { } s
            ? s is >= 0 and < 9e11 ? TimeSpan.FromSeconds(s) : throw new FormatException($"{name} {s} is not a time in seconds")
            : throw new FormatException($"missing {name}");
        var extra = new Dictionary<string, object?>();
        var seen = new HashSet<string>();
        foreach (var p in o.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw new FormatException($"key {p.Name} appears twice");
            if (!Known.Contains(p.Name)) extra[p.Name] = p.Value.Clone();
        }
        return new CaptionEntry(
            Seconds("t_start"),
            Seconds("t_end"),
            o.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : throw new FormatException("missing text"),
            Num("latency_ms"),
            Num("kept_tokens") is { } k ? k is >= 0 and <= int.MaxValue ? (int)k : throw new FormatException($"kept_tokens {k} is not a count") : null,
            Num("frame") is { } f ? f is >= 0 and < 9e18 ? (long)f : throw new FormatException($"frame {f} is not a frame index") : null,
            extra.Count > 0 ? extra : null);
    }

    /// <summary>
    /// Reads a captions.jsonl. A last line cut off mid-write (the run was killed) is skipped;
    /// a bad line anywhere else is an error naming the line.
    /// </summary>
    public static IReadOnlyList<CaptionEntry> Read(string path)
    {
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        var entries = new List<CaptionEntry>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0) continue;
            try { entries.Add(Parse(lines[i])); }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                var lastLine = i == lines.Length - 1; // no newline after it: the write never finished
                if (lastLine) break;
                throw new FormatException($"{path} line {i + 1}: {e.Message}", e);
            }
        }
        return entries;
    }
}
