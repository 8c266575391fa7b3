namespace RealtimeAssistant.Tests.Build;

public class GlibcxxFixTests
{
    static string BuiltShim()
    {
        // The test host's own output holds the shim the build copied and patched.
        var path = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"expected the build to copy {path}");
        return path;
    }

    [Fact]
    public void BuildAppliedFixBeforeFirstLoad_AndTorchLoads()
    {
        var provided = GlibcxxFix.SystemVersions();
        var needs = GlibcxxFix.ReadNeeds(File.ReadAllBytes(BuiltShim()));
        Assert.Contains(needs, n => n.Name.StartsWith("GLIBCXX_"));
        // Every version the system lacks must already be weak in the built output.
        foreach (var (name, weak) in needs.Where(n => n.Name.StartsWith("GLIBCXX_") || n.Name.StartsWith("CXXABI_")))
            if (!provided.Contains(name)) Assert.True(weak, $"{name} is missing from libstdc++ but not weak");
        // And the library really loads.
        using var t = TorchSharp.torch.ones(3);
        Assert.Equal(3f, t.sum().item<float>());
    }

    [Fact]
    public void SecondRunChangesNothing_AndFirstRunMarksOnlyMissingVersions()
    {
        var original = File.ReadAllBytes(BuiltShim());
        // Pretend the system has an old libstdc++ (3.4.30), as Debian 12 does, on an unpatched copy.
        var provided = new HashSet<string>(Enumerable.Range(0, 31).Select(i => $"GLIBCXX_3.4.{i}").Append("GLIBCXX_3.4"));
        foreach (var i in Enumerable.Range(0, 15)) provided.Add($"CXXABI_1.3.{i}");
        provided.Add("CXXABI_1.3");
        var copy = Path.Combine(Path.GetTempPath(), $"shim-{Guid.NewGuid():N}.so");
        File.WriteAllBytes(copy, original);
        try
        {
            GlibcxxFix.Patch(copy, provided);
            var once = File.ReadAllBytes(copy);
            var needs = GlibcxxFix.ReadNeeds(once);
            Assert.Contains(needs, n => n.Name == "GLIBCXX_3.4.32" && n.Weak);
            Assert.Contains(needs, n => n.Name == "GLIBCXX_3.4.11" && !n.Weak); // present versions stay strong
            Assert.Empty(GlibcxxFix.Patch(copy, provided));
            Assert.Equal(once, File.ReadAllBytes(copy));
            Assert.Equal(original.Length, once.Length); // only flag bits change
        }
        finally { File.Delete(copy); }
    }

    [Fact]
    public void NoOpWhereSystemIsNewEnough()
    {
        var data = File.ReadAllBytes(BuiltShim());
        var everything = new HashSet<string>(GlibcxxFix.ReadNeeds(data).Select(n => n.Name));
        Assert.Empty(GlibcxxFix.PatchBytes(data, everything));
    }

    [Fact]
    public void RejectsNonElf()
    {
        Assert.Throws<InvalidDataException>(() => GlibcxxFix.ReadNeeds(new byte[100]));
    }
}
