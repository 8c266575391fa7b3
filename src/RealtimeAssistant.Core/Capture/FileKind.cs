using System.Runtime.InteropServices;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Tells a FIFO or a device node from a regular file. .NET's FileAttributes cannot, so on Linux
/// we ask statx, whose struct layout (unlike stat's) is the same on every architecture.
/// </summary>
public static unsafe class FileKind
{
    public enum Kind { Missing, Regular, Directory, Fifo, CharDevice, Other }

    [DllImport("libc", SetLastError = true)]
    static extern int statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    const int AtFdCwd = -100;
    const uint StatxType = 1;
    const int ModeOffset = 28; // stx_mode (u16) in struct statx

    public static Kind Of(string path)
    {
        if (Directory.Exists(path)) return Kind.Directory;
        if (!File.Exists(path)) return Kind.Missing;
        if (!OperatingSystem.IsLinux()) return Kind.Regular;
        try
        {
            byte* buffer = stackalloc byte[256];
            if (statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return Kind.Regular;
            return (*(ushort*)(buffer + ModeOffset) & 0xF000) switch
            {
                0x8000 => Kind.Regular,
                0x1000 => Kind.Fifo,
                0x2000 => Kind.CharDevice,
                _ => Kind.Other,
            };
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return Kind.Regular; // no statx (very old libc): treat as a file, the old behaviour
        }
    }
}
