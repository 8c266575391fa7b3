using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>A linked vertex+fragment program loaded from two GLSL files, with cached uniform locations.</summary>
internal sealed class ShaderProgram : IDisposable
{
    private readonly GL _gl;
    private readonly Dictionary<string, int> _uniforms = new();
    public uint Handle { get; }

    private ShaderProgram(GL gl, uint handle) { _gl = gl; Handle = handle; }

    public static ShaderProgram Load(GL gl, string directory, string vertFile, string fragFile)
    {
        uint vs = Compile(gl, ShaderType.VertexShader, Path.Combine(directory, vertFile));
        uint fs;
        try { fs = Compile(gl, ShaderType.FragmentShader, Path.Combine(directory, fragFile)); }
        catch { gl.DeleteShader(vs); throw; }

        uint program = gl.CreateProgram();
        gl.AttachShader(program, vs);
        gl.AttachShader(program, fs);
        gl.LinkProgram(program);
        gl.DeleteShader(vs);   // the program keeps what it needs
        gl.DeleteShader(fs);
        gl.GetProgram(program, ProgramPropertyARB.LinkStatus, out int ok);
        if (ok == 0)
        {
            string log = gl.GetProgramInfoLog(program);
            gl.DeleteProgram(program);
            throw new ShaderCompileException($"{vertFile}+{fragFile}", "link", log);
        }
        return new ShaderProgram(gl, program);
    }

    private static uint Compile(GL gl, ShaderType type, string path)
    {
        if (!File.Exists(path)) throw new UserError($"shader file missing: {path}");
        uint shader = gl.CreateShader(type);
        gl.ShaderSource(shader, File.ReadAllText(path));
        gl.CompileShader(shader);
        gl.GetShader(shader, ShaderParameterName.CompileStatus, out int ok);
        if (ok == 0)
        {
            string log = gl.GetShaderInfoLog(shader);
            gl.DeleteShader(shader);
            throw new ShaderCompileException(Path.GetFileName(path), "compile", log);
        }
        return shader;
    }

    public void Use() => _gl.UseProgram(Handle);

    public int Uniform(string name)
    {
        if (!_uniforms.TryGetValue(name, out int loc))
            _uniforms[name] = loc = _gl.GetUniformLocation(Handle, name);
        return loc;
    }

    public void Dispose() => _gl.DeleteProgram(Handle);
}
