using System.Text;

namespace RealtimeAssistant.Output;

/// <summary>
/// A text file written in whole records: each record is encoded, written and flushed to the OS
/// at once, so a Ctrl+C (or a crash) between records leaves only complete records on disk.
/// </summary>
internal sealed class AppendOnlyFile : IDisposable
{
    static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);
    readonly FileStream stream;

    public string Path { get; }

    public AppendOnlyFile(string path, bool append)
    {
        Path = path;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        stream = new FileStream(path, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.Read);
    }

    public long Length => stream.Length;

    public void WriteRecord(string text)
    {
        stream.Write(Utf8.GetBytes(text));
        stream.Flush();
    }

    public void Dispose() => stream.Dispose();
}
