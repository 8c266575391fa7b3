using System.Net;
using System.Net.Sockets;
using OpenCvSharp;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// Fetches the http(s) image and video URLs of a chat request (<see cref="ImageUrlPart"/>,
/// <see cref="VideoPart"/>) as `ra serve --image-urls` allows, and turns videos into frames: under <see cref="ImageUrlPolicy.Public"/> every connection, redirects
/// included, is checked at connect time against the addresses it resolved to, so a name that
/// resolves to loopback or the LAN is refused however it is reached. Each fetch has a deadline
/// and a byte limit; every failure is a 400 naming the part.
/// </summary>
public sealed class RemoteImages : IDisposable
{
    readonly ImageLimits _limits;
    readonly HttpClient _http;

    public RemoteImages(ImageLimits limits)
    {
        _limits = limits;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = true,
            MaxAutomaticRedirections = 3,
            ConnectTimeout = limits.FetchTimeout,
            UseCookies = false,
            UseProxy = false, // a proxy would connect on our behalf, past the address check
        };
        if (limits.RemoteUrls == ImageUrlPolicy.Public) handler.ConnectCallback = ConnectToPublicAddress;
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("realtime-assistant/1.0");
    }

    public static bool IsRemote(string url) =>
        url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase);

    /// <summary>The parser's part for an http(s) image URL, or the 400 that says why it is not taken.</summary>
    public static ImageUrlPart Part(string url, ImageUrlPolicy policy, string param)
    {
        if (policy == ImageUrlPolicy.Off)
            throw ApiError.BadRequest("remote image URLs are not fetched by this server (it was started without --image-urls): send the image inline as a data: URI (data:image/png;base64,... or data:image/jpeg;base64,...)",
                param, "invalid_image_url");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Host.Length == 0)
            throw ApiError.BadRequest("image_url is not a valid http(s) URL", param, "invalid_image_url");
        if (uri.UserInfo.Length > 0) throw ApiError.BadRequest("image_url must not carry a user name or password", param, "invalid_image_url");
        return new ImageUrlPart(uri, param);
    }

    /// <summary>
    /// The request with every remote image fetched and decoded, and every video (inline or
    /// fetched) turned into its frames; disposes it (and what was decoded) on failure.
    /// </summary>
    public async Task<ChatRequest> FetchAll(ChatRequest request, CancellationToken ct)
    {
        var pending = request.Messages.SelectMany(m => m.Content).Where(c => c is ImageUrlPart or VideoPart).ToList();
        if (pending.Count == 0) return request;
        var work = pending.Select(p => p switch
        {
            ImageUrlPart image => Image(image, ct),
            VideoPart video => Video(video, ct),
            _ => throw new InvalidOperationException(),
        }).ToList();
        try
        {
            await Task.WhenAll(work);
            var decoded = new Dictionary<ContentPart, List<Mat>>(ReferenceEqualityComparer.Instance);
            foreach (var (part, done) in pending.Zip(work)) decoded[part] = done.Result;
            return request with
            {
                Messages = request.Messages.Select(m => m with
                {
                    Content = m.Content.SelectMany(c => decoded.TryGetValue(c, out var frames) ? frames.Select(f => (ContentPart)new ImagePart(f)) : [c]).ToList(),
                }).ToList(),
            };
        }
        catch
        {
            foreach (var w in work) if (w.IsCompletedSuccessfully) foreach (var m in w.Result) m.Dispose();
            request.Dispose();
            throw;
        }
    }

    async Task<List<Mat>> Image(ImageUrlPart part, CancellationToken ct)
    {
        var file = await Fetch(part.Url, "image", part.Param, ct);
        return [DataUriImage.FromFile(file, _limits.MaxPixels, part.Param)];
    }

    async Task<List<Mat>> Video(VideoPart part, CancellationToken ct)
    {
        var file = part.File ?? await Fetch(part.Url!, "video", part.Param, ct);
        // Decoding is the CPU's work: off the request's thread, and bounded, since a small file can hold a long clip.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_limits.VideoReadTimeout);
        try { return await Task.Run(() => VideoFrames.Sample(file, _limits.VideoFrames, _limits.MaxPixels, part.Param, deadline.Token), deadline.Token); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw ApiError.BadRequest($"the video could not be read within {_limits.VideoReadTimeout.TotalSeconds:0.#} s (a clip that long is too long here)", part.Param, "invalid_video");
        }
    }

    async Task<byte[]> Fetch(Uri url, string what, string param, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_limits.FetchTimeout);
        var where = Shown(url);
        var code = what == "video" ? "invalid_video_url" : "invalid_image_url";
        ApiError TooLarge() => ApiError.BadRequest($"the {what} at {where} is over this server's limit of {_limits.MaxFetchBytes:N0} bytes", param, $"{what}_too_large");
        try
        {
            using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            if (!response.IsSuccessStatusCode)
                throw ApiError.BadRequest($"the {what} at {where} could not be fetched: the server answered {(int)response.StatusCode}", param, code);
            if (response.Content.Headers.ContentLength > _limits.MaxFetchBytes) throw TooLarge();
            await using var body = await response.Content.ReadAsStreamAsync(deadline.Token);
            var bytes = new MemoryStream();
            var chunk = new byte[81920];
            for (int n; (n = await body.ReadAsync(chunk, deadline.Token)) > 0;)
            {
                bytes.Write(chunk, 0, n);
                if (bytes.Length > _limits.MaxFetchBytes) throw TooLarge();
            }
            return bytes.ToArray();
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw ApiError.BadRequest($"the {what} at {where} could not be fetched within {_limits.FetchTimeout.TotalSeconds:0.#} s", param, code);
        }
        catch (HttpRequestException e)
        {
            throw ApiError.BadRequest($"the {what} at {where} could not be fetched: {e.InnerException?.Message ?? e.Message}", param, code);
        }
    }

    /// <summary>The URL as errors show it: scheme, host and path, never the query (it may hold a signature).</summary>
    static string Shown(Uri url)
    {
        var path = url.AbsolutePath.Length > 60 ? url.AbsolutePath[..60] + "…" : url.AbsolutePath;
        return $"{url.Scheme}://{url.Authority}{path}";
    }

    /// <summary>Resolves the host and connects only if every address it has is public.</summary>
    static async ValueTask<Stream> ConnectToPublicAddress(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
        if (addresses.Length == 0) throw new HttpRequestException($"{host} has no address");
        if (addresses.FirstOrDefault(a => !IsPublic(a)) is { } inside)
            throw new HttpRequestException($"{(literal is null ? $"{host} is at {inside}" : host)}, not a public address (--image-urls public fetches from public hosts only; --image-urls any allows every host)");
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, context.DnsEndPoint.Port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether an address is on the public internet: not unspecified, loopback, private (RFC 1918,
    /// unique local), shared (100.64/10), link-local, benchmarking, documentation, multicast or reserved.
    /// </summary>
    public static bool IsPublic(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return !(b[0] is 0 or 10 or 127 or >= 224
                || (b[0] == 100 && b[1] is >= 64 and < 128)
                || (b[0] == 169 && b[1] == 254)
                || (b[0] == 172 && b[1] is >= 16 and < 32)
                || (b[0] == 192 && b[1] == 168)
                || (b[0] == 192 && b[1] == 0 && b[2] is 0 or 2)
                || (b[0] == 198 && b[1] is 18 or 19)
                || (b[0] == 198 && b[1] == 51 && b[2] == 100)
                || (b[0] == 203 && b[1] == 0 && b[2] == 113));
        }
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return false;
        if (address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.IPv6Loopback)) return false;
        var v6 = address.GetAddressBytes();
        if ((v6[0] & 0xFE) == 0xFC) return false;                       // fc00::/7, unique local
        if (v6[0] == 0xFE && (v6[1] & 0xC0) == 0x80) return false;      // fe80::/10, link-local
        if (v6[0] == 0xFF) return false;                                // multicast
        if (v6[0] == 0x20 && v6[1] == 0x01 && v6[2] == 0x0D && v6[3] == 0xB8) return false; // 2001:db8::/32, documentation
        // 64:ff9b::/96 (NAT64) and 2002::/16 (6to4) carry an IPv4 address: judge that one.
        if (v6[0] == 0x00 && v6[1] == 0x64 && v6[2] == 0xFF && v6[3] == 0x9B && v6[4..12].All(x => x == 0)) return IsPublic(new IPAddress(v6[12..16]));
        if (v6[0] == 0x20 && v6[1] == 0x02) return IsPublic(new IPAddress(v6[2..6]));
        return (v6[0] & 0xE0) == 0x20; // 2000::/3, global unicast
    }

    public void Dispose() => _http.Dispose();
}
