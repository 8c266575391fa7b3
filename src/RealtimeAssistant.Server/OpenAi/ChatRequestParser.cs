using System.Text.Json;
using OpenCvSharp;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>Limits a request's images must keep.</summary>
public sealed record ImageLimits
{
    /// <summary>Pixels in one image (width × height).</summary>
    public long MaxPixels { get; init; } = 4096L * 4096;
    public int MaxImages { get; init; } = 16;
    /// <summary>Which http(s) image URLs the server fetches (off: none, data: URIs only).</summary>
    public ImageUrlPolicy RemoteUrls { get; init; } = ImageUrlPolicy.Off;
    /// <summary>The whole fetch of one remote image, redirects included.</summary>
    public TimeSpan FetchTimeout { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>Bytes in one remote image or video file.</summary>
    public long MaxFetchBytes { get; init; } = 20L * 1024 * 1024;
    /// <summary>Frames a video_url part becomes, spread over the clip (each counts as one of <see cref="MaxImages"/>).</summary>
    public int VideoFrames { get; init; } = 8;
    /// <summary>How long reading one video's frames may take (a long clip is decoded to count its frames).</summary>
    public TimeSpan VideoReadTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Remote image URLs: none; hosts on public addresses only (not loopback, private, link-local, …); or any host.</summary>
public enum ImageUrlPolicy { Off, Public, Any }

/// <summary>
/// The untrusted request body → a validated <see cref="ChatRequest"/>, or an <see cref="ApiError"/>
/// (400) that names the parameter, as OpenAI's API does. Fields this server does not use
/// (presence_penalty, user, tools, …) are ignored; ones whose meaning it cannot honour (n &gt; 1)
/// are refused.
/// </summary>
public static class ChatRequestParser
{
    static readonly string[] Roles = ["system", "developer", "user", "assistant", "tool"];

    public static ChatRequest Parse(ReadOnlyMemory<byte> body, ImageLimits limits)
    {
        // JsonDocument leaves strings unchecked until they are read; refuse bad text up front.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) throw ApiError.BadRequest("the request body is not valid UTF-8");
        try { return ParseDocument(body, limits); }
        catch (InvalidOperationException e) when (e is not ObjectDisposedException)
        {
            // A string escape that is not Unicode (a lone surrogate, \u0000 in a name, …).
            throw ApiError.BadRequest($"the request body holds a string that is not valid Unicode text: {e.Message}");
        }
    }

    static ChatRequest ParseDocument(ReadOnlyMemory<byte> body, ImageLimits limits)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 }); }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"We could not parse the JSON body of your request: {e.Message} "
                + "(The OpenAI API expects a JSON payload; is the Content-Type application/json and the body valid JSON?)");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw ApiError.BadRequest($"the request body must be a JSON object, not {Kind(root)}");

            var model = Required(root, "model", JsonValueKind.String).GetString()!;
            var messages = ParseMessages(Required(root, "messages", JsonValueKind.Array), limits);
            try
            {
                bool stream = OptionalBool(root, "stream") ?? false;
                bool includeUsage = false;
                if (Optional(root, "stream_options") is { } so)
                {
                    if (so.ValueKind != JsonValueKind.Object) throw Invalid("stream_options", "an object", so);
                    if (!stream) throw ApiError.BadRequest("stream_options is only allowed when stream is true", "stream_options");
                    includeUsage = OptionalBool(so, "include_usage", "stream_options.include_usage") ?? false;
                }
                if (OptionalInt(root, "n") is { } n && n != 1)
                    throw ApiError.BadRequest($"n = {n} is not supported: this server returns one choice (n = 1)", "n", "unsupported_value");
                bool logProbs = OptionalBool(root, "logprobs") ?? false;
                int? topLogProbs = OptionalInt(root, "top_logprobs");
                if (topLogProbs is { } top)
                {
                    if (!logProbs) throw ApiError.BadRequest("top_logprobs is only allowed when logprobs is true", "top_logprobs", "invalid_value");
                    if (top is < 0 or > RealtimeAssistant.Model.GenerationOptions.MaxTopLogProbs)
                        throw ApiError.BadRequest($"top_logprobs must be between 0 and {RealtimeAssistant.Model.GenerationOptions.MaxTopLogProbs}, got {top}", "top_logprobs", "invalid_value");
                }

                int? maxTokens = OptionalInt(root, "max_completion_tokens") ?? OptionalInt(root, "max_tokens");
                if (maxTokens is < 1)
                    throw ApiError.BadRequest($"max_tokens must be at least 1, got {maxTokens}", Optional(root, "max_completion_tokens") is null ? "max_tokens" : "max_completion_tokens");

                double temperature = OptionalNumber(root, "temperature") ?? 1.0;
                if (temperature is < 0 or > 2) throw ApiError.BadRequest($"temperature must be between 0 and 2, got {temperature}", "temperature", "invalid_value");
                double topP = OptionalNumber(root, "top_p") ?? 1.0;
                if (topP is < 0 or > 1) throw ApiError.BadRequest($"top_p must be between 0 and 1, got {topP}", "top_p", "invalid_value");

                long? seed = null;
                if (Optional(root, "seed") is { } s)
                {
                    if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt64(out var v)) throw Invalid("seed", "an integer", s);
                    seed = v;
                }

                return new ChatRequest
                {
                    Model = model, Messages = messages, Stream = stream, IncludeUsage = includeUsage, MaxTokens = maxTokens,
                    Temperature = temperature, TopP = topP, Seed = seed, Stop = ParseStop(root),
                    TopLogProbs = logProbs ? topLogProbs ?? 0 : null,
                };
            }
            catch
            {
                foreach (var m in messages) foreach (var img in m.Images) img.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// The URL of an image_url or video_url part: OpenAI's object form {"url": ...}, or a bare
    /// string as some clients send it.
    /// </summary>
    static string MediaUrl(JsonElement part, string key, string at)
    {
        var value = Required(part, key, null, $"{at}.{key}");
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Object => Required(value, "url", JsonValueKind.String, $"{at}.{key}.url").GetString()!,
            _ => throw Invalid($"{at}.{key}", "an object with a url", value),
        };
    }

    static List<ChatMessage> ParseMessages(JsonElement array, ImageLimits limits)
    {
        if (array.GetArrayLength() == 0) throw ApiError.BadRequest("messages must hold at least one message", "messages");
        var messages = new List<ChatMessage>();
        int images = 0;
        try
        {
            int i = 0;
            foreach (var m in array.EnumerateArray())
            {
                var at = $"messages[{i++}]";
                if (m.ValueKind != JsonValueKind.Object) throw Invalid(at, "an object", m);
                var role = Required(m, "role", JsonValueKind.String, $"{at}.role").GetString()!;
                if (!Roles.Contains(role))
                    throw ApiError.BadRequest($"{at}.role '{Truncate(role)}' is not one of {string.Join(", ", Roles)}", $"{at}.role", "invalid_value");
                var parts = new List<ContentPart>();
                messages.Add(new ChatMessage(role, parts)); // added first, so its images are disposed on a later error
                var content = Optional(m, "content");
                if (content is null)
                {
                    if (role != "assistant") throw ApiError.BadRequest($"{at}.content is required for a {role} message", $"{at}.content");
                    continue;
                }
                var c = content.Value;
                if (c.ValueKind == JsonValueKind.String) { parts.Add(new TextPart(c.GetString()!)); continue; }
                if (c.ValueKind != JsonValueKind.Array) throw Invalid($"{at}.content", "a string or an array of content parts", c);
                int j = 0;
                foreach (var p in c.EnumerateArray())
                {
                    var pat = $"{at}.content[{j++}]";
                    if (p.ValueKind != JsonValueKind.Object) throw Invalid(pat, "an object", p);
                    var type = Required(p, "type", JsonValueKind.String, $"{pat}.type").GetString()!;
                    switch (type)
                    {
                        case "text":
                            parts.Add(new TextPart(Required(p, "text", JsonValueKind.String, $"{pat}.text").GetString()!));
                            break;
                        case "image_url":
                            if (role != "user") throw ApiError.BadRequest($"{pat}: image content is only allowed in user messages", pat);
                            if (++images > limits.MaxImages)
                                throw ApiError.BadRequest($"a request may hold at most {limits.MaxImages} images", pat, "too_many_images");
                            var url = MediaUrl(p, "image_url", pat);
                            parts.Add(RemoteImages.IsRemote(url)
                                ? RemoteImages.Part(url, limits.RemoteUrls, $"{pat}.image_url.url")
                                : new ImagePart(DataUriImage.Decode(url, limits.MaxPixels, $"{pat}.image_url.url")));
                            break;
                        case "video_url":
                            if (role != "user") throw ApiError.BadRequest($"{pat}: video content is only allowed in user messages", pat);
                            images += limits.VideoFrames;
                            if (images > limits.MaxImages)
                                throw ApiError.BadRequest($"a request may hold at most {limits.MaxImages} images, and a video is {limits.VideoFrames} of them", pat, "too_many_images");
                            var videoUrl = MediaUrl(p, "video_url", pat);
                            var videoParam = $"{pat}.video_url.url";
                            parts.Add(videoUrl.StartsWith("data:", StringComparison.OrdinalIgnoreCase)
                                ? new VideoPart(VideoFrames.FromDataUri(videoUrl, videoParam), null, videoParam)
                                : RemoteImages.IsRemote(videoUrl)
                                    ? new VideoPart(null, RemoteImages.Part(videoUrl, limits.RemoteUrls, videoParam).Url, videoParam)
                                    : throw ApiError.BadRequest("video_url must be a data: URI (data:video/mp4;base64,...) or, where the server allows it, an http(s) URL", videoParam, "invalid_video_url"));
                            break;
                        default:
                            throw ApiError.BadRequest($"{pat}.type '{Truncate(type)}' is not supported: this server takes text, image_url and video_url parts", $"{pat}.type", "invalid_value");
                    }
                }
            }
            return messages;
        }
        catch
        {
            foreach (var m in messages) foreach (var img in m.Images) img.Dispose();
            throw;
        }
    }

    static IReadOnlyList<string> ParseStop(JsonElement root)
    {
        if (Optional(root, "stop") is not { } stop) return [];
        if (stop.ValueKind == JsonValueKind.String) return Nonempty([stop.GetString()!]);
        if (stop.ValueKind != JsonValueKind.Array) throw Invalid("stop", "a string or an array of strings", stop);
        if (stop.GetArrayLength() > 4) throw ApiError.BadRequest("stop may hold at most 4 sequences", "stop");
        var list = new List<string>();
        foreach (var s in stop.EnumerateArray())
        {
            if (s.ValueKind != JsonValueKind.String) throw Invalid("stop", "a string or an array of strings", stop);
            list.Add(s.GetString()!);
        }
        return Nonempty(list);
    }

    static IReadOnlyList<string> Nonempty(IEnumerable<string> stops) => stops.Where(s => s.Length > 0).Distinct().ToList();

    /// <summary>A member that is present and not null, else null.</summary>
    static JsonElement? Optional(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    static JsonElement Required(JsonElement obj, string name, JsonValueKind? kind, string? param = null)
    {
        param ??= name;
        if (Optional(obj, name) is not { } v) throw ApiError.BadRequest($"you must provide '{param}'", param, "missing_required_parameter");
        if (kind is { } k && v.ValueKind != k) throw Invalid(param, k == JsonValueKind.String ? "a string" : k == JsonValueKind.Array ? "an array" : k.ToString(), v);
        return v;
    }

    static bool? OptionalBool(JsonElement obj, string name, string? param = null) => Optional(obj, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        var v => throw Invalid(param ?? name, "a boolean", v.Value),
    };

    static int? OptionalInt(JsonElement obj, string name)
    {
        if (Optional(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw Invalid(name, "an integer", v);
        if (v.TryGetInt32(out var i)) return i;
        if (v.TryGetInt64(out var l)) return l > 0 ? int.MaxValue : int.MinValue; // out of any range the checks allow
        throw Invalid(name, "an integer", v);
    }

    static double? OptionalNumber(JsonElement obj, string name)
    {
        if (Optional(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d)) throw Invalid(name, "a number", v);
        return d;
    }

    static ApiError Invalid(string param, string expected, JsonElement got) =>
        ApiError.BadRequest($"'{param}' must be {expected}, got {Kind(got)}", param, "invalid_type");

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {Truncate(e.GetRawText())}",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
