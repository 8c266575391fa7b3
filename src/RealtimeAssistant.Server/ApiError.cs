using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace RealtimeAssistant.Server;

/// <summary>
/// An error the client caused (or a limit it hit), answered as OpenAI's error JSON:
/// {"error": {"message", "type", "param", "code"}} with the HTTP status.
/// </summary>
public sealed class ApiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public static ApiError BadRequest(string message, string? param = null, string? code = null) => new(400, message, param: param, code: code);

    public byte[] ToJson() => Json(Message, Type, Param, Code);

    public static byte[] Json(string message, string type, string? param, string? code) =>
        Server.Json.SerializeToUtf8Bytes(new { error = new { message, type, param, code } });

    /// <summary>Writes the error as the whole response (the response must not have started).</summary>
    public async Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        response.ContentType = "application/json";
        if (Status == StatusCodes.Status401Unauthorized) response.Headers.WWWAuthenticate = "Bearer";
        await response.Body.WriteAsync(ToJson());
    }
}
