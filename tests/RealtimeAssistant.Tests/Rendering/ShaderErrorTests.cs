using RealtimeAssistant.Rendering;

namespace RealtimeAssistant.Tests.Rendering;

[Collection("GL")]
public sealed class ShaderErrorTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ra-shaders-{Guid.NewGuid():N}");

    public ShaderErrorTests()
    {
        Directory.CreateDirectory(_dir);
        foreach (string f in Directory.GetFiles(ShaderDirectory.Locate()))
            File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_repository_shaders_are_found_by_walking_up()
    {
        string dir = ShaderDirectory.Locate();
        Assert.True(File.Exists(Path.Combine(dir, "video.frag")), dir);
    }

    [Fact]
    public void RA_SHADERS_overrides_the_search_and_is_checked()
    {
        string? saved = Environment.GetEnvironmentVariable(ShaderDirectory.EnvVar);
        try
        {
            Environment.SetEnvironmentVariable(ShaderDirectory.EnvVar, _dir);
            Assert.Equal(Path.GetFullPath(_dir), ShaderDirectory.Locate());

            Environment.SetEnvironmentVariable(ShaderDirectory.EnvVar, Path.GetTempPath());
            var e = Assert.Throws<UserError>(ShaderDirectory.Locate);
            Assert.Contains(ShaderDirectory.EnvVar, e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ShaderDirectory.EnvVar, saved);
        }
    }

    [Fact]
    public void Compile_error_names_the_file_and_line()
    {
        string path = Path.Combine(_dir, "overlay.frag");
        var lines = File.ReadAllLines(path).ToList();
        int broken = lines.FindIndex(l => l.Contains("fragColor =")) + 1;   // 1-based line of the statement
        lines[broken - 1] = "    fragColor = undefinedThing * uOpacity;";
        File.WriteAllLines(path, lines);

        using var ctx = GlTestSupport.Headless(64, 64);
        var e = Assert.Throws<ShaderCompileException>(() => new OverlayRenderer(ctx, _dir));
        Assert.Equal("overlay.frag", e.FileName);
        Assert.Equal(broken, e.Line);
        Assert.Contains($"overlay.frag:{broken}:", e.Message);
        Assert.Contains("undefinedThing", e.Message);
    }

    [Fact]
    public void Link_error_names_both_files()
    {
        // Compiles (the prototype is enough) but cannot link: the function is never defined.
        File.WriteAllText(Path.Combine(_dir, "solid.frag"),
            "#version 330 core\nout vec4 fragColor;\nvec4 nowhere();\nvoid main() { fragColor = nowhere(); }\n");
        using var ctx = GlTestSupport.Headless(64, 64);
        var e = Assert.Throws<ShaderCompileException>(() => new OverlayRenderer(ctx, _dir));
        Assert.Contains("solid.vert+solid.frag", e.Message);
        Assert.Contains("link", e.Message);
    }

    [Fact]
    public void Missing_shader_file_is_a_user_error()
    {
        File.Delete(Path.Combine(_dir, "heatmap.frag"));
        using var ctx = GlTestSupport.Headless(64, 64);
        var e = Assert.Throws<UserError>(() => new OverlayRenderer(ctx, _dir));
        Assert.Contains("heatmap.frag", e.Message);
    }

    [Theory]
    [InlineData("0:12(5): error: `foo' undeclared", 12, "video.frag:12: error: `foo' undeclared")]
    [InlineData("0(7) : error C1008: undefined variable \"foo\"", 7, "video.frag:7: error C1008")]
    [InlineData("error: something without a line", null, "video.frag: error: something without a line")]
    public void Driver_logs_are_parsed(string log, int? line, string expected)
    {
        var e = new ShaderCompileException("video.frag", "compile", log);
        Assert.Equal(line, e.Line);
        Assert.Contains(expected, e.Message);
    }
}
