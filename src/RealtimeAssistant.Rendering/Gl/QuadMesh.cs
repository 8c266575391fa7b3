using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>One textured quad, re-positioned per draw (16 floats: cheaper than any bookkeeping).</summary>
internal sealed unsafe class QuadMesh : IDisposable
{
    private readonly GL _gl;
    private readonly uint _vao, _vbo;

    public QuadMesh(GL gl)
    {
        _gl = gl;
        _vao = gl.GenVertexArray();
        _vbo = gl.GenBuffer();
        gl.BindVertexArray(_vao);
        gl.BindBuffer(BufferTargetARB.ArrayBuffer, _vbo);
        gl.BufferData(BufferTargetARB.ArrayBuffer, 16 * sizeof(float), null, BufferUsageARB.DynamicDraw);
        gl.EnableVertexAttribArray(0);
        gl.VertexAttribPointer(0, 2, VertexAttribPointerType.Float, false, 4 * sizeof(float), (void*)0);
        gl.EnableVertexAttribArray(1);
        gl.VertexAttribPointer(1, 2, VertexAttribPointerType.Float, false, 4 * sizeof(float), (void*)(2 * sizeof(float)));
        gl.BindVertexArray(0);
    }

    /// <summary>Draws <paramref name="dst"/> (pixels) sampling the whole texture; the bound program decides the rest.</summary>
    public void Draw(RectF dst)
    {
        float* v = stackalloc float[16]
        {
            dst.X, dst.Y, 0, 0,
            dst.Right, dst.Y, 1, 0,
            dst.X, dst.Bottom, 0, 1,
            dst.Right, dst.Bottom, 1, 1,
        };
        _gl.BindVertexArray(_vao);
        _gl.BindBuffer(BufferTargetARB.ArrayBuffer, _vbo);
        _gl.BufferSubData(BufferTargetARB.ArrayBuffer, 0, 16 * sizeof(float), v);
        _gl.DrawArrays(PrimitiveType.TriangleStrip, 0, 4);
    }

    public void Dispose()
    {
        _gl.DeleteBuffer(_vbo);
        _gl.DeleteVertexArray(_vao);
    }
}
