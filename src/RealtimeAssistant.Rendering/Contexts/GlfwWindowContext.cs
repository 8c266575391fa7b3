using System.Runtime.InteropServices;
using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// An on-screen window with an OpenGL 3.3 core context, through GLFW (X11). GLFW is process-wide
/// state, so only one window may be open at a time; create, use and dispose it on one thread.
/// </summary>
public sealed class GlfwWindowContext : IGlContext
{
    public const string DebianPackage = "libglfw3";

    private static readonly object InitLock = new();
    private static bool s_windowOpen;
    // Static so GLFW can call it at any time, even after this object is gone.
    private static readonly GlfwNative.ErrorCallback s_onError = OnError;
    [ThreadStatic] private static string? t_lastError;

    private readonly nint _window;
    // The delegates GLFW holds as raw pointers must outlive the window: fields keep them from the GC.
    private readonly GlfwNative.KeyCallback _onKey;
    private readonly GlfwNative.CharCallback _onChar;
    private bool _disposed;

    public GL Gl { get; }
    public bool IsWindow => true;
    public uint Framebuffer => 0;
    public string Description { get; }
    public int Width { get { GlfwNative.GetFramebufferSize(_window, out int w, out _); return w; } }
    public int Height { get { GlfwNative.GetFramebufferSize(_window, out _, out int h); return h; } }
    public bool ShouldClose => GlfwNative.WindowShouldClose(_window) != 0;

    public event Action<KeyEvent>? Key;
    public event Action<int>? Char;

    /// <param name="vsync">Swap on vertical blank. Off by default: the pipeline sets its own pace.</param>
    public GlfwWindowContext(int width, int height, string title = "RealtimeAssistant", bool vsync = false)
    {
        string? display = Environment.GetEnvironmentVariable("DISPLAY");
        if (string.IsNullOrEmpty(display))
            throw new UserError("no display: DISPLAY is not set, so no window can be opened");

        lock (InitLock)
        {
            if (s_windowOpen) throw new InvalidOperationException("a GLFW window is already open; only one is supported");
            try
            {
                GlfwNative.SetErrorCallback(Marshal.GetFunctionPointerForDelegate(s_onError));
            }
            catch (DllNotFoundException e)
            {
                throw new UserError($"no window: cannot load libglfw.so.3 (install Debian package {DebianPackage})", e);
            }
            t_lastError = null;
            if (GlfwNative.Init() == 0)
                throw new UserError($"no display: glfwInit failed on DISPLAY={display} ({t_lastError ?? "no detail"})");

            GlfwNative.WindowHint(GlfwNative.CONTEXT_VERSION_MAJOR, 3);
            GlfwNative.WindowHint(GlfwNative.CONTEXT_VERSION_MINOR, 3);
            GlfwNative.WindowHint(GlfwNative.OPENGL_PROFILE, GlfwNative.OPENGL_CORE_PROFILE);
            GlfwNative.WindowHint(GlfwNative.OPENGL_FORWARD_COMPAT, 1);
            _window = GlfwNative.CreateWindow(width, height, title, 0, 0);
            if (_window == 0)
            {
                string why = t_lastError ?? "no detail";
                GlfwNative.Terminate();
                throw new UserError($"no window: glfwCreateWindow(OpenGL 3.3 core) failed on DISPLAY={display} ({why})");
            }
            s_windowOpen = true;
        }

        GlfwNative.MakeContextCurrent(_window);
        GlfwNative.SwapInterval(vsync ? 1 : 0);
        Gl = GL.GetApi(name => GlfwNative.GetProcAddress(name));
        Description = $"GLFW window on {display}, OpenGL {Gl.GetStringS(StringName.Version)}, {Gl.GetStringS(StringName.Renderer)}";

        _onKey = (_, key, scancode, action, mods) => Key?.Invoke(new KeyEvent(key, scancode, (KeyAction)action, mods));
        _onChar = (_, codepoint) => Char?.Invoke((int)codepoint);
        GlfwNative.SetKeyCallback(_window, Marshal.GetFunctionPointerForDelegate(_onKey));
        GlfwNative.SetCharCallback(_window, Marshal.GetFunctionPointerForDelegate(_onChar));
    }

    private static void OnError(int code, nint description) =>
        t_lastError = $"GLFW error 0x{code:X}: {Marshal.PtrToStringUTF8(description)}";

    public void MakeCurrent() => GlfwNative.MakeContextCurrent(_window);
    public void SwapBuffers() => GlfwNative.SwapBuffers(_window);
    public void PollEvents() => GlfwNative.PollEvents();
    public void RequestClose() => GlfwNative.SetWindowShouldClose(_window, 1);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (InitLock)
        {
            GlfwNative.SetKeyCallback(_window, 0);
            GlfwNative.SetCharCallback(_window, 0);
            GlfwNative.DestroyWindow(_window);
            GlfwNative.Terminate();   // one window per process, so its end is GLFW's end
            s_windowOpen = false;
        }
        GC.KeepAlive(_onKey);
        GC.KeepAlive(_onChar);
    }
}
