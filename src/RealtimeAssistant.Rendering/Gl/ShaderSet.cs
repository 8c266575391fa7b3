using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>The overlay's four programs, compiled once from the shaders folder.</summary>
internal sealed class ShaderSet : IDisposable
{
    public ShaderProgram Video { get; }
    public ShaderProgram Overlay { get; }
    public ShaderProgram Heatmap { get; }
    public ShaderProgram Solid { get; }

    public ShaderSet(GL gl, string directory)
    {
        var made = new List<ShaderProgram>();
        try
        {
            made.Add(Video = ShaderProgram.Load(gl, directory, "quad.vert", "video.frag"));
            made.Add(Overlay = ShaderProgram.Load(gl, directory, "quad.vert", "overlay.frag"));
            made.Add(Heatmap = ShaderProgram.Load(gl, directory, "quad.vert", "heatmap.frag"));
            made.Add(Solid = ShaderProgram.Load(gl, directory, "solid.vert", "solid.frag"));
        }
        catch
        {
            foreach (var p in made) p.Dispose();
            throw;
        }
    }

    public IEnumerable<ShaderProgram> All => [Video, Overlay, Heatmap, Solid];

    public void Dispose()
    {
        foreach (var p in All) p.Dispose();
    }
}
