using System.Text.Encodings.Web;
using System.Text.Json;

namespace RealtimeAssistant.Server;

/// <summary>The server's JSON: plain UTF-8 text in strings (responses are application/json, never HTML).</summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Serialize(object value) => JsonSerializer.Serialize(value, Options);
    public static byte[] SerializeToUtf8Bytes(object value) => JsonSerializer.SerializeToUtf8Bytes(value, Options);
}
