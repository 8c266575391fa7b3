using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace RealtimeAssistant.Tests.App;

/// <summary>
/// The Hugging Face Hub's download endpoints as the hub library meets them, on loopback: the
/// revision API (commit and file list), `resolve` with the small files' git ETag, and each
/// safetensors file's 302 to storage with X-Linked-Etag (its sha256) and X-Linked-Size. Serves
/// one repo's files; counts every request by path.
/// </summary>
internal sealed class FakeHub : IAsyncDisposable
{
    public const string Commit = "fedcba9876543210fedcba9876543210fedcba98";
    WebApplication _app = null!;
    public string Url { get; private set; } = "";
    public ConcurrentDictionary<string, int> Requests { get; } = new();
    /// <summary>Storage downloads of this file break off half way this many more times.</summary>
    public ConcurrentDictionary<string, int> BreakOff { get; } = new();
    /// <summary>The start of each ranged storage request (a resumed download), in order.</summary>
    public ConcurrentQueue<long> RangeStarts { get; } = new();
    /// <summary>Storage ignores Range headers and always sends the whole file, as some mirrors do.</summary>
    public bool IgnoreRanges { get; set; }
    /// <summary>How long storage waits before it answers (a slow download).</summary>
    public TimeSpan StorageDelay { get; set; }
    /// <summary>The revision API's answer in place of the real one (a malformed Hub).</summary>
    public string? RevisionAnswer { get; set; }
    /// <summary>An old name of the repo: the Hub answers it with a relative 307 to the repo's name, as for a renamed repo.</summary>
    public string? RenamedFrom { get; set; }
    /// <summary>The ETag the small files are served with in place of their git hash.</summary>
    public string? SmallFileEtag { get; set; }


    public static async Task<FakeHub> Start(string repo, string folder, params string[] extraListed)
    {
        var hub = new FakeHub();
        var files = Directory.GetFiles(folder).ToDictionary(Path.GetFileName, File.ReadAllBytes);
        hub._app = await Tests.Server.LoopbackSite.Start(app =>
        {
            app.Use(async (ctx, next) => { hub.Requests.AddOrUpdate(ctx.Request.Path.Value!, 1, (_, n) => n + 1); await next(); });
            app.Use(async (ctx, next) =>
            {
                var path = ctx.Request.Path.Value!;
                foreach (var prefix in new[] { "/api/models/", "/" })
                    if (hub.RenamedFrom is { } old && path.StartsWith(prefix + old + "/", StringComparison.Ordinal))
                    {
                        ctx.Response.StatusCode = 307;
                        ctx.Response.Headers.Location = prefix + repo + path[(prefix + old).Length..]; // relative, as the Hub sends it
                        return;
                    }
                await next();
            });
            app.MapGet("/api/models/{owner}/{name}/revision/{rev}", (string owner, string name, string rev) =>
            {
                if ($"{owner}/{name}" != repo || (rev != "main" && rev != Commit)) return Results.Json(new { error = "Repository not found" }, statusCode: 404);
                if (hub.RevisionAnswer is { } raw) return Results.Text(raw, "application/json");
                var siblings = new JsonArray(files.Keys.Concat(extraListed).Select(f => (JsonNode)new JsonObject { ["rfilename"] = f }).ToArray());
                return Results.Json(new JsonObject { ["id"] = repo, ["sha"] = Commit, ["siblings"] = siblings });
            });
            app.MapMethods("/{owner}/{name}/resolve/{rev}/{file}", ["GET", "HEAD"], async (HttpContext ctx, string owner, string name, string rev, string file) =>
            {
                if ($"{owner}/{name}" != repo || rev != Commit || !files.TryGetValue(file, out var bytes)) { ctx.Response.StatusCode = 404; return; }
                if (file.EndsWith(".safetensors"))
                {
                    ctx.Response.Headers["X-Linked-Etag"] = $"\"{Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant()}\"";
                    ctx.Response.Headers["X-Linked-Size"] = bytes.Length.ToString();
                    ctx.Response.Redirect($"{ctx.Request.Scheme}://{ctx.Request.Host}/storage/{file}"); // absolute, to storage, as the Hub sends an LFS file
                    return;
                }
                var gitHash = Convert.ToHexString(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {bytes.Length}\0"), .. bytes])).ToLowerInvariant();
                ctx.Response.Headers.ETag = $"\"{hub.SmallFileEtag ?? gitHash}\"";
                ctx.Response.ContentLength = bytes.Length;
                if (ctx.Request.Method == "GET") await ctx.Response.Body.WriteAsync(bytes);
            });
            app.MapGet("/storage/{file}", async (HttpContext ctx, string file) =>
            {
                await Task.Delay(hub.StorageDelay);
                ReadOnlyMemory<byte> bytes = files[file];
                // A resume: "bytes=N-", answered 206 with the rest, as the Hub's storage does.
                if (!hub.IgnoreRanges && ctx.Request.Headers.Range.ToString() is var range && range.StartsWith("bytes=") && range.EndsWith('-')
                    && long.TryParse(range["bytes=".Length..^1], out var from) && from < bytes.Length)
                {
                    hub.RangeStarts.Enqueue(from);
                    ctx.Response.StatusCode = 206;
                    ctx.Response.Headers.ContentRange = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
                    bytes = bytes[(int)from..];
                }
                ctx.Response.ContentLength = bytes.Length;
                if (hub.BreakOff.TryGetValue(file, out var left) && left > 0)
                {
                    hub.BreakOff[file] = left - 1;
                    await ctx.Response.Body.WriteAsync(bytes[..(bytes.Length / 2)]);
                    await ctx.Response.Body.FlushAsync();
                    ctx.Abort();
                    return;
                }
                await ctx.Response.Body.WriteAsync(bytes);
            });
        });
        hub.Url = hub._app.Urls.First();
        return hub;
    }

    public int Count(string pathPart) => Requests.Where(r => r.Key.Contains(pathPart)).Sum(r => r.Value);

    public async ValueTask DisposeAsync() { await _app.StopAsync(); await _app.DisposeAsync(); }
}
