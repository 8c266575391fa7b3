// Debian 12 fix for TorchSharp's native shim (see ../shared/PLATFORM.md).
// libLibTorchSharp.so asks for GLIBCXX_3.4.32 (GCC 13) but the only symbol bound to it is never
// called. Marking such version needs VER_FLG_WEAK lets the dynamic loader accept an older
// libstdc++. This file is compiled twice: as an MSBuild inline task (Directory.Build.targets) and
// into the tests, so the code that patches the build is the code that is tested.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;

public sealed class GlibcxxFixTask : Microsoft.Build.Utilities.Task
{
    /// <summary>Directory searched (recursively) for libLibTorchSharp.so.</summary>
    [Microsoft.Build.Framework.Required] public string Directory { get; set; } = "";

    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory)) return true;
        var system = GlibcxxFix.SystemVersions();
        if (system.Count == 0)
        {
            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "GlibcxxFix: no system libstdc++ found; nothing to do.");
            return true;
        }
        foreach (var lib in System.IO.Directory.EnumerateFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            try
            {
                var changed = GlibcxxFix.Patch(lib, system);
                if (changed.Count > 0)
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                        $"GlibcxxFix: marked {string.Join(", ", changed)} weak in {lib}");
            }
            catch (Exception e)
            {
                Log.LogWarning($"GlibcxxFix: could not patch {lib}: {e.Message}");
            }
        }
        return true;
    }
}

public static class GlibcxxFix
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;
    static readonly Regex VersionName = new(@"^(GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)$");

    /// <summary>Version names (GLIBCXX_x, CXXABI_x) that the machine's libstdc++ defines.</summary>
    public static HashSet<string> SystemVersions(string? libstdcxx = null)
    {
        var path = libstdcxx ?? new[]
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        }.FirstOrDefault(File.Exists);
        var result = new HashSet<string>();
        if (path == null) return result;
        var text = Encoding.ASCII.GetString(File.ReadAllBytes(path));
        foreach (Match m in Regex.Matches(text, @"(GLIBCXX|CXXABI)_\d+(\.\d+)*"))
            result.Add(m.Value);
        return result;
    }

    /// <summary>
    /// Marks every GLIBCXX/CXXABI version need that <paramref name="provided"/> lacks as weak.
    /// Returns the names changed; an empty list when the file needed nothing (idempotent).
    /// </summary>
    public static List<string> Patch(string path, ISet<string> provided)
    {
        var data = File.ReadAllBytes(path);
        var changed = PatchBytes(data, provided);
        if (changed.Count > 0)
        {
            // Write beside, then rename: a crash mid-write never leaves a half-patched library.
            var tmp = path + ".glibcxxfix.tmp";
            File.WriteAllBytes(tmp, data);
            File.Replace(tmp, path, null);
        }
        return changed;
    }

    /// <summary>The version needs (name, weak?) recorded in an ELF64 little-endian file.</summary>
    public static List<(string Name, bool Weak)> ReadNeeds(byte[] data)
    {
        var list = new List<(string, bool)>();
        Walk(data, (name, flagsOffset) => list.Add((name, (BitConverter.ToUInt16(data, flagsOffset) & VerFlgWeak) != 0)));
        return list;
    }

    public static List<string> PatchBytes(byte[] data, ISet<string> provided)
    {
        var changed = new List<string>();
        Walk(data, (name, flagsOffset) =>
        {
            if (!VersionName.IsMatch(name) || provided.Contains(name)) return;
            var flags = BitConverter.ToUInt16(data, flagsOffset);
            if ((flags & VerFlgWeak) != 0) return;
            flags |= VerFlgWeak;
            data[flagsOffset] = (byte)(flags & 0xff);
            data[flagsOffset + 1] = (byte)(flags >> 8);
            changed.Add(name);
        });
        return changed;
    }

    static void Walk(byte[] d, Action<string, int> visitAux)
    {
        if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (d[4] != 2 || d[5] != 1) throw new InvalidDataException("only ELF64 little-endian is supported");
        long shoff = BitConverter.ToInt64(d, 0x28);
        int shentsize = BitConverter.ToUInt16(d, 0x3A), shnum = BitConverter.ToUInt16(d, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (BitConverter.ToUInt32(d, (int)sh + 4) != ShtGnuVerneed) continue;
            long off = BitConverter.ToInt64(d, (int)sh + 0x18);
            int link = (int)BitConverter.ToUInt32(d, (int)sh + 0x28);
            int count = (int)BitConverter.ToUInt32(d, (int)sh + 0x2C);
            long strOff = BitConverter.ToInt64(d, (int)(shoff + (long)link * shentsize) + 0x18);
            long vn = off;
            for (int n = 0; n < count; n++)
            {
                int cnt = BitConverter.ToUInt16(d, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(d, (int)vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    var name = CString(d, strOff + BitConverter.ToUInt32(d, (int)aux + 8));
                    visitAux(name, (int)aux + 4);
                    uint next = BitConverter.ToUInt32(d, (int)aux + 12);
                    if (next == 0) break;
                    aux += next;
                }
                uint vnNext = BitConverter.ToUInt32(d, (int)vn + 12);
                if (vnNext == 0) break;
                vn += vnNext;
            }
        }
    }

    static string CString(byte[] d, long at)
    {
        int end = (int)at;
        while (end < d.Length && d[end] != 0) end++;
        return Encoding.ASCII.GetString(d, (int)at, end - (int)at);
    }
}
