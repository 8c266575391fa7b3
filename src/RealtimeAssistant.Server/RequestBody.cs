using Microsoft.AspNetCore.Http;

namespace RealtimeAssistant.Server;

/// <summary>Reads a request body whole, within the server's size limit (413 past it).</summary>
public static class RequestBody
{
    public static async Task<ReadOnlyMemory<byte>> ReadAsync(HttpRequest request, long limit, CancellationToken ct)
    {
        if (request.ContentLength is { } declared && declared > limit) throw TooLarge(declared, limit);
        using var buffer = new MemoryStream();
        var chunk = new byte[64 * 1024];
        int n;
        // Kestrel enforces the same limit (MaxRequestBodySize); counting here covers any server.
        while ((n = await request.Body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + n > limit) throw TooLarge(null, limit);
            buffer.Write(chunk, 0, n);
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    static ApiError TooLarge(long? size, long limit) =>
        new(413, $"the request body is {(size is { } s ? $"{s:N0} bytes" : "larger than the limit")}: this server takes at most {limit:N0} bytes",
            code: "request_too_large");
}
