using System.Diagnostics;
using System.Security.Cryptography;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cli.Commands;
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

    /// <summary>Offline (HF_HUB_OFFLINE), each way a Hub id can be missing from the cache says which, in one line.</summary>
    [Fact]
    public void AMissingOrPartialHubId_Offline_IsOneLineSayingWhich()
    {
        var root = CacheWithFixture("hub-cache-missing");
        var env = Env(("HF_HUB_CACHE", root), ("HF_HUB_OFFLINE", "1"), ("HF_ENDPOINT", "http://127.0.0.1:9"));
        string Error(string model) => Assert.Throws<UserError>(() => AppModel.Resolve(model, env)).Message;

        var e = Error("someone/absent-model");
        Assert.Contains("not in the Hugging Face cache", e);
        Assert.Contains("HF_HUB_OFFLINE forbids fetching it", e);
        Assert.Contains("not at revision 'v2'", Error("tiny-org/tiny-qwen2-vl@v2"));

        File.Delete(Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "snapshots", Commit, "config.json"));
        Assert.Contains("has no config.json", Error("tiny-org/tiny-qwen2-vl"));
        File.WriteAllText(Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "refs", "main"), "not-a-commit\n");
        Assert.Contains("does not hold a commit hash", Error("tiny-org/tiny-qwen2-vl"));

        // Not a Hub id (a path, a traversal): the folder error, as before.
        foreach (var notAnId in new[] { "/nonexistent/model", "a/b/c", "../nonexistent-x", "org/name@", "org/..name" })
            Assert.Contains("model folder not found", Error(notAnId));
        Assert.All(Error("/nonexistent/model").Split('\n'), line => Assert.DoesNotContain("Hugging Face", line));
    }

    /// <summary>
    /// `ra models` lists the bundled model and each cached snapshot with what --model takes for it,
    /// and says why one does not run: incomplete, an unsupported model_type, an unreadable config.
    /// </summary>
    [Fact]
    public async Task Models_ListsTheCachedSnapshots_AndWhetherEachRuns()
    {
        var root = CacheWithFixture("hub-models");
        void Snapshot(string repo, string commit, string? config, string? refName = null)
        {
            var dir = Directory.CreateDirectory(Path.Combine(root, "models--" + repo.Replace("/", "--"), "snapshots", commit)).FullName;
            if (config is not null) File.WriteAllText(Path.Combine(dir, "config.json"), config);
            if (refName is not null)
            {
                Directory.CreateDirectory(Path.Combine(root, "models--" + repo.Replace("/", "--"), "refs"));
                File.WriteAllText(Path.Combine(root, "models--" + repo.Replace("/", "--"), "refs", refName), commit);
            }
        }
        var other = new string('b', 40);
        Snapshot("google-bert/bert-base-uncased", other, """{"model_type": "bert"}""", "main");
        Snapshot("tiny-org/half-fetched", other, null, "main");
        Snapshot("tiny-org/broken", other, "{not json", "v1");
        Snapshot("tiny-org/tiny-qwen2-vl", other, null); // an older, partial snapshot beside main's

        var json = Path.Combine(Capture.TestMedia.TempDir("hub-models-out"), "models.json");
        Assert.Equal(0, await ModelsCommand.Create().Parse(["--cache", root, "--json", json]).InvokeAsync());
        var models = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(json))!["models"]!.AsArray()
            .ToDictionary(m => (string)m!["model"]!, m => m!);
        Assert.Equal("yes", (string)models["tiny-org/tiny-qwen2-vl"]!["runs"]!);
        Assert.Equal("qwen2_vl", (string)models["tiny-org/tiny-qwen2-vl"]!["model_type"]!);
        Assert.Equal(new FileInfo(Path.Combine(new HfFixture("qwen2_vl").Dir, "model.safetensors")).Length, (long)models["tiny-org/tiny-qwen2-vl"]!["weights_bytes"]!);
        Assert.StartsWith("no: incomplete", (string)models[$"tiny-org/tiny-qwen2-vl@{other}"]!["runs"]!);
        Assert.Contains("model_type 'bert' is not supported", (string)models["google-bert/bert-base-uncased"]!["runs"]!);
        Assert.StartsWith("no: incomplete", (string)models["tiny-org/half-fetched"]!["runs"]!);
        Assert.StartsWith("no: ", (string)models["tiny-org/broken@v1"]!["runs"]!);
        if (RealtimeAssistant.Cli.Cli.FindRepoPath(AppModel.DemoModelPath) is not null)
            Assert.Equal("yes", (string)models["(bundled demo model)"]!["runs"]!);
        // What it lists is what --model takes.
        Assert.Equal(Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "snapshots", Commit), AppModel.Resolve("tiny-org/tiny-qwen2-vl", Env(("HF_HUB_CACHE", root))));

        Assert.Equal(0, await ModelsCommand.Create().Parse(["--cache", Path.Combine(root, "absent")]).InvokeAsync());
    }

    /// <summary>`ra caption --model owner/name` as a user runs it, with the cache in HF_HUB_CACHE: a cached checkpoint loads through the links, a missing one is fetched first, and both caption as the folder does.</summary>
    [Fact]
    public async Task Caption_WithAHubId_LoadsTheCachedCheckpoint()
    {
        var root = CacheWithFixture("hub-cache-cli");
        async Task<(int Code, string Out, string Err)> Caption(string model, params (string Key, string Value)[] extraEnv)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = ServerTestSupport.RepoRoot };
            foreach (var a in new[] { ServerTestSupport.RaDll, "caption", "--image", Path.Combine(HfFixture.Root, "images", "wide_150x100.png"), "--model", model, "--json" }) psi.ArgumentList.Add(a);
            psi.Environment["HF_HUB_CACHE"] = root;
            psi.Environment["HF_ENDPOINT"] = "http://127.0.0.1:9"; // never the real Hub from a test
            foreach (var (k, v) in extraEnv) psi.Environment[k] = v;
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

        // Not cached, fetched from the Hub (here a loopback one, HF_ENDPOINT) into the same cache, and loaded from there.
        await using var hub = await FakeHub.Start("tiny-org/fetched-qwen2-vl", CheckpointCopy("hub-cli-source"));
        var fetched = await Caption("tiny-org/fetched-qwen2-vl", ("HF_ENDPOINT", hub.Url));
        Assert.True(fetched.Code == 0, fetched.Err);
        Assert.Equal(tokens(fromFolder.Out), tokens(fetched.Out));
        Assert.Contains("downloading tiny-org/fetched-qwen2-vl@main", fetched.Err);
        Assert.True(File.Exists(Path.Combine(root, "models--tiny-org--fetched-qwen2-vl", "snapshots", FakeHub.Commit, "config.json")));

        var missing = await Caption("tiny-org/absent", ("HF_ENDPOINT", hub.Url));
        Assert.Equal(2, missing.Code);
        Assert.Single(missing.Err.Trim().Split('\n'));
        Assert.Contains("(404)", missing.Err);
    }

    /// <summary>The fixture's checkpoint files alone (no expected outputs), as a Hub repo holds them; the folder.</summary>
    static string CheckpointCopy(string name)
    {
        var dir = Capture.TestMedia.TempDir(name);
        foreach (var file in Directory.GetFiles(new HfFixture("qwen2_vl").Dir).Where(f => !Path.GetFileName(f).StartsWith("expected")))
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
        return dir;
    }

    /// <summary>
    /// A Hub id not in the cache is fetched into it in the hub library's layout: refs/main, a
    /// snapshot of links into blobs named by the git hash (small files) or the sha256 (safetensors),
    /// only the files a model folder needs. A second resolve asks the Hub nothing.
    /// </summary>
    [Fact]
    public async Task AHubIdNotCached_IsFetchedInTheHubLibrarysLayout_Once()
    {
        var source = CheckpointCopy("hub-fetch-source");
        await using var hub = await FakeHub.Start("tiny-org/tiny-qwen2-vl", source, "pytorch_model.bin", "onnx/model.onnx", "README.md");
        var root = Capture.TestMedia.TempDir("hub-fetch-cache");
        var env = Env(("HF_HUB_CACHE", root), ("HF_ENDPOINT", hub.Url));
        var snapshot = await Task.Run(() => AppModel.Resolve("tiny-org/tiny-qwen2-vl", env));

        var repoDir = Path.Combine(root, "models--tiny-org--tiny-qwen2-vl");
        Assert.Equal(Path.Combine(repoDir, "snapshots", FakeHub.Commit), snapshot);
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(repoDir, "refs", "main")));
        Assert.Equal(Directory.GetFiles(source).Select(Path.GetFileName).Order(), Directory.GetFiles(snapshot).Select(Path.GetFileName).Order());
        foreach (var file in Directory.GetFiles(source))
        {
            var link = new FileInfo(Path.Combine(snapshot, Path.GetFileName(file)));
            Assert.StartsWith(Path.Combine("..", "..", "blobs"), link.LinkTarget);
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(link.FullName));
        }
        var weights = File.ReadAllBytes(Path.Combine(source, "model.safetensors"));
        Assert.True(File.Exists(Path.Combine(repoDir, "blobs", Convert.ToHexString(SHA256.HashData(weights)).ToLowerInvariant())));
        Assert.Equal(0, hub.Count("pytorch_model.bin") + hub.Count("onnx") + hub.Count("README"));

        // A renamed repo: the Hub answers its old name with relative redirects to the new one; the
        // old name resolves, stored under the name asked for (as the hub library stores it).
        hub.RenamedFrom = "tiny-org/old-qwen2-vl";
        var renamed = await Task.Run(() => AppModel.Resolve("tiny-org/old-qwen2-vl", env));
        Assert.Equal(Path.Combine(root, "models--tiny-org--old-qwen2-vl", "snapshots", FakeHub.Commit), renamed);
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(renamed, "model.safetensors")));

        // `ra models --fetch` fetches without loading (into --cache), then lists what it fetched.
        var listed = Path.Combine(Capture.TestMedia.TempDir("hub-fetch-list"), "models.json");
        var fetchRoot = Capture.TestMedia.TempDir("hub-fetch-only");
        Assert.Equal(0, await ModelsCommand.Create(Env(("HF_ENDPOINT", hub.Url))).Parse(["--cache", fetchRoot, "--fetch", "tiny-org/tiny-qwen2-vl", "--json", listed]).InvokeAsync());
        var row = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(listed))!["models"]!.AsArray().Single(m => (string)m!["model"]! == "tiny-org/tiny-qwen2-vl")!;
        Assert.Equal("yes", (string)row["runs"]!);
        Assert.Equal(2, await ModelsCommand.Create(Env(("HF_ENDPOINT", hub.Url))).Parse(["--cache", fetchRoot, "--fetch", "not an id"]).InvokeAsync());

        int asked = hub.Requests.Values.Sum();
        Assert.Equal(snapshot, AppModel.Resolve("tiny-org/tiny-qwen2-vl", env));
        Assert.Equal(snapshot, AppModel.Resolve($"tiny-org/tiny-qwen2-vl@{FakeHub.Commit}", env));
        Assert.Equal(asked, hub.Requests.Values.Sum());
    }

    /// <summary>
    /// A download that breaks off leaves no snapshot that looks whole, says so in one line, and the
    /// next run fetches only what is missing. A Hub that answers nonsense or nothing is one line too.
    /// </summary>
    [Fact]
    public async Task ABrokenOrBadDownload_IsOneLine_AndTheNextRunFinishesIt()
    {
        var source = CheckpointCopy("hub-break-source");
        await using var hub = await FakeHub.Start("tiny-org/tiny-qwen2-vl", source);
        var root = Capture.TestMedia.TempDir("hub-break-cache");
        var env = Env(("HF_HUB_CACHE", root), ("HF_ENDPOINT", hub.Url));
        string Error(string model, Func<string, string?>? e = null) => Assert.Throws<UserError>(() => AppModel.Resolve(model, e ?? env)).Message;

        hub.BreakOff["model.safetensors"] = 1;
        var broke = Error("tiny-org/tiny-qwen2-vl");
        Assert.Contains("model.safetensors", broke);
        Assert.Contains("run the command again", broke);
        Assert.DoesNotContain('\n', broke);
        var snapshot = Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "snapshots", FakeHub.Commit);
        Assert.False(File.Exists(Path.Combine(snapshot, "config.json")));
        Assert.Equal(2, hub.Count("/tokenizer.json")); // a HEAD and a GET
        var blobs = Path.Combine(root, "models--tiny-org--tiny-qwen2-vl", "blobs");
        long partial = new FileInfo(Directory.GetFiles(blobs, "*.incomplete").Single()).Length;
        Assert.True(partial > 0, "the broken download kept what it had fetched");
        Assert.Equal(snapshot, AppModel.Resolve("tiny-org/tiny-qwen2-vl", env));
        Assert.Equal(2, hub.Count("/tokenizer.json")); // fetched whole the first time: not again
        Assert.Equal(2, hub.Count("/storage/model.safetensors"));
        Assert.Equal([partial], hub.RangeStarts); // the second run asked for the rest only
        var weights = File.ReadAllBytes(Path.Combine(source, "model.safetensors"));
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Empty(Directory.GetFiles(blobs, "*.incomplete"));

        // A mirror that ignores the range sends the whole file again: the resume starts over, not appends.
        var rootWhole = Capture.TestMedia.TempDir("hub-break-norange");
        var envWhole = Env(("HF_HUB_CACHE", rootWhole), ("HF_ENDPOINT", hub.Url));
        hub.IgnoreRanges = true;
        hub.BreakOff["model.safetensors"] = 1;
        Error("tiny-org/tiny-qwen2-vl", envWhole);
        var snapshotWhole = AppModel.Resolve("tiny-org/tiny-qwen2-vl", envWhole);
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(snapshotWhole, "model.safetensors")));
        hub.IgnoreRanges = false;

        // A blob fetched whole but stopped before its rename is taken as it is, without asking storage again.
        var blobsWhole = Path.Combine(rootWhole, "models--tiny-org--tiny-qwen2-vl", "blobs");
        var weightsBlob = Path.Combine(blobsWhole, Convert.ToHexString(SHA256.HashData(weights)).ToLowerInvariant());
        File.Move(weightsBlob, weightsBlob + ".incomplete");
        File.Delete(Path.Combine(snapshotWhole, "model.safetensors"));
        File.Delete(Path.Combine(snapshotWhole, "config.json"));
        int storage = hub.Count("/storage/");
        Assert.Equal(snapshotWhole, AppModel.Resolve("tiny-org/tiny-qwen2-vl", envWhole));
        Assert.Equal(storage, hub.Count("/storage/"));
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(snapshotWhole, "model.safetensors")));

        Assert.Contains("(404)", Error("tiny-org/absent"));
        Assert.Contains("(404)", Error("tiny-org/tiny-qwen2-vl@v9"));
        Assert.Contains("cannot reach the Hugging Face Hub", Error("tiny-org/other", Env(("HF_HUB_CACHE", root), ("HF_ENDPOINT", "http://127.0.0.1:9"))));
        var fresh = Env(("HF_HUB_CACHE", Capture.TestMedia.TempDir("hub-bad-cache")), ("HF_ENDPOINT", hub.Url));
        foreach (var answer in new[] { "not json", "{}", "{\"sha\": \"abc\"}", $"{{\"sha\": \"{FakeHub.Commit}\", \"siblings\": 3}}", $"{{\"sha\": \"{FakeHub.Commit}\", \"siblings\": [{{\"rfilename\": \"tokenizer.json\"}}]}}" })
        {
            hub.RevisionAnswer = answer;
            Assert.DoesNotContain('\n', Error("tiny-org/tiny-qwen2-vl", fresh));
        }
        hub.RevisionAnswer = null;
        var unwritable = Path.Combine(Capture.TestMedia.TempDir("hub-unwritable"), "file-not-folder");
        File.WriteAllText(unwritable, "");
        Assert.Contains("cannot write tiny-org/tiny-qwen2-vl into the Hugging Face cache", Error("tiny-org/tiny-qwen2-vl", Env(("HF_HUB_CACHE", unwritable), ("HF_ENDPOINT", hub.Url))));
        hub.RevisionAnswer = new string(' ', 17 << 20) + "{}";
        Assert.Contains("runs past 16 MB", Error("tiny-org/tiny-qwen2-vl", fresh));
        hub.RevisionAnswer = null;
        hub.SmallFileEtag = "../../escape";
        Assert.Contains("malformed ETag", Error("tiny-org/tiny-qwen2-vl", fresh));
    }

    /// <summary>
    /// Two runs fetching one checkpoint take turns on each blob through the hub library's lock file
    /// (`.locks/models--owner--name/ETAG.lock`, flock'd): the weights are fetched once, and a run
    /// whose blob is locked by another process (here the test, as the hub library would) waits.
    /// </summary>
    [Fact]
    public async Task TwoRunsFetchingOneCheckpoint_TakeTurnsOnEachBlob()
    {
        var source = CheckpointCopy("hub-lock-source");
        await using var hub = await FakeHub.Start("tiny-org/tiny-qwen2-vl", source);
        hub.StorageDelay = TimeSpan.FromMilliseconds(300);
        var root = Capture.TestMedia.TempDir("hub-lock-cache");
        var env = Env(("HF_HUB_CACHE", root), ("HF_ENDPOINT", hub.Url));
        var both = await Task.WhenAll(Task.Run(() => AppModel.Resolve("tiny-org/tiny-qwen2-vl", env)), Task.Run(() => AppModel.Resolve("tiny-org/tiny-qwen2-vl", env)));
        Assert.Equal(both[0], both[1]);
        Assert.Equal(1, hub.Count("/storage/model.safetensors"));
        var weights = File.ReadAllBytes(Path.Combine(source, "model.safetensors"));
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(both[0], "model.safetensors")));

        // Another process holds the weights' lock: the run waits for it, and then fetches.
        hub.StorageDelay = TimeSpan.Zero;
        var root2 = Capture.TestMedia.TempDir("hub-lock-held");
        var lockFile = Path.Combine(root2, ".locks", "models--tiny-org--tiny-qwen2-vl", Convert.ToHexString(SHA256.HashData(weights)).ToLowerInvariant() + ".lock");
        Directory.CreateDirectory(Path.GetDirectoryName(lockFile)!);
        var held = new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        int before = hub.Count("/storage/model.safetensors");
        var waiting = Task.Run(() => AppModel.Resolve("tiny-org/tiny-qwen2-vl", Env(("HF_HUB_CACHE", root2), ("HF_ENDPOINT", hub.Url))));
        await Task.Delay(1500);
        Assert.False(waiting.IsCompleted);
        Assert.Equal(before, hub.Count("/storage/model.safetensors"));
        held.Dispose();
        var snapshot = await waiting.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Equal(before + 1, hub.Count("/storage/model.safetensors"));
    }
}
