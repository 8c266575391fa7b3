using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End, string File)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// Reads safetensors checkpoints: a single file or shards listed by model.safetensors.index.json.
/// The format is an 8-byte little-endian header length, a JSON header, then raw data.
/// Tensors are read one at a time straight into their destination, so loading never holds two
/// copies of the checkpoint in memory.
/// </summary>
public sealed class SafeTensorsReader
{
    readonly Dictionary<string, SafeTensorInfo> _tensors = new(StringComparer.Ordinal);
    readonly Dictionary<string, long> _dataStart = new();

    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;

    /// <summary>Opens a model folder (single or sharded) or one .safetensors file.</summary>
    public static SafeTensorsReader Open(string path)
    {
        var reader = new SafeTensorsReader();
        if (Directory.Exists(path))
        {
            var index = Path.Combine(path, "model.safetensors.index.json");
            var single = Path.Combine(path, "model.safetensors");
            if (File.Exists(index)) reader.AddIndex(index);
            else if (File.Exists(single)) reader.AddFile(single);
            else
            {
                var any = Directory.GetFiles(path, "*.safetensors").OrderBy(f => f, StringComparer.Ordinal).ToArray();
                if (any.Length == 0) throw new UserError($"no safetensors weights in {path} (expected model.safetensors or model.safetensors.index.json)");
                foreach (var f in any) reader.AddFile(f);
            }
        }
        else if (File.Exists(path)) reader.AddFile(path);
        else throw new UserError($"checkpoint not found: {path}");
        return reader;
    }

    void AddIndex(string indexPath)
    {
        var name = Path.GetFileName(indexPath);
        if (JsonFile.Read(indexPath, "shard index") is not JsonObject { } obj || obj["weight_map"] is not JsonObject map) throw new UserError($"{indexPath} has no weight_map object");
        var dir = Path.GetDirectoryName(indexPath)!;
        var files = new List<string>();
        foreach (var (tensor, value) in map)
        {
            // A shard is a file in the model folder: never a path that leads out of it.
            if (value is not JsonValue v || !v.TryGetValue<string>(out var f) || f.Length == 0 || Path.GetFileName(f) != f || f is "." or "..")
                throw new UserError($"{name} maps {tensor} to {value?.ToJsonString() ?? "null"}, not a shard file name in the model folder");
            if (!files.Contains(f)) files.Add(f);
        }
        foreach (var f in files)
        {
            var full = Path.Combine(dir, f);
            if (!File.Exists(full)) throw new UserError($"shard {f} listed in {name} is missing");
            AddFile(full);
        }
        foreach (var (tensor, _) in map)
            if (!_tensors.ContainsKey(tensor))
                throw new UserError($"{name} maps {tensor} to a shard that does not contain it");
    }

    /// <summary>The largest header (or index) we read: the format's reference reader refuses more than 100 MB.</summary>
    const long MaxHeaderBytes = 100_000_000;

    /// <summary>
    /// Reads one file's header. Every number in it is checked against the file before anything is
    /// allocated or read: a header never makes us allocate more than the file holds.
    /// </summary>
    void AddFile(string file)
    {
        using var fs = File.OpenRead(file);
        var length = fs.Length;
        if (length < 8) throw new UserError($"{file} is truncated: {length} bytes, too short for a safetensors header");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        var headerLen = BinaryPrimitives.ReadInt64LittleEndian(lenBytes);
        if (headerLen <= 0 || headerLen > length - 8)
            throw new UserError($"{file} is corrupt: header length {headerLen} runs past the end of the file ({length} bytes)");
        if (headerLen > MaxHeaderBytes) throw new UserError($"{file} is corrupt: header length {headerLen} is implausibly large");
        var header = new byte[headerLen];
        fs.ReadExactly(header);
        UserError Corrupt(string what) => new($"{file} is corrupt: {what}");
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw Corrupt("its header is not valid UTF-8 text");
        JsonNode? root;
        try { root = JsonNode.Parse(header, documentOptions: new JsonDocumentOptions { MaxDepth = 64, AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw Corrupt($"its header is not JSON ({e.Message})"); }
        if (root is not JsonObject entries) throw Corrupt("its header is not a JSON object");
        var dataStart = 8 + headerLen;
        var dataLength = length - dataStart;
        _dataStart[file] = dataStart;
        foreach (var (name, node) in entries)
        {
            if (name == "__metadata__") continue;
            if (node is not JsonObject entry) throw Corrupt($"tensor {name} has no dtype, shape and data_offsets");
            var dtype = entry["dtype"] is JsonValue dv && dv.TryGetValue<string>(out var ds) ? ds : throw Corrupt($"tensor {name} has no dtype");
            var size = DTypeSize(dtype, file, name);
            var shape = Longs(entry["shape"], -1) ?? throw Corrupt($"tensor {name}'s shape is not a list of sizes ≥ 0");
            var offs = Longs(entry["data_offsets"], 2) ?? throw Corrupt($"tensor {name}'s data_offsets are not two byte offsets ≥ 0");
            // Its byte count from the shape, refusing any product past the file's data.
            long expected = size;
            foreach (var d in shape)
                if (d != 0 && expected > dataLength / d) { expected = -1; break; }
                else expected *= d;
            if (expected < 0 || expected > dataLength)
                throw Corrupt($"tensor {name}'s shape [{string.Join(", ", shape)}] needs more bytes than the file's {dataLength} bytes of data");
            if (offs[1] < offs[0] || offs[1] - offs[0] != expected)
                throw Corrupt($"tensor {name} has {offs[1] - offs[0]} bytes, its shape [{string.Join(", ", shape)}] needs {expected}");
            if (offs[1] > dataLength)
                throw new UserError($"{file} is truncated: tensor {name} ends at byte {dataStart + offs[1]} but the file has {length}");
            _tensors[name] = new SafeTensorInfo(name, dtype, shape, offs[0], offs[1], file);
        }
    }

    /// <summary>A JSON list of whole numbers ≥ 0 (of <paramref name="count"/> items unless it is -1), else null.</summary>
    static long[]? Longs(JsonNode? node, int count)
    {
        if (node is not JsonArray a || (count >= 0 && a.Count != count) || a.Count > 64) return null;
        var result = new long[a.Count];
        for (int i = 0; i < a.Count; i++)
            if (a[i] is JsonValue v && v.TryGetValue<long>(out var x) && x >= 0) result[i] = x;
            else return null;
        return result;
    }

    internal static long DTypeSize(string dtype, string file = "", string name = "") => dtype switch
    {
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "I64" or "F64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw new UserError($"{file}: tensor {name} has unsupported dtype {dtype} (supported: F32, F16, BF16, I64)"),
    };

    internal static ScalarType ToScalarType(string dtype) => dtype switch
    {
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "F64" => ScalarType.Float64,
        "U8" => ScalarType.Byte,
        "I8" => ScalarType.Int8,
        "BOOL" => ScalarType.Bool,
        _ => throw new UserError($"unsupported safetensors dtype {dtype}"),
    };

    /// <summary>
    /// Reads tensor <paramref name="name"/> into <paramref name="destination"/> (any device or dtype).
    /// A contiguous CPU destination of the file's dtype is filled in place from the file; otherwise
    /// one staging tensor of this single tensor's size is used and converted by copy_.
    /// </summary>
    public void ReadInto(string name, Tensor destination, string? destinationName = null)
    {
        var info = Expect(name, destination.shape, destinationName);
        var srcType = ToScalarType(info.DType);
        using var fs = new FileStream(info.File, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        fs.Position = _dataStart[info.File] + info.Begin;
        using var noGrad = torch.no_grad();
        if (destination.device_type == DeviceType.CPU && destination.dtype == srcType && destination.is_contiguous())
        {
            ReadSpan(fs, destination.bytes);
            return;
        }
        using var staging = torch.empty(info.Shape, srcType);
        ReadSpan(fs, staging.bytes);
        destination.copy_(staging);
    }

    /// <summary>Loads one tensor as a new CPU tensor of its stored dtype.</summary>
    public Tensor Load(string name)
    {
        var info = _tensors[name];
        var t = torch.empty(info.Shape, ToScalarType(info.DType));
        ReadInto(name, t);
        return t;
    }

    /// <summary>The dtype tensor <paramref name="name"/> is stored in.</summary>
    public ScalarType StoredType(string name) => ToScalarType(_tensors[name].DType);

    SafeTensorInfo Expect(string name, long[] shape, string? destinationName)
    {
        var info = _tensors[name];
        if (!shape.SequenceEqual(info.Shape))
            throw new UserError($"tensor {destinationName ?? name} has shape [{string.Join(", ", info.Shape)}] in the checkpoint but the model expects [{string.Join(", ", shape)}]");
        return info;
    }

    static void ReadSpan(FileStream fs, Span<byte> span)
    {
        // Stream.Read takes at most int.MaxValue bytes per call; large tensors go in chunks.
        while (span.Length > 0)
        {
            var n = fs.Read(span[..Math.Min(span.Length, 1 << 30)]);
            if (n <= 0) throw new UserError($"{fs.Name} ended early while reading tensor data (truncated file)");
            span = span[n..];
        }
    }
}

/// <summary>Writes safetensors files (single or sharded with an index), F32/F16/BF16/I64.</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        if (metadata != null)
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            header["__metadata__"] = meta;
        }
        long offset = 0;
        foreach (var (name, t) in list)
        {
            var size = t.numel() * t.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = DTypeName(t.dtype),
                ["shape"] = new JsonArray(t.shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + size),
            };
            offset += size;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        // Pad the header to 8 bytes with spaces, as the reference writer does, so data is aligned.
        var padded = (headerBytes.Length + 7) / 8 * 8;
        var tmp = path + ".tmp";
        using (var fs = File.Create(tmp))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(len, padded);
            fs.Write(len);
            fs.Write(headerBytes);
            for (int i = headerBytes.Length; i < padded; i++) fs.WriteByte((byte)' ');
            foreach (var (_, t) in list)
            {
                using var cpu = t.detach().cpu().contiguous();
                fs.Write(cpu.bytes);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Writes shards of at most <paramref name="maxShardBytes"/> plus model.safetensors.index.json.</summary>
    public static void WriteSharded(string directory, IEnumerable<(string Name, Tensor Tensor)> tensors, long maxShardBytes)
    {
        Directory.CreateDirectory(directory);
        var shards = new List<List<(string, Tensor)>> { new() };
        long current = 0;
        foreach (var (name, t) in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            var size = t.numel() * t.ElementSize;
            if (current > 0 && current + size > maxShardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add((name, t));
            current += size;
        }
        var weightMap = new JsonObject();
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            var file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Write(Path.Combine(directory, file), shards[i]);
            foreach (var (name, t) in shards[i]) { weightMap[name] = file; total += t.numel() * t.ElementSize; }
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Float64 => "F64",
        ScalarType.Byte => "U8",
        ScalarType.Int8 => "I8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"cannot write dtype {t} to safetensors"),
    };
}
