using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace RealtimeAssistant.Server.Sse;

/// <summary>
/// One Server-Sent Event (WHATWG HTML, "server-sent events"): optional event type, id and retry,
/// and data (several lines allowed; each goes out as its own data: line).
/// </summary>
public readonly record struct SseEvent(string Data, string? Event = null, string? Id = null, int? RetryMs = null);

/// <summary>
/// Writes an event stream: the chat endpoint's OpenAI chunks (data only) and the live streams'
/// events (with ids, for Last-Event-ID resume). Each event is flushed as it is written.
/// </summary>
public sealed class SseWriter(Stream body)
{
    /// <summary>Sends the event-stream headers and returns a writer on the response body.</summary>
    public static async Task<SseWriter> StartAsync(HttpResponse response, CancellationToken ct)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no"; // a reverse proxy must not hold events back
        response.HttpContext.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ct);
        return new SseWriter(response.Body);
    }

    public async Task WriteAsync(SseEvent e, CancellationToken ct)
    {
        await body.WriteAsync(Format(e), ct);
        await body.FlushAsync(ct);
    }

    public Task WriteDataAsync(string data, CancellationToken ct) => WriteAsync(new SseEvent(data), ct);

    /// <summary>A comment line, which clients ignore: keeps idle connections open through proxies.</summary>
    public async Task WriteCommentAsync(string text, CancellationToken ct)
    {
        CheckField(text, "comment");
        await body.WriteAsync(Encoding.UTF8.GetBytes($": {text}\n\n"), ct);
        await body.FlushAsync(ct);
    }

    public static byte[] Format(SseEvent e)
    {
        var sb = new StringBuilder();
        if (e.Event is { } type) { CheckField(type, "event type"); sb.Append("event: ").Append(type).Append('\n'); }
        if (e.Id is { } id)
        {
            CheckField(id, "id");
            if (id.Contains('\0')) throw new ArgumentException("an SSE id cannot hold NUL (clients would ignore it)");
            sb.Append("id: ").Append(id).Append('\n');
        }
        if (e.RetryMs is { } retry)
        {
            if (retry < 0) throw new ArgumentOutOfRangeException(nameof(e), "retry must be ≥ 0 ms");
            sb.Append("retry: ").Append(retry).Append('\n');
        }
        // A data line ends at CR, LF or CRLF; each line of the payload becomes its own data: field,
        // and the client joins them with LF.
        foreach (var line in e.Data.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n'))
            sb.Append("data: ").Append(line).Append('\n');
        sb.Append('\n');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    static void CheckField(string value, string what)
    {
        if (value.AsSpan().IndexOfAny('\r', '\n') >= 0) throw new ArgumentException($"an SSE {what} cannot hold a line break");
    }
}
