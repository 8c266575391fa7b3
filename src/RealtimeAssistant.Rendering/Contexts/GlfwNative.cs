using System.Runtime.InteropServices;

namespace RealtimeAssistant.Rendering;

/// <summary>The GLFW 3.3 entry points a single-window app needs (libglfw.so.3, Debian libglfw3).</summary>
internal static unsafe partial class GlfwNative
{
    private const string Lib = "libglfw.so.3";

    public const int CONTEXT_VERSION_MAJOR = 0x22002, CONTEXT_VERSION_MINOR = 0x22003;
    public const int OPENGL_FORWARD_COMPAT = 0x22006, OPENGL_PROFILE = 0x22008, OPENGL_CORE_PROFILE = 0x32001;
    public const int RESIZABLE = 0x20003, VISIBLE = 0x20004;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void ErrorCallback(int code, nint description);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void KeyCallback(nint window, int key, int scancode, int action, int mods);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void CharCallback(nint window, uint codepoint);

    [LibraryImport(Lib, EntryPoint = "glfwInit")] public static partial int Init();
    [LibraryImport(Lib, EntryPoint = "glfwTerminate")] public static partial void Terminate();
    [LibraryImport(Lib, EntryPoint = "glfwSetErrorCallback")] public static partial nint SetErrorCallback(nint callback);
    [LibraryImport(Lib, EntryPoint = "glfwWindowHint")] public static partial void WindowHint(int hint, int value);

    [LibraryImport(Lib, EntryPoint = "glfwCreateWindow", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint CreateWindow(int width, int height, string title, nint monitor, nint share);

    [LibraryImport(Lib, EntryPoint = "glfwDestroyWindow")] public static partial void DestroyWindow(nint window);
    [LibraryImport(Lib, EntryPoint = "glfwMakeContextCurrent")] public static partial void MakeContextCurrent(nint window);

    [LibraryImport(Lib, EntryPoint = "glfwGetProcAddress", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint GetProcAddress(string name);

    [LibraryImport(Lib, EntryPoint = "glfwSwapBuffers")] public static partial void SwapBuffers(nint window);
    [LibraryImport(Lib, EntryPoint = "glfwSwapInterval")] public static partial void SwapInterval(int interval);
    [LibraryImport(Lib, EntryPoint = "glfwPollEvents")] public static partial void PollEvents();
    [LibraryImport(Lib, EntryPoint = "glfwWindowShouldClose")] public static partial int WindowShouldClose(nint window);
    [LibraryImport(Lib, EntryPoint = "glfwSetWindowShouldClose")] public static partial void SetWindowShouldClose(nint window, int value);
    [LibraryImport(Lib, EntryPoint = "glfwGetFramebufferSize")] public static partial void GetFramebufferSize(nint window, out int width, out int height);
    [LibraryImport(Lib, EntryPoint = "glfwSetKeyCallback")] public static partial nint SetKeyCallback(nint window, nint callback);
    [LibraryImport(Lib, EntryPoint = "glfwSetCharCallback")] public static partial nint SetCharCallback(nint window, nint callback);
}
