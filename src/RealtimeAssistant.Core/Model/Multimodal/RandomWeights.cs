using System.Text.Json;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Random weights for a model folder that holds a config but no checkpoint: every tensor the
/// family's loader expects, under the Hub's names, as bfloat16 safetensors shards with an index.
/// Norm scales are 1, everything else N(0, 0.02²), as HF's initialiser draws them. The writer
/// holds one shard at a time, never the model: only the module's shapes are read (its
/// parameters are uninitialised and never touched).
/// </summary>
public static class RandomWeights
{
    public const double Std = 0.02;

    /// <summary>Writes the shards and model.safetensors.index.json into <paramref name="dir"/>; returns the bytes written.</summary>
    public static long Write(string dir, long seed = 0, long maxShardBytes = 1L << 30)
    {
        List<(string Name, long[] Shape)> tensors;
        var (module, toCheckpoint) = ModelFamilies.Skeleton(dir, new TensorSpec(CPU, ScalarType.BFloat16));
        using (module)
            tensors = module.named_parameters().Select(p => (toCheckpoint(p.name), p.parameter.shape)).OrderBy(t => t.Item1, StringComparer.Ordinal).ToList();
        var shards = new List<List<(string Name, long[] Shape)>> { new() };
        long current = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Shape.Aggregate(2L, (a, b) => a * b);
            if (current > 0 && current + bytes > maxShardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add(t);
            current += bytes;
        }
        using var gen = new Generator((ulong)seed);
        var weightMap = new JsonObject();
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            var file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            using var scope = NewDisposeScope();
            var made = shards[i].Select(t => (t.Name, Make(t.Name, t.Shape, gen))).ToList();
            SafeTensorsWriter.Write(Path.Combine(dir, file), made);
            foreach (var (name, t) in made) { weightMap[name] = file; total += t.numel() * t.ElementSize; }
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return total;
    }

    static Tensor Make(string name, long[] shape, Generator gen)
    {
        // RMSNorm/LayerNorm scales at 1 keep activations at a realistic scale through the depth.
        bool normScale = shape.Length == 1 && name.EndsWith(".weight", StringComparison.Ordinal)
            && (name.Contains("norm", StringComparison.Ordinal) || name.Contains("ln_", StringComparison.Ordinal));
        if (normScale) return ones(shape, ScalarType.BFloat16);
        using var f = randn(shape, ScalarType.Float32, generator: gen);
        using var std = Std.ToScalar(); // alive across the call: see Rooted
        return f.mul_(std).to(ScalarType.BFloat16);
    }
}
