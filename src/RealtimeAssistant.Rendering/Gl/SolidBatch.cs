using System.Drawing;
using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// Collects flat-coloured rectangles and draws them in one call. The vertex array is kept and only
/// grows, so a steady HUD allocates nothing per frame.
/// </summary>
internal sealed unsafe class SolidBatch : IDisposable
{
    private const int FloatsPerVertex = 6;   // x, y, r, g, b, a
    private readonly GL _gl;
    private readonly uint _vao, _vbo;
    private float[] _data = new float[FloatsPerVertex * 6 * 256];
    private int _count;   // floats used
    private int _gpuCapacity;   // floats the buffer holds

    public SolidBatch(GL gl)
    {
        _gl = gl;
        _vao = gl.GenVertexArray();
        _vbo = gl.GenBuffer();
        gl.BindVertexArray(_vao);
        gl.BindBuffer(BufferTargetARB.ArrayBuffer, _vbo);
        gl.EnableVertexAttribArray(0);
        gl.VertexAttribPointer(0, 2, VertexAttribPointerType.Float, false, FloatsPerVertex * sizeof(float), (void*)0);
        gl.EnableVertexAttribArray(1);
        gl.VertexAttribPointer(1, 4, VertexAttribPointerType.Float, false, FloatsPerVertex * sizeof(float), (void*)(2 * sizeof(float)));
        gl.BindVertexArray(0);
    }

    public int RectCount => _count / (FloatsPerVertex * 6);

    public void Add(RectF r, Color c)
    {
        if (r.IsEmpty || c.A == 0) return;
        if (_count + FloatsPerVertex * 6 > _data.Length) Array.Resize(ref _data, _data.Length * 2);
        float cr = c.R / 255f, cg = c.G / 255f, cb = c.B / 255f, ca = c.A / 255f;
        Vertex(r.X, r.Y); Vertex(r.Right, r.Y); Vertex(r.X, r.Bottom);
        Vertex(r.Right, r.Y); Vertex(r.Right, r.Bottom); Vertex(r.X, r.Bottom);

        void Vertex(float x, float y)
        {
            var d = _data;
            int i = _count;
            d[i] = x; d[i + 1] = y; d[i + 2] = cr; d[i + 3] = cg; d[i + 4] = cb; d[i + 5] = ca;
            _count += FloatsPerVertex;
        }
    }

    /// <summary>Draws everything added since the last flush with the bound program, then empties the batch.</summary>
    public void Flush()
    {
        if (_count == 0) return;
        _gl.BindVertexArray(_vao);
        _gl.BindBuffer(BufferTargetARB.ArrayBuffer, _vbo);
        fixed (float* p = _data)
        {
            if (_count > _gpuCapacity)
            {
                _gpuCapacity = _data.Length;
                _gl.BufferData(BufferTargetARB.ArrayBuffer, (nuint)(_gpuCapacity * sizeof(float)), null, BufferUsageARB.StreamDraw);
            }
            _gl.BufferSubData(BufferTargetARB.ArrayBuffer, 0, (nuint)(_count * sizeof(float)), p);
        }
        _gl.DrawArrays(PrimitiveType.Triangles, 0, (uint)(_count / FloatsPerVertex));
        _count = 0;
    }

    public void Dispose()
    {
        _gl.DeleteBuffer(_vbo);
        _gl.DeleteVertexArray(_vao);
    }
}
