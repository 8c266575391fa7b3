using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// Fetches a checkpoint from the Hugging Face Hub into the hub library's cache, in its layout
/// (<see cref="HubCache"/>: blobs named by their ETag, a snapshot of links into them, refs/REV
/// naming the commit), so transformers and `ra` share one copy. Only what a model folder needs
/// is fetched: the top-level JSON, safetensors, Jinja and text files (no .bin, ONNX or GGUF).
/// HF_ENDPOINT and HF_TOKEN (or HF_HOME's token file) are read as the hub library reads them.
/// </summary>
public sealed class HubDownload(Func<string, string?> env, Action<string> report, HttpMessageHandler? handler = null)
{
    readonly HttpClient _http = Client(handler, redirects: true, env);
    readonly HttpClient _head = Client(handler, redirects: false, env);

    static HttpClient Client(HttpMessageHandler? handler, bool redirects, Func<string, string?> env)
    {
        var http = handler is null
            ? new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = redirects, ConnectTimeout = TimeSpan.FromSeconds(20) })
            : new HttpClient(handler, disposeHandler: false);
        http.Timeout = Timeout.InfiniteTimeSpan; // a shard takes minutes; a stalled read is caught by the read timeout below
        http.DefaultRequestHeaders.UserAgent.ParseAdd("realtime-assistant/1.0");
        if (Token(env) is { } token) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return http;
    }

    static string? Token(Func<string, string?> env)
    {
        if (env("HF_TOKEN") is { Length: > 0 } t) return t.Trim();
        var file = Path.Combine(HubCache.Home(env), "token");
        return File.Exists(file) && File.ReadAllText(file).Trim() is { Length: > 0 } saved ? saved : null;
    }

    string Endpoint => (env("HF_ENDPOINT") is { Length: > 0 } e ? e : "https://huggingface.co").TrimEnd('/');

    /// <summary>Whether a repo file belongs in a model folder.</summary>
    public static bool Wanted(string file) =>
        !file.Contains('/') && Path.GetExtension(file).ToLowerInvariant() is ".json" or ".safetensors" or ".jinja" or ".txt";

    /// <summary>Downloads <paramref name="repo"/> at <paramref name="revision"/> under <paramref name="root"/>; the snapshot folder.</summary>
    public async Task<string> Fetch(string root, string repo, string revision, CancellationToken ct = default)
    {
        try { return await FetchInto(root, repo, revision, ct); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"cannot write {repo} into the Hugging Face cache at {root} ({e.Message}); set HF_HUB_CACHE to a folder with room, or download it elsewhere and pass its folder");
        }
    }

    async Task<string> FetchInto(string root, string repo, string revision, CancellationToken ct)
    {
        var info = await Json($"{Endpoint}/api/models/{repo}/revision/{Uri.EscapeDataString(revision)}", repo, revision, ct);
        var commit = Text(info, "sha") is { } sha && HubCache.IsCommit(sha) ? sha
            : throw new UserError($"the Hub's answer for {repo}@{revision} has no commit hash");
        var files = ((info as JsonObject)?["siblings"] as JsonArray ?? []).Select(s => Text(s, "rfilename")).OfType<string>().Where(Wanted).Distinct().ToList();
        if (!files.Contains("config.json")) throw new UserError($"{repo}@{revision} on the Hub has no config.json: not a model checkpoint");
        var repoDir = HubCache.RepoFolder(root, repo);
        var snapshot = Path.Combine(repoDir, "snapshots", commit);
        Directory.CreateDirectory(Path.Combine(repoDir, "blobs"));
        Directory.CreateDirectory(snapshot);
        report($"downloading {repo}@{revision} ({commit[..8]}, {files.Count} files) into {repoDir}");
        // config.json last: a snapshot with one is complete (HubCache.Find).
        foreach (var file in files.Where(f => f != "config.json").Append("config.json"))
            await FetchFile(repoDir, snapshot, repo, commit, file, ct);
        if (revision != commit)
        {
            var refFile = Path.Combine(repoDir, "refs", revision);
            Directory.CreateDirectory(Path.GetDirectoryName(refFile)!);
            File.WriteAllText(refFile, commit);
        }
        return snapshot;
    }

    async Task FetchFile(string repoDir, string snapshot, string repo, string commit, string file, CancellationToken ct)
    {
        var link = Path.Combine(snapshot, file);
        if (File.Exists(link)) return; // fetched by an earlier run
        var url = $"{Endpoint}/{repo}/resolve/{commit}/{Uri.EscapeDataString(file)}";
        // The Hub names a file's blob in its ETag, or for a large (LFS) file in X-Linked-Etag on the redirect to its storage.
        using var head = await Head(url, repo, file, ct);
        var etag = Header(head, "X-Linked-Etag") ?? head.Headers.ETag?.Tag ?? throw new UserError($"the Hub gave no ETag for {repo}/{file}");
        etag = etag.Replace("W/", "").Trim('"');
        if (etag.Length == 0 || etag.IndexOfAny(['/', '\\']) >= 0 || etag.Contains("..")) throw new UserError($"the Hub gave a malformed ETag for {repo}/{file}");
        long? size = long.TryParse(Header(head, "X-Linked-Size"), out var linked) ? linked : head.Content.Headers.ContentLength;
        var blob = Path.Combine(repoDir, "blobs", etag);
        // One writer per blob, across processes and the hub library (its lock file, flock'd), so two
        // runs fetching one checkpoint take turns on a blob rather than clobber its .incomplete.
        using (await BlobLock(Path.Combine(Path.GetDirectoryName(repoDir)!, ".locks", Path.GetFileName(repoDir), etag + ".lock"), file, ct))
            if (!File.Exists(blob)) await FetchBlob(blob, url, repo, file, size, ct);
                File.Delete(link); // a link left dangling by an earlier run, if any
        File.CreateSymbolicLink(link, Path.Combine("..", "..", "blobs", etag));
    }

    /// <summary>
    /// HEAD of a file's resolve URL, following the Hub's relative redirects (a renamed repo answers
    /// 307 to its new name) but not the absolute one to storage, whose answer is the blob itself:
    /// the ETag the hub library names the blob by is on the Hub's own answer, as it reads it.
    /// </summary>
    async Task<HttpResponseMessage> Head(string url, string repo, string file, CancellationToken ct)
    {
        for (int hops = 0; ; hops++)
        {
            var head = await Send(_head, new HttpRequestMessage(HttpMethod.Head, url), repo, file, ct);
            if ((int)head.StatusCode is < 300 or >= 400 || head.Headers.Location is not { IsAbsoluteUri: false } moved || hops == 5) return head;
            head.Dispose();
            url = new Uri(new Uri(url), moved).ToString();
        }
    }

    /// <summary>Fetches one blob into its .incomplete file, resuming from what an earlier run left there (an HTTP range), then renames it into place.</summary>
    async Task FetchBlob(string blob, string url, string repo, string file, long? size, CancellationToken ct)
    {
        var partial = blob + ".incomplete";
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (size is { } whole && have >= whole)
        {
            if (have == whole) { File.Move(partial, blob, overwrite: true); return; } // whole, stopped before its rename
            have = 0;
        }
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
        using var get = await Send(_http, request, repo, file, ct);
        // A server that ignores the range sends the whole file: start over.
        bool resumed = have > 0 && get.StatusCode == HttpStatusCode.PartialContent && get.Content.Headers.ContentRange?.From == have;
        if (!resumed) have = 0;
        else report($"  {file}: resuming at {have / 1e6:N1} MB");
        await using (var source = await get.Content.ReadAsStreamAsync(ct))
        await using (var target = new FileStream(partial, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write))
            await Copy(source, target, file, have, size ?? get.Content.Headers.ContentLength, ct);
        if (size is { } expected && new FileInfo(partial).Length != expected)
            throw new UserError($"{repo}/{file}: the download ended at {new FileInfo(partial).Length:N0} of {expected:N0} bytes; run the command again to resume it");
        File.Move(partial, blob, overwrite: true);
    }

    /// <summary>
    /// Holds the blob's lock file exclusively (an flock, as the hub library's filelock takes it),
    /// waiting while another process holds it and saying so every half minute.
    /// </summary>
    /// <summary>A lock held elsewhere: .NET gives the errno of the failed flock (EWOULDBLOCK: 11 on Linux, 35 on macOS), or Windows' sharing violation.</summary>
    static bool HeldElsewhere(IOException e) => e.HResult is 11 or 35 or unchecked((int)0x80070020);

    async Task<IDisposable> BlobLock(string path, string file, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var waited = Stopwatch.StartNew();
        var said = TimeSpan.Zero;
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException e) when (HeldElsewhere(e))
            {
                if (waited.Elapsed >= said)
                {
                    report($"  {file}: waiting for another process that is downloading it ({path})");
                    said = waited.Elapsed + TimeSpan.FromSeconds(30);
                }
                await Task.Delay(250, ct);
            }
        }
    }

    async Task Copy(Stream source, Stream target, string file, long done, long? size, CancellationToken ct)
    {
        var buffer = new byte[1 << 20];
        var lastReport = Stopwatch.StartNew();
        report($"  {file}{(size is { } s ? $" ({s / 1e6:N1} MB)" : "")}");
        while (true)
        {
            // A read that stalls for a minute is a dead connection, not a slow one.
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            stall.CancelAfter(TimeSpan.FromMinutes(1));
            int n;
            try { n = await source.ReadAsync(buffer, stall.Token); }
            catch (Exception e) when (e is IOException or HttpRequestException || (e is OperationCanceledException && !ct.IsCancellationRequested))
            {
                throw new UserError($"{file}: the download broke off after {done:N0} bytes ({e.Message}); run the command again to resume it");
            }
            if (n == 0) break;
            await target.WriteAsync(buffer.AsMemory(0, n), ct);
            done += n;
            if (lastReport.Elapsed > TimeSpan.FromSeconds(5) && size is { } total)
            {
                report($"  {file}: {done / 1e6:N0} of {total / 1e6:N0} MB");
                lastReport.Restart();
            }
        }
    }

    async Task<HttpResponseMessage> Send(HttpClient http, HttpRequestMessage request, string repo, string what, CancellationToken ct)
    {
        HttpResponseMessage response;
        try { response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct); }
        catch (HttpRequestException e) { throw new UserError($"cannot reach the Hugging Face Hub at {Endpoint} ({e.Message}); set HF_ENDPOINT for a mirror, or download {repo} elsewhere and pass its folder"); }
        if (response.IsSuccessStatusCode || (int)response.StatusCode is >= 300 and < 400) return response;
        var status = response.StatusCode;
        response.Dispose();
        throw new UserError(status switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => $"the Hub refused {repo} ({(int)status}): a gated or private repo needs a token with access (HF_TOKEN, or `huggingface-cli login`)",
            HttpStatusCode.NotFound => $"the Hub has no {what} in {repo} (404): check the id and the revision",
            _ => $"the Hub answered {(int)status} for {repo}/{what}",
        });
    }

    async Task<JsonNode> Json(string url, string repo, string revision, CancellationToken ct)
    {
        using var response = await Send(_http, new HttpRequestMessage(HttpMethod.Get, url), repo, $"revision '{revision}'", ct);
        // A repo's answer is kilobytes (a file list); one past 16 MB is no Hub's.
        const int Limit = 16 << 20;
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var bytes = new MemoryStream();
        var chunk = new byte[81920];
        for (int n; (n = await body.ReadAsync(chunk, ct)) > 0;)
        {
            bytes.Write(chunk, 0, n);
            if (bytes.Length > Limit) throw new UserError($"the Hub's answer for {repo}@{revision} runs past {Limit >> 20} MB");
        }
        var text = System.Text.Encoding.UTF8.GetString(bytes.GetBuffer(), 0, (int)bytes.Length);
        try { return JsonNode.Parse(text, documentOptions: new System.Text.Json.JsonDocumentOptions { MaxDepth = 64, AllowDuplicateProperties = false }) ?? throw new UserError($"the Hub's answer for {repo} is empty"); }
        catch (System.Text.Json.JsonException) { throw new UserError($"the Hub's answer for {repo}@{revision} is not JSON"); }
    }

    /// <summary>A string member of a JSON object, or null whatever else the node is.</summary>
    static string? Text(JsonNode? node, string key) =>
        node is JsonObject o && o[key] is JsonValue v && v.TryGetValue<string>(out var text) ? text : null;

    static string? Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) || r.Content.Headers.TryGetValues(name, out v) ? v.FirstOrDefault() : null;
}
