using System.Text.RegularExpressions;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>
/// Checkpoints that Hugging Face's hub library has downloaded (transformers, `huggingface-cli
/// download`, `hf download`), found where it keeps them, so `--model Qwen/Qwen2-VL-2B-Instruct`
/// loads the copy a user already has. The cache's layout: a repo's folder
/// `models--{owner}--{name}` holds `refs/{branch}` (a commit hash) and `snapshots/{commit}/` (the
/// repo's files, usually links into `blobs/`).
/// </summary>
public static partial class HubCache
{
    /// <summary>A repo id, optionally at a revision (a branch, a tag or a commit): `owner/name` or `owner/name@rev`.</summary>
    [GeneratedRegex(@"^(?<repo>[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*)(@(?<rev>[A-Za-z0-9][A-Za-z0-9_.\-/]*))?$")]
    private static partial Regex RepoId();

    /// <summary>Whether <paramref name="text"/> reads as a Hub repo id; the revision is "main" unless it names one.</summary>
    public static bool TryParse(string text, out string repo, out string revision)
    {
        var m = RepoId().Match(text);
        repo = m.Success ? m.Groups["repo"].Value : "";
        revision = m.Success && m.Groups["rev"].Success ? m.Groups["rev"].Value : "main";
        return m.Success && !text.Contains("..") && !revision.EndsWith('/');
    }

    static string? Set(string? v) => string.IsNullOrEmpty(v) ? null : v;

    /// <summary>The hub library's own folder (its cache and its saved token): HF_HOME, else XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.</summary>
    public static string Home(Func<string, string?> env) => Set(env("HF_HOME")) ?? Path.Combine(
        Set(env("XDG_CACHE_HOME")) ?? Path.Combine(Set(env("HOME")) ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "huggingface");

    /// <summary>The cache's folder as the hub library picks it: HF_HUB_CACHE, else <see cref="Home"/>/hub.</summary>
    public static string Root(Func<string, string?> env) =>
        Set(env("HF_HUB_CACHE")) ?? Set(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(Home(env), "hub");

    /// <summary>A model repo's folder in the cache: models--{owner}--{name}.</summary>
    public static string RepoFolder(string root, string repo) => Path.Combine(root, "models--" + repo.Replace("/", "--"));

    /// <summary>The snapshot folder of <paramref name="repo"/> at <paramref name="revision"/> under <paramref name="root"/>, or why there is none.</summary>
    public static (string? Folder, string? Missing) Find(string root, string repo, string revision)
    {
        var repoDir = RepoFolder(root, repo);
        if (!Directory.Exists(repoDir)) return (null, $"not in the Hugging Face cache ({root})");
        string commit = revision;
        if (!IsCommit(revision))
        {
            var refFile = Path.Combine(repoDir, "refs", revision);
            if (!File.Exists(refFile)) return (null, $"in the Hugging Face cache ({repoDir}) but not at revision '{revision}'");
            commit = File.ReadAllText(refFile).Trim();
            if (!IsCommit(commit)) return (null, $"its cache ref {refFile} does not hold a commit hash");
        }
        var snapshot = Path.Combine(repoDir, "snapshots", commit);
        if (!File.Exists(Path.Combine(snapshot, "config.json")))
            return (null, $"its cached snapshot {snapshot} has no config.json (a download that did not finish, or only some files fetched)");
        return (snapshot, null);
    }

    /// <summary>
    /// A name for the model in <paramref name="folder"/>: its repo id (`owner/name`) when it is a
    /// cached snapshot, whose own folder name is a commit hash; else the folder's name.
    /// </summary>
    public static string ModelName(string folder)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var snapshots = Path.GetDirectoryName(full);
        var repoDir = snapshots is null ? null : Path.GetDirectoryName(snapshots);
        if (IsCommit(Path.GetFileName(full)) && Path.GetFileName(snapshots) == "snapshots" && repoDir is not null
            && Path.GetFileName(repoDir) is { } name && name.StartsWith("models--") && name.Split("--") is [_, var owner, var repo])
            return $"{owner}/{repo}";
        return Path.GetFileName(full);
    }

    /// <summary>A snapshot in the cache: its repo, commit, the refs that name it, its folder, and whether it is whole (has config.json).</summary>
    public sealed record Snapshot(string Repo, string Commit, IReadOnlyList<string> Refs, string Folder, bool Complete)
    {
        /// <summary>What `--model` takes for it: the bare id at main, else id@ref, else id@commit.</summary>
        public string ModelArgument => Refs.Contains("main") ? Repo : $"{Repo}@{Refs.FirstOrDefault() ?? Commit}";
    }

    /// <summary>Every model snapshot under <paramref name="root"/> (none if there is no cache), by repo.</summary>
    public static IReadOnlyList<Snapshot> List(string root)
    {
        var list = new List<Snapshot>();
        if (!Directory.Exists(root)) return list;
        foreach (var repoDir in Directory.GetDirectories(root, "models--*").Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(repoDir).Split("--") is not [_, var owner, var name]) continue;
            var refsDir = Path.Combine(repoDir, "refs");
            var refs = Directory.Exists(refsDir)
                ? Directory.GetFiles(refsDir, "*", SearchOption.AllDirectories).Select(f => (Name: Path.GetRelativePath(refsDir, f), Commit: ReadRef(f))).ToList()
                : [];
            var snapshots = Path.Combine(repoDir, "snapshots");
            if (!Directory.Exists(snapshots)) continue;
            foreach (var folder in Directory.GetDirectories(snapshots).Order(StringComparer.Ordinal))
            {
                var commit = Path.GetFileName(folder);
                list.Add(new Snapshot($"{owner}/{name}", commit, refs.Where(r => r.Commit == commit).Select(r => r.Name).Order(StringComparer.Ordinal).ToList(),
                    folder, File.Exists(Path.Combine(folder, "config.json"))));
            }
        }
        return list;
    }

    static string? ReadRef(string file)
    {
        try { return File.ReadAllText(file).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    internal static bool IsCommit(string s) => s.Length == 40 && s.All(Uri.IsHexDigit);
}
