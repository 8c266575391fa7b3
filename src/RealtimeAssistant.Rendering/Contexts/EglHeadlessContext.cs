using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// A headless OpenGL core context: EGL on Mesa's surfaceless platform (no X, no GPU needed;
/// llvmpipe gives 4.5 core), drawing into an RGBA8 framebuffer object of the requested size.
/// </summary>
public sealed unsafe class EglHeadlessContext : IGlContext
{
    /// <summary>Named in every "EGL unavailable" message so the fix is one apt-get away.</summary>
    public const string DebianPackages = "libegl1 libegl-mesa0 libgl1-mesa-dri";

    private readonly nint _display;
    private readonly nint _context;
    private readonly uint _fbo, _colorBuffer;
    private bool _closeRequested, _disposed;

    public GL Gl { get; }
    public int Width { get; }
    public int Height { get; }
    public bool IsWindow => false;
    public uint Framebuffer => _fbo;
    public string Description { get; }
    public bool ShouldClose => _closeRequested;

    // Headless has no input; the events exist so callers need no special case.
    public event Action<KeyEvent>? Key { add { } remove { } }
    public event Action<int>? Char { add { } remove { } }

    public EglHeadlessContext(int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"size {width}x{height} must be positive");
        Width = width;
        Height = height;
        try
        {
            _display = EglNative.GetPlatformDisplayExt(EglNative.PLATFORM_SURFACELESS_MESA);
        }
        catch (DllNotFoundException e)
        {
            throw new UserError($"EGL unavailable: cannot load libEGL.so.1 (install Debian packages: {DebianPackages})", e);
        }
        if (_display == 0)
            throw Fail("eglGetPlatformDisplayEXT(SURFACELESS_MESA) returned no display");
        if (EglNative.Initialize(_display, out _, out _) == 0)
            throw Fail("eglInitialize failed");

        nint config = ChooseConfig(_display);
        if (EglNative.BindApi(EglNative.OPENGL_API) == 0) throw Fail("eglBindAPI(OPENGL) failed");

        int* ctxAttribs = stackalloc int[]
        {
            EglNative.CONTEXT_MAJOR_VERSION, 3, EglNative.CONTEXT_MINOR_VERSION, 3,
            EglNative.CONTEXT_OPENGL_PROFILE_MASK, EglNative.CONTEXT_OPENGL_CORE_PROFILE_BIT,
            EglNative.NONE,
        };
        _context = EglNative.CreateContext(_display, config, 0, ctxAttribs);
        if (_context == 0) throw Fail("eglCreateContext(OpenGL 3.3 core) failed");
        MakeCurrent();

        Gl = GL.GetApi(name => EglNative.GetProcAddress(name));
        Description = $"EGL surfaceless, OpenGL {Gl.GetStringS(StringName.Version)}, {Gl.GetStringS(StringName.Renderer)}";

        // Surfaceless means no default framebuffer: everything is drawn into this FBO.
        _fbo = Gl.GenFramebuffer();
        _colorBuffer = Gl.GenRenderbuffer();
        Gl.BindRenderbuffer(RenderbufferTarget.Renderbuffer, _colorBuffer);
        Gl.RenderbufferStorage(RenderbufferTarget.Renderbuffer, InternalFormat.Rgba8, (uint)width, (uint)height);
        Gl.BindFramebuffer(FramebufferTarget.Framebuffer, _fbo);
        Gl.FramebufferRenderbuffer(FramebufferTarget.Framebuffer, FramebufferAttachment.ColorAttachment0,
            RenderbufferTarget.Renderbuffer, _colorBuffer);
        var status = Gl.CheckFramebufferStatus(FramebufferTarget.Framebuffer);
        if (status != GLEnum.FramebufferComplete) throw Fail($"framebuffer incomplete: {status}");
        Gl.Viewport(0, 0, (uint)width, (uint)height);
    }

    private static nint ChooseConfig(nint display)
    {
        // Without SURFACE_TYPE=PBUFFER_BIT Mesa's surfaceless platform reports 0 configs.
        int* attribs = stackalloc int[]
        {
            EglNative.SURFACE_TYPE, EglNative.PBUFFER_BIT,
            EglNative.RENDERABLE_TYPE, EglNative.OPENGL_BIT,
            EglNative.RED_SIZE, 8, EglNative.GREEN_SIZE, 8, EglNative.BLUE_SIZE, 8, EglNative.ALPHA_SIZE, 8,
            EglNative.NONE,
        };
        nint config;
        if (EglNative.ChooseConfig(display, attribs, &config, 1, out int count) == 0 || count < 1)
            throw Fail("eglChooseConfig found no OpenGL pbuffer config");
        return config;
    }

    private static UserError Fail(string what) =>
        new($"EGL unavailable: {what} (EGL error 0x{EglNative.GetError():X4}; install Debian packages: {DebianPackages})");

    public void MakeCurrent()
    {
        if (EglNative.MakeCurrent(_display, 0, 0, _context) == 0) throw Fail("eglMakeCurrent failed");
    }

    public void SwapBuffers() { }   // nothing to present: the FBO is read back instead
    public void PollEvents() { }
    public void RequestClose() => _closeRequested = true;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (EglNative.MakeCurrent(_display, 0, 0, _context) != 0)
        {
            Gl.DeleteFramebuffer(_fbo);
            Gl.DeleteRenderbuffer(_colorBuffer);
        }
        EglNative.MakeCurrent(_display, 0, 0, 0);
        EglNative.DestroyContext(_display, _context);
        // No eglTerminate: the display is shared process-wide, and terminating it would pull
        // the rug from any other live EGL context (tests make several).
        Gl.Dispose();
    }
}
