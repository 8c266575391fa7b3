using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

public class SafeTensorsTests
{
    static (string, Tensor)[] Sample() => new (string, Tensor)[]
    {
        ("a.f32", torch.randn(3, 5)),
        ("b.f16", torch.randn(4, 2).to_type(ScalarType.Float16)),
        ("c.bf16", torch.randn(7).to_type(ScalarType.BFloat16)),
        ("d.i64", torch.arange(0, 12, ScalarType.Int64).view(3, 4) * 1_000_000_007L),
    };

    [Fact]
    public void RoundTripsEveryDtype()
    {
        using var dir = new TempDir();
        var tensors = Sample();
        SafeTensorsWriter.Write(dir.File("m.safetensors"), tensors);
        var reader = SafeTensorsReader.Open(dir.File("m.safetensors"));
        Assert.Equal(4, reader.Tensors.Count);
        foreach (var (name, t) in tensors)
        {
            using var back = reader.Load(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.True(t.equal(back).all().item<bool>(), name);
        }
    }

    [Fact]
    public void ReadsIntoDestinationOfAnotherDtype()
    {
        using var dir = new TempDir();
        var src = torch.randn(6, 3);
        SafeTensorsWriter.Write(dir.File("m.safetensors"), new[] { ("w", src) });
        var dst = torch.empty(new long[] { 6, 3 }, ScalarType.BFloat16);
        SafeTensorsReader.Open(dir.File("m.safetensors")).ReadInto("w", dst);
        Assert.True(dst.to_type(ScalarType.Float32).allclose(src, rtol: 1e-2, atol: 1e-2));
    }

    [Fact]
    public void ShardedCheckpointLoadsThroughIndex()
    {
        using var dir = new TempDir();
        var tensors = Sample();
        SafeTensorsWriter.WriteSharded(dir.Path, tensors, maxShardBytes: 64);
        Assert.True(File.Exists(dir.File("model.safetensors.index.json")));
        Assert.True(Directory.GetFiles(dir.Path, "model-*-of-*.safetensors").Length >= 3);
        var reader = SafeTensorsReader.Open(dir.Path);
        foreach (var (name, t) in tensors)
            Assert.True(t.equal(reader.Load(name)).all().item<bool>(), name);
    }

    [Fact]
    public void TruncatedFileIsAClearError()
    {
        using var dir = new TempDir();
        SafeTensorsWriter.Write(dir.File("m.safetensors"), Sample());
        var bytes = File.ReadAllBytes(dir.File("m.safetensors"));
        File.WriteAllBytes(dir.File("cut.safetensors"), bytes[..(bytes.Length - 10)]);
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open(dir.File("cut.safetensors")));
        Assert.Contains("truncated", e.Message);
        File.WriteAllBytes(dir.File("tiny.safetensors"), new byte[5]);
        Assert.Contains("truncated", Assert.Throws<UserError>(() => SafeTensorsReader.Open(dir.File("tiny.safetensors"))).Message);
    }

    [Fact]
    public void HeaderLengthPastEndIsAClearError()
    {
        using var dir = new TempDir();
        var bytes = new byte[64];
        BitConverter.GetBytes(1_000_000L).CopyTo(bytes, 0);
        File.WriteAllBytes(dir.File("bad.safetensors"), bytes);
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open(dir.File("bad.safetensors")));
        Assert.Contains("header length 1000000", e.Message);
    }

    [Fact]
    public void MissingFileIsAClearError()
    {
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open("/nonexistent/model.safetensors"));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void WrongShapeNamesTensorAndBothShapes()
    {
        using var dir = new TempDir();
        SafeTensorsWriter.Write(dir.File("m.safetensors"), new[] { ("layer.weight", torch.zeros(4, 3)) });
        var reader = SafeTensorsReader.Open(dir.File("m.safetensors"));
        var e = Assert.Throws<UserError>(() => reader.ReadInto("layer.weight", torch.empty(3, 4)));
        Assert.Contains("layer.weight", e.Message);
        Assert.Contains("[4, 3]", e.Message);
        Assert.Contains("[3, 4]", e.Message);
    }

    [Fact]
    public void AHeaderThatIsNotUtf8_IsAUserErrorNamingTheFile()
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        SafeTensorsWriter.Write(path, Sample());
        var bytes = File.ReadAllBytes(path);
        Assert.Equal((byte)'"', bytes[9]);
        bytes[10] = 0xFF; // inside the first tensor's name
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Theory]
    [InlineData(long.MaxValue)]   // 2^63 - 1
    [InlineData(long.MinValue)]   // 2^63, read as a signed length
    [InlineData(1L << 40)]
    public void AHeaderLengthPastTheFile_IsRefused_BeforeAnyAllocation(long claimed)
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        SafeTensorsWriter.Write(path, Sample());
        var bytes = File.ReadAllBytes(path);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes, claimed);
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated as the header claimed");
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void AShapeWhoseProductOverflows_IsRefused()
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        var header = System.Text.Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}");
        var file = new byte[8 + header.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(file, header.Length);
        header.CopyTo(file, 8);
        File.WriteAllBytes(path, file);
        var e = Assert.Throws<UserError>(() => SafeTensorsReader.Open(path));
        Assert.Contains("needs more bytes than the file", e.Message);
    }
}
