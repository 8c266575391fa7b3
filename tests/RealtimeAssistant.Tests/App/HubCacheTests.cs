using System.Diagnostics;
using System.Security.Cryptography;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Model.Checkpoint;
using RealtimeAssistant.Tests.Model.Families;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.App;

/// <summary>
/// `--model owner/name` finds a checkpoint that Hugging Face's hub library downloaded, in the
/// cache's own layout: refs/main naming a commit, snapshots/COMMIT/ of links into blobs/.
/// </summary>
public class HubCacheTests
{
    const string Commit = "0123456789abcdef0123456789abcdef01234567";

    /// <summary>A hub cache holding the qwen2_vl fixture as `tiny-org/tiny-qwen2-vl` (every file a link to its blob, as the hub library writes them); its root.</summary>
    static string CacheWithFixture(string name)
    {
        var root = Capture.TestMedia.TempDir(name);
        var repo = Path.Combine(root, "models--tiny-org--tiny-qwen2-vl");
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        var snapshot = Directory.CreateDirectory(Path.Combine(repo, "snapshots", Commit)).FullName;
        foreach (var file in Directory.GetFiles(new HfFixture("qwen2_vl").Dir).Where(f => !Path.GetFileName(f).StartsWith("expected")))
        {
            var bytes = File.ReadAllBytes(file);
            var blob = Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();
            var blobPath = Path.Combine(repo, "blobs", blob);
            if (!File.Exists(blobPath)) File.WriteAllBytes(blobPath, bytes);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", blob));
        }
        File.WriteAllText(Path.Combine(repo, "refs", "main"), Commit);
        return root;
    }

    static Func<string, string?> Env(params (string Key, string Value)[] vars) => k => vars.FirstOrDefault(v => v.Key == k).Value;

    [Fact]
    public void AHubId_ResolvesToItsCachedSnapshot_AtMainOrANamedRevision()
    {
        var root = CacheWithFixture("hub-cache");
        var env = Env(("HF_HUB_CACHE", root));
        var snapshot = Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "snapshots", Commit);
        Assert.Equal(snapshot, AppModel.Resolve("tiny-org/tiny-qwen2-vl", env));
        Assert.Equal(snapshot, AppModel.Resolve($"tiny-org/tiny-qwen2-vl@{Commit}", env));
        Assert.Equal("tiny-org/tiny-qwen2-vl", HubCache.ModelName(snapshot));
        Assert.Equal("qwen2_vl", Path.GetFileName(HubCache.ModelName(new HfFixture("qwen2_vl").Dir)));

        // HF_HOME/hub when HF_HUB_CACHE is unset, as the hub library reads it.
        var home = Capture.TestMedia.TempDir("hub-home");
        Directory.Move(root, Path.Combine(home, "hub"));
        Assert.EndsWith(Path.Combine("hub", "models--tiny-org--tiny-qwen2-vl", "snapshots", Commit), AppModel.Resolve("tiny-org/tiny-qwen2-vl", Env(("HF_HOME", home))));
        Assert.Equal(Path.Combine("/x", "huggingface", "hub"), HubCache.Root(Env(("XDG_CACHE_HOME", "/x"))));
        Assert.Equal(Path.Combine("/h", ".cache", "huggingface", "hub"), HubCache.Root(Env(("HOME", "/h"))));
    }

    /// <summary>Each way a Hub id can be missing says which, and how to fetch it, in one line.</summary>
    [Fact]
    public void AMissingOrPartialHubId_IsOneLineSayingHowToFetchIt()
    {
        var root = CacheWithFixture("hub-cache-missing");
        var env = Env(("HF_HUB_CACHE", root));
        string Error(string model) => Assert.Throws<UserError>(() => AppModel.Resolve(model, env)).Message;

        var e = Error("someone/absent-model");
        Assert.Contains("not in the Hugging Face cache", e);
        Assert.Contains("huggingface-cli download someone/absent-model", e);
        Assert.Contains("not at revision 'v2'", Error("tiny-org/tiny-qwen2-vl@v2"));
        Assert.Contains("--revision v2", Error("tiny-org/tiny-qwen2-vl@v2"));

        File.Delete(Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "snapshots", Commit, "config.json"));
        Assert.Contains("has no config.json", Error("tiny-org/tiny-qwen2-vl"));
        File.WriteAllText(Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "refs", "main"), "not-a-commit\n");
        Assert.Contains("does not hold a commit hash", Error("tiny-org/tiny-qwen2-vl"));

        // Not a Hub id (a path, a traversal): the folder error, as before.
        foreach (var notAnId in new[] { "/nonexistent/model", "a/b/c", "../nonexistent-x", "org/name@", "org/..name" })
            Assert.Contains("model folder not found", Error(notAnId));
        Assert.All(Error("/nonexistent/model").Split('\n'), line => Assert.DoesNotContain("Hugging Face", line));
    }

    /// <summary>`ra caption --model owner/name` as a user runs it, with the cache in HF_HUB_CACHE: the checkpoint loads through the links and captions.</summary>
    [Fact]
    public async Task Caption_WithAHubId_LoadsTheCachedCheckpoint()
    {
        var root = CacheWithFixture("hub-cache-cli");
        async Task<(int Code, string Out, string Err)> Caption(string model)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = ServerTestSupport.RepoRoot };
            foreach (var a in new[] { ServerTestSupport.RaDll, "caption", "--image", Path.Combine(HfFixture.Root, "images", "wide_150x100.png"), "--model", model, "--json" }) psi.ArgumentList.Add(a);
            psi.Environment["HF_HUB_CACHE"] = root;
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token);
            return (p.ExitCode, await stdout, await stderr);
        }
        var fromCache = await Caption("tiny-org/tiny-qwen2-vl");
        Assert.True(fromCache.Code == 0, fromCache.Err);
        var fromFolder = await Caption(new HfFixture("qwen2_vl").Dir);
        Assert.True(fromFolder.Code == 0, fromFolder.Err);
        // The last stdout line is --json's: the greedy token ids must be the folder's.
        var tokens = (string stdout) => System.Text.Json.Nodes.JsonNode.Parse(stdout.TrimEnd().Split('\n')[^1])!["tokens"]!.AsArray().Select(t => (int)t!["id"]!).ToArray();
        Assert.NotEmpty(tokens(fromFolder.Out));
        Assert.Equal(tokens(fromFolder.Out), tokens(fromCache.Out));

        var missing = await Caption("tiny-org/absent");
        Assert.Equal(2, missing.Code);
        Assert.Single(missing.Err.Trim().Split('\n'));
        Assert.Contains("huggingface-cli download tiny-org/absent", missing.Err);
    }
}
