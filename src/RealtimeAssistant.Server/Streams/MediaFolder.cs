using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Server.Streams;

/// <summary>
/// The allow-list folder for file sources. A client's path is taken relative to it (or absolute
/// inside it), every symlink on the way is resolved, and the real path must still be inside the
/// folder and name a regular file: no "../", no link out, no FIFO or device. The stream then opens
/// the real path it checked, not the client's text.
/// </summary>
public sealed class MediaFolder
{
    static readonly string[] VideoExtensions = [".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".ogv", ".flv", ".wmv"];

    /// <summary>The folder's own real path.</summary>
    public string Root { get; }

    public MediaFolder(string folder)
    {
        var real = RealPath(Path.GetFullPath(folder));
        if (real is null || !Directory.Exists(real)) throw new UserError($"the media folder does not exist: {folder}");
        Root = real;
    }

    /// <summary>The real path of a file the client may read, or an <see cref="ApiError"/>: 403 outside the folder, 400 for no such file.</summary>
    public string Resolve(string requested)
    {
        if (string.IsNullOrWhiteSpace(requested) || requested.Contains('\0'))
            throw ApiError.BadRequest("source is empty or not a path", "source", "invalid_source");
        var full = Path.GetFullPath(Path.Combine(Root, requested));
        if (!Inside(full)) throw Outside(requested);
        var real = RealPath(full) ?? throw ApiError.BadRequest($"no such file in the media folder: {Show(requested)}", "source", "source_not_found");
        if (!Inside(real)) throw Outside(requested); // a link that leads out
        if (FileKind.Of(real) != FileKind.Kind.Regular)
            throw ApiError.BadRequest($"{Show(requested)} is not a regular file (a video file in the media folder)", "source", "invalid_source");
        return real;
    }

    static ApiError Outside(string requested) =>
        new(403, $"{Show(requested)} is outside the media folder this server may read from", "permission_error", "source", "path_not_allowed");

    bool Inside(string path) => path == Root || path.StartsWith(Root.EndsWith('/') ? Root : Root + "/", StringComparison.Ordinal);

    /// <summary>The video files a client may open, as paths relative to the folder (links that lead out are left out).</summary>
    public IReadOnlyList<(string Path, long Bytes)> List(int maxDepth = 3, int max = 500)
    {
        var found = new List<(string, long)>();
        var options = new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = maxDepth, IgnoreInaccessible = true, AttributesToSkip = 0 };
        foreach (var path in Directory.EnumerateFiles(Root, "*", options))
        {
            if (!VideoExtensions.Contains(Path.GetExtension(path).ToLowerInvariant())) continue;
            var real = RealPath(path);
            if (real is null || !Inside(real) || FileKind.Of(real) != FileKind.Kind.Regular) continue;
            found.Add((Path.GetRelativePath(Root, path), new FileInfo(real).Length));
            if (found.Count >= max) break;
        }
        return found.OrderBy(f => f.Item1, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// realpath(3) in managed code: walks the path a component at a time, following every link
    /// (at most 40, as Linux does); null when a component does not exist or links loop.
    /// </summary>
    public static string? RealPath(string absolute)
    {
        var pending = new Stack<string>(absolute.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse());
        var current = "/";
        int links = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part == ".") continue;
            if (part == "..") { current = Path.GetDirectoryName(current) ?? "/"; continue; }
            var next = current == "/" ? "/" + part : current + "/" + part;
            var info = new FileInfo(next);
            if (info.LinkTarget is { } target)
            {
                if (++links > 40) return null;
                var resolved = target.StartsWith('/') ? target : (current == "/" ? "/" : current + "/") + target;
                foreach (var c in resolved.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse()) pending.Push(c);
                current = "/";
                continue;
            }
            if (!info.Exists && !Directory.Exists(next)) return null;
            current = next;
        }
        return current;
    }

    static string Show(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
