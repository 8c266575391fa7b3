using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace RealtimeAssistant.Server;

/// <summary>
/// The viewer page at / : plain HTML, CSS and JS (Web/), embedded in the assembly and served as
/// they are; no build step, nothing fetched from elsewhere.
/// </summary>
public static class WebPage
{
    static readonly (string Path, string Resource, string Type)[] Files =
    [
        ("/", "web/index.html", "text/html; charset=utf-8"),
        ("/app.js", "web/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "web/style.css", "text/css; charset=utf-8"),
    ];

    /// <param name="apiKeyRequired">Told to the page (at /page.json), so it asks for the key before it calls the API.</param>
    public static void Map(IEndpointRouteBuilder app, bool apiKeyRequired)
    {
        app.MapGet("/page.json", () => Results.Json(new { api_key_required = apiKeyRequired }));
        foreach (var (path, resource, type) in Files)
        {
            var bytes = Read(resource);
            app.MapGet(path, (HttpContext ctx) =>
            {
                ctx.Response.Headers.CacheControl = "no-cache";
                ctx.Response.Headers["X-Content-Type-Options"] = "nosniff";
                ctx.Response.Headers.ContentSecurityPolicy =
                    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; frame-ancestors 'none'";
                return Results.Bytes(bytes, type);
            });
        }
    }

    static byte[] Read(string resource)
    {
        using var s = typeof(WebPage).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"the page's {resource} is not embedded in {typeof(WebPage).Assembly.GetName().Name}");
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }
}
