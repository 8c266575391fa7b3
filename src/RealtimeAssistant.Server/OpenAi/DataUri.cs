namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// The two halves of a data: URI as the image and video parts read it: its media type, and its
/// base64 payload decoded. Each refusal is a 400 naming the part, in the caller's words and codes.
/// </summary>
static class DataUri
{
    /// <summary>The media type, lower-cased (what precedes the first ';' or ',').</summary>
    public static string MediaType(string url, string what, string param, string code)
    {
        int comma = url.IndexOf(',');
        if (comma < 0) throw ApiError.BadRequest($"the {what}'s data: URI has no ',' before its data", param, code);
        return url[5..comma].Split(';', StringSplitOptions.TrimEntries)[0].ToLowerInvariant();
    }

    /// <summary>The payload's bytes; the URI must say base64 (<paramref name="example"/> shows how).</summary>
    public static ArraySegment<byte> Payload(string url, string what, string example, string param, string urlCode, string dataCode)
    {
        int comma = url.IndexOf(',');
        var header = url[5..comma].Split(';', StringSplitOptions.TrimEntries);
        if (!header.Skip(1).Any(p => p.Equals("base64", StringComparison.OrdinalIgnoreCase)))
            throw ApiError.BadRequest($"the {what}'s data: URI must be base64 ({example})", param, urlCode);
        var data = url.AsSpan(comma + 1);
        var bytes = new byte[data.Length / 4 * 3 + 3];
        if (!Convert.TryFromBase64Chars(data, bytes, out int length))
            throw ApiError.BadRequest($"the {what}'s base64 data is malformed", param, dataCode);
        return new ArraySegment<byte>(bytes, 0, length);
    }
}
