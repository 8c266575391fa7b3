using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Tests.Fuzz;

/// <summary>
/// How much to fuzz: 2,000 inputs per parser by default (the CI run), RA_FUZZ_LONG=1 for 50,000,
/// or RA_FUZZ_ITERATIONS=N. RA_FUZZ_SEED=S changes the seed (default 19): an input is fully
/// determined by (seed, parser, index), so any failure is reproduced by its seed and index.
/// </summary>
public static class FuzzSettings
{
    public static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("RA_FUZZ_ITERATIONS"), out var n) && n > 0 ? n
        : Environment.GetEnvironmentVariable("RA_FUZZ_LONG") is "1" or "true" ? 50_000 : 2_000;

    public static int Seed => int.TryParse(Environment.GetEnvironmentVariable("RA_FUZZ_SEED"), out var s) ? s : 19;

    /// <summary>The longest one input may take before it counts as a hang (generous: CI shares 2 cores).</summary>
    public static readonly TimeSpan PerInput = TimeSpan.FromSeconds(5);
}

/// <summary>Mutations of real files: bit flips, interesting bytes, truncation, chunk edits, and on JSON, dropped and retyped keys.</summary>
public sealed class Mutator(Random rng)
{
    public Random Rng => rng;

    static readonly byte[] InterestingBytes = [0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xFE, (byte)'"', (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)',', (byte)':', (byte)'\\', (byte)'\n', (byte)'-', (byte)'9', (byte)'e'];

    public byte[] Bytes(byte[] input)
    {
        var b = input.ToList();
        int ops = 1 + rng.Next(3);
        for (int op = 0; op < ops; op++)
        {
            if (b.Count == 0) { b.Add((byte)rng.Next(256)); continue; }
            switch (rng.Next(6))
            {
                case 0: // flip bits
                    for (int i = 1 + rng.Next(8); i > 0; i--) { int at = rng.Next(b.Count); b[at] ^= (byte)(1 << rng.Next(8)); }
                    break;
                case 1: // interesting bytes
                    for (int i = 1 + rng.Next(4); i > 0; i--) b[rng.Next(b.Count)] = InterestingBytes[rng.Next(InterestingBytes.Length)];
                    break;
                case 2: // truncate
                    b = b.Take(rng.Next(b.Count + 1)).ToList();
                    break;
                case 3: // delete a chunk
                {
                    int at = rng.Next(b.Count), len = Math.Min(b.Count - at, 1 + rng.Next(64));
                    b.RemoveRange(at, len);
                    break;
                }
                case 4: // duplicate a chunk
                {
                    int at = rng.Next(b.Count), len = Math.Min(b.Count - at, 1 + rng.Next(64));
                    b.InsertRange(rng.Next(b.Count), b.GetRange(at, len));
                    break;
                }
                default: // insert random bytes
                {
                    var r = new byte[1 + rng.Next(16)];
                    rng.NextBytes(r);
                    b.InsertRange(rng.Next(b.Count + 1), r);
                    break;
                }
            }
        }
        return b.ToArray();
    }

    static readonly string[] InterestingStrings =
    [
        "", " ", "BPE", "WordLevel", "ByteLevel", "Metaspace", "Split", "Sequence", "TemplateProcessing", "Replace", "Prepend", "WhitespaceSplit",
        "F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "llava", "llama", "qwen2", "clip_vision_model", "siglip_vision_model", "full", "default",
        "(", "[", "\\", "(?<", "*", "a{99999}", "<image>", "<s>", "</s>", "../../../etc/passwd", "/etc/passwd", "model.safetensors", ".",
        "\u2581", "\uFFFD", "é", new string('a', 2000), "00:00:01,000 --> 00:00:02,000", "WEBVTT", "-->",
    ];

    static readonly JsonNode?[] InterestingNumbers =
    [
        0, -1, 1, 2, 3, 7, 255, 256, int.MaxValue, int.MinValue, long.MaxValue, long.MinValue, 1.5, -0.5, 1e308, -1e308, 1e-320,
        4294967296L, 9007199254740993L, JsonNode.Parse("9223372036854775808"), JsonNode.Parse("18446744073709551616"), JsonNode.Parse("1e400"),
    ];

    /// <summary>A structural mutation of a JSON document: a key dropped, a value retyped or swapped, a subtree duplicated or nested deep.</summary>
    public JsonNode? Json(JsonNode? root)
    {
        if (root is null) return InterestingNumbers[rng.Next(InterestingNumbers.Length)]?.DeepClone();
        root = root.DeepClone();
        int ops = 1 + rng.Next(3);
        for (int op = 0; op < ops; op++)
        {
            var nodes = new List<JsonNode>();
            void Collect(JsonNode? n)
            {
                if (n is null || nodes.Count > 5000) return;
                nodes.Add(n);
                if (n is JsonObject o) foreach (var (_, c) in o) Collect(c);
                else if (n is JsonArray a) foreach (var c in a) Collect(c);
            }
            Collect(root);
            if (nodes.Count == 0) break; // the whole document was replaced by null
            var target = nodes[rng.Next(nodes.Count)];
            var parent = target.Parent;
            if (parent is null) { if (rng.Next(4) == 0) root = Replacement(target, nodes); continue; }
            switch (rng.Next(8))
            {
                case 0: // drop the key / element
                    Remove(parent, target);
                    break;
                case 1: // duplicate into the parent
                    if (parent is JsonArray pa && pa.Count < 10_000) pa.Add(target.DeepClone());
                    else if (parent is JsonObject po) po[$"extra{rng.Next(100)}"] = target.DeepClone();
                    break;
                default: // replace: retyped, an interesting value, another node, or nested deep
                    Replace(parent, target, Replacement(target, nodes));
                    break;
            }
        }
        return root;
    }

    JsonNode? Replacement(JsonNode target, List<JsonNode> nodes) => rng.Next(7) switch
    {
        0 => null,
        1 => InterestingNumbers[rng.Next(InterestingNumbers.Length)]?.DeepClone(),
        2 => InterestingStrings[rng.Next(InterestingStrings.Length)],
        3 => rng.Next(2) == 0,
        4 => target switch // retyped, keeping the content
        {
            JsonObject o => new JsonArray(o.Select(kv => kv.Value?.DeepClone()).ToArray()),
            JsonArray a => new JsonObject(a.Select((v, i) => KeyValuePair.Create($"{i}", v?.DeepClone()))),
            JsonValue v => v.TryGetValue<string>(out var s) ? (double.TryParse(s, out var d) ? d : s.Length) : (JsonNode)v.ToJsonString(),
            _ => null,
        },
        5 => Nest(rng.Next(2) == 0 ? 20 : 300),
        _ => nodes[rng.Next(nodes.Count)].DeepClone(),
    };

    static JsonNode Nest(int depth)
    {
        JsonNode n = 1;
        for (int i = 0; i < depth; i++) n = new JsonArray(n);
        return n;
    }

    static void Remove(JsonNode parent, JsonNode child)
    {
        if (parent is JsonObject o) o.Remove(o.First(kv => ReferenceEquals(kv.Value, child)).Key);
        else if (parent is JsonArray a) a.Remove(child);
    }

    static void Replace(JsonNode parent, JsonNode child, JsonNode? with)
    {
        if (parent is JsonObject o) o[o.First(kv => ReferenceEquals(kv.Value, child)).Key] = with;
        else if (parent is JsonArray a) a[a.IndexOf(child)] = with;
    }

    /// <summary>A JSON file's bytes mutated: half the time structurally, then sometimes byte-wise too.</summary>
    public byte[] JsonFile(byte[] original)
    {
        byte[] result = original;
        if (rng.Next(2) == 0)
        {
            JsonNode? parsed;
            try { parsed = JsonNode.Parse(original); } catch (System.Text.Json.JsonException) { parsed = null; }
            result = Encoding.UTF8.GetBytes(Json(parsed)?.ToJsonString() ?? "null");
            if (rng.Next(3) == 0) result = Bytes(result);
        }
        else result = Bytes(result);
        return result;
    }

    /// <summary>A safetensors file mutated: its header JSON, its length prefix (lies included), or its bytes.</summary>
    public byte[] SafeTensors(byte[] original)
    {
        var headerLen = BinaryPrimitives.ReadInt64LittleEndian(original);
        var header = original.AsSpan(8, (int)headerLen).ToArray();
        var data = original.AsSpan(8 + (int)headerLen).ToArray();
        switch (rng.Next(4))
        {
            case 0: // the header's structure; the length prefix told the truth or not
            {
                var json = Encoding.UTF8.GetBytes(Json(JsonNode.Parse(header))?.ToJsonString() ?? "null");
                long claimed = rng.Next(3) == 0 ? LyingLength(json.Length, original.Length) : json.Length;
                return Assemble(claimed, json, data);
            }
            case 1: // only the length prefix lies
                return Assemble(LyingLength(header.Length, original.Length), header, data);
            case 2: // bytes of the header region (keeps the data)
            {
                var h = Bytes(header);
                return Assemble(rng.Next(2) == 0 ? h.Length : header.Length, h, data);
            }
            default: // bytes anywhere, truncation included
                return Bytes(original);
        }
    }

    long LyingLength(long truth, long fileLength) => rng.Next(10) switch
    {
        0 => 0,
        1 => -1,
        2 => long.MaxValue,            // 2^63 - 1
        3 => long.MinValue,            // 2^63 as unsigned
        4 => truth + 1 + rng.Next(16),
        5 => Math.Max(1, truth - 1 - rng.Next(16)),
        6 => fileLength,
        7 => fileLength - 8,
        8 => 1L << rng.Next(63),
        _ => rng.NextInt64(),
    };

    static byte[] Assemble(long claimed, byte[] header, byte[] data)
    {
        var result = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteInt64LittleEndian(result, claimed);
        header.CopyTo(result, 8);
        data.CopyTo(result, 8 + header.Length);
        return result;
    }
}

/// <summary>
/// Runs a loader on mutated inputs. Each input must load, or throw a <see cref="UserError"/> that
/// names the file; any other exception, a hang past <see cref="FuzzSettings.PerInput"/>, or managed
/// allocation out of proportion to the file's size fails the test, with the seed and index that
/// reproduce it and a copy of the input.
/// </summary>
public static class FuzzRunner
{
    public sealed record Stats(int Inputs, int Loaded, int Refused, double MaxAllocPerByte, TimeSpan Elapsed);

    /// <param name="make">Writes input <c>i</c> (from its own seeded mutator) into the folder; returns the path the error must name.</param>
    /// <param name="load">Loads from the folder.</param>
    /// <param name="allocBudget">Managed bytes one input may allocate, given the size of what was written.</param>
    public static Stats Run(string parser, Func<Mutator, string, (string NamedFile, long Bytes)> make, Action<string> load,
        ITestOutputHelper log, Func<long, long>? allocBudget = null)
    {
        allocBudget ??= size => 64 * size + (16 << 20);
        int seed = FuzzSettings.Seed, n = FuzzSettings.Iterations;
        var root = Path.Combine(Path.GetTempPath(), "ra-fuzz", $"{parser}-{Guid.NewGuid():N}"[..(parser.Length + 9)]);
        var failures = new List<string>();
        int loaded = 0, refused = 0;
        double maxRatio = 0;
        var sw = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < n && failures.Count < 5; i++)
            {
                var dir = Path.Combine(root, "in");
                Directory.CreateDirectory(dir);
                foreach (var f in Directory.GetFiles(dir)) File.Delete(f);
                var mutator = new Mutator(new Random(InputSeed(seed, parser, i)));
                var (named, bytes) = make(mutator, dir);
                Exception? error = null;
                long allocated = 0;
                var run = Task.Run(() =>
                {
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    try { load(dir); }
                    catch (Exception e) { error = e; }
                    allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                });
                string? why = null;
                if (!run.Wait(FuzzSettings.PerInput)) why = $"no answer within {FuzzSettings.PerInput.TotalSeconds} s (a hang)";
                else if (error is UserError ue && !ue.Message.Contains(Path.GetFileName(named))) why = $"UserError does not name {Path.GetFileName(named)}: {ue.Message}";
                else if (error is not null and not UserError) why = $"{error.GetType().Name}: {error.Message}\n{error.StackTrace}";
                else if (allocated > allocBudget(bytes)) why = $"allocated {allocated:N0} bytes for a {bytes:N0}-byte input";
                if (error is null) loaded++; else refused++;
                maxRatio = Math.Max(maxRatio, (double)allocated / Math.Max(1, bytes));
                if (why is null) continue;
                var keep = Path.Combine(root, $"failure-{i}");
                CopyDir(dir, keep);
                failures.Add($"input {i} (RA_FUZZ_SEED={seed}; kept in {keep}): {why}");
                if (!run.IsCompleted) break; // a hung loader still holds its thread: stop here
            }
        }
        finally
        {
            if (failures.Count == 0) try { Directory.Delete(root, true); } catch (IOException) { }
        }
        var stats = new Stats(loaded + refused, loaded, refused, maxRatio, sw.Elapsed);
        log.WriteLine($"{parser}: {stats.Inputs} inputs (seed {seed}) in {stats.Elapsed.TotalSeconds:0.0} s: {loaded} loaded, {refused} refused with a UserError; " +
                      $"most managed allocation {maxRatio:0.0} bytes per input byte");
        Assert.True(failures.Count == 0, $"{parser}: {failures.Count} bad input(s):\n" + string.Join("\n", failures));
        return stats;
    }

    /// <summary>A stable seed per (seed, parser, index): string.GetHashCode differs between processes.</summary>
    static int InputSeed(int seed, string parser, int i)
    {
        uint h = 2166136261;
        foreach (var c in parser) h = (h ^ c) * 16777619;
        return (int)(h ^ (uint)(seed * 1_000_003) ^ (uint)(i * 7919));
    }

    static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)), true);
    }
}
