using System.Runtime.InteropServices;

namespace RealtimeAssistant.Rendering;

/// <summary>The dozen EGL entry points a surfaceless Mesa context needs (libEGL.so.1, glvnd).</summary>
internal static unsafe partial class EglNative
{
    private const string Lib = "libEGL.so.1";

    public const int PLATFORM_SURFACELESS_MESA = 0x31DD;
    public const int NONE = 0x3038, SURFACE_TYPE = 0x3033, PBUFFER_BIT = 0x0001;
    public const int RENDERABLE_TYPE = 0x3040, OPENGL_BIT = 0x0008;
    public const int RED_SIZE = 0x3024, GREEN_SIZE = 0x3023, BLUE_SIZE = 0x3022, ALPHA_SIZE = 0x3021;
    public const int OPENGL_API = 0x30A2;
    public const int CONTEXT_MAJOR_VERSION = 0x3098, CONTEXT_MINOR_VERSION = 0x30FB;
    public const int CONTEXT_OPENGL_PROFILE_MASK = 0x30FD, CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x1;
    public const int VENDOR = 0x3053, VERSION = 0x3054;

    [LibraryImport(Lib, EntryPoint = "eglGetProcAddress", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint GetProcAddress(string name);

    [LibraryImport(Lib, EntryPoint = "eglInitialize")]
    public static partial int Initialize(nint display, out int major, out int minor);

    [LibraryImport(Lib, EntryPoint = "eglTerminate")]
    public static partial int Terminate(nint display);

    [LibraryImport(Lib, EntryPoint = "eglChooseConfig")]
    public static partial int ChooseConfig(nint display, int* attribs, nint* configs, int size, out int count);

    [LibraryImport(Lib, EntryPoint = "eglBindAPI")]
    public static partial int BindApi(int api);

    [LibraryImport(Lib, EntryPoint = "eglCreateContext")]
    public static partial nint CreateContext(nint display, nint config, nint share, int* attribs);

    [LibraryImport(Lib, EntryPoint = "eglDestroyContext")]
    public static partial int DestroyContext(nint display, nint context);

    [LibraryImport(Lib, EntryPoint = "eglMakeCurrent")]
    public static partial int MakeCurrent(nint display, nint draw, nint read, nint context);

    [LibraryImport(Lib, EntryPoint = "eglGetError")]
    public static partial int GetError();

    /// <summary>An extension, so it comes through eglGetProcAddress rather than an export.</summary>
    public static nint GetPlatformDisplayExt(int platform)
    {
        nint fn = GetProcAddress("eglGetPlatformDisplayEXT");
        if (fn == 0) return 0;
        return ((delegate* unmanaged<int, nint, int*, nint>)fn)(platform, 0, null);
    }
}
