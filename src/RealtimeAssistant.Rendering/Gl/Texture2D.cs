using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// A 2D texture that is re-filled every frame: storage is allocated only when the size or format
/// changes, and otherwise updated in place with TexSubImage2D (no per-frame reallocation).
/// </summary>
internal sealed unsafe class Texture2D : IDisposable
{
    private readonly GL _gl;
    private InternalFormat _internalFormat;
    public uint Handle { get; }
    public int Width { get; private set; }
    public int Height { get; private set; }

    public Texture2D(GL gl, bool smooth)
    {
        _gl = gl;
        Handle = gl.GenTexture();
        gl.BindTexture(TextureTarget.Texture2D, Handle);
        var filter = (int)(smooth ? TextureMinFilter.Linear : TextureMinFilter.Nearest);
        gl.TexParameter(TextureTarget.Texture2D, TextureParameterName.TextureMinFilter, filter);
        gl.TexParameter(TextureTarget.Texture2D, TextureParameterName.TextureMagFilter, filter);
        gl.TexParameter(TextureTarget.Texture2D, TextureParameterName.TextureWrapS, (int)TextureWrapMode.ClampToEdge);
        gl.TexParameter(TextureTarget.Texture2D, TextureParameterName.TextureWrapT, (int)TextureWrapMode.ClampToEdge);
    }

    /// <param name="rowPixels">Pixels per source row (the stride), which may exceed <paramref name="width"/> for ROIs.</param>
    public void Upload(int width, int height, InternalFormat internalFormat, PixelFormat format, PixelType type,
        void* pixels, int rowPixels, int bytesPerPixel)
    {
        _gl.BindTexture(TextureTarget.Texture2D, Handle);
        // Rows of 3-byte BGR or 1-byte data are rarely 4-byte aligned; tell GL the truth.
        _gl.PixelStore(PixelStoreParameter.UnpackAlignment, (rowPixels * bytesPerPixel) % 4 == 0 ? 4 : 1);
        _gl.PixelStore(PixelStoreParameter.UnpackRowLength, rowPixels == width ? 0 : rowPixels);
        if (width == Width && height == Height && internalFormat == _internalFormat)
        {
            _gl.TexSubImage2D(TextureTarget.Texture2D, 0, 0, 0, (uint)width, (uint)height, format, type, pixels);
        }
        else
        {
            _gl.TexImage2D(TextureTarget.Texture2D, 0, internalFormat, (uint)width, (uint)height, 0, format, type, pixels);
            Width = width;
            Height = height;
            _internalFormat = internalFormat;
        }
        _gl.PixelStore(PixelStoreParameter.UnpackRowLength, 0);
    }

    public void Bind(int unit = 0)
    {
        _gl.ActiveTexture(TextureUnit.Texture0 + unit);
        _gl.BindTexture(TextureTarget.Texture2D, Handle);
    }

    public void Dispose() => _gl.DeleteTexture(Handle);
}
