using Silk.NET.OpenGL;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// An OpenGL 3.3+ core context plus the surface it draws to: a window (GLFW) or an off-screen
/// framebuffer (EGL). The renderer only needs <see cref="Gl"/>, the size and
/// <see cref="Framebuffer"/>; the rest is for the app's loop (events, swap, close).
/// </summary>
public interface IGlContext : IDisposable
{
    GL Gl { get; }

    /// <summary>Size in pixels of the drawable (the window's framebuffer, or the FBO).</summary>
    int Width { get; }
    int Height { get; }

    bool IsWindow { get; }

    /// <summary>The framebuffer object to draw into: 0 for a window's default framebuffer.</summary>
    uint Framebuffer { get; }

    /// <summary>One line for logs, e.g. "EGL surfaceless, 4.5 (Core Profile) Mesa 22.3.6, llvmpipe".</summary>
    string Description { get; }

    /// <summary>GL contexts are per thread: call this on the thread that renders, before drawing.</summary>
    void MakeCurrent();

    void SwapBuffers();
    void PollEvents();
    bool ShouldClose { get; }
    void RequestClose();

    /// <summary>Raised from <see cref="PollEvents"/> for key press, repeat and release.</summary>
    event Action<KeyEvent>? Key;

    /// <summary>Raised from <see cref="PollEvents"/> with a Unicode code point, for typing text.</summary>
    event Action<int>? Char;
}

public enum KeyAction { Release = 0, Press = 1, Repeat = 2 }

/// <summary>A key event. <see cref="Key"/> uses GLFW's key codes; see <see cref="Keys"/>.</summary>
public readonly record struct KeyEvent(int Key, int Scancode, KeyAction Action, int Mods);

/// <summary>The GLFW key codes the app is likely to bind (printable keys are their ASCII upper case).</summary>
public static class Keys
{
    public const int Space = 32, A = 65, H = 72, M = 77, P = 80, Q = 81, S = 83;
    public const int Escape = 256, Enter = 257, Tab = 258, Backspace = 259;
    public const int F1 = 290, F2 = 291, F3 = 292;
}
