namespace RealtimeAssistant.Output;

/// <summary>
/// Small, strict readers for the SRT and VTT we write (and ordinary files like them). They check
/// the structure and throw <see cref="FormatException"/> naming the line at fault.
/// </summary>
public static class SubtitleParser
{
    /// <summary>
    /// Reads captions.srt or captions.vtt (by extension) as a run being continued does: a file
    /// that is not one is a <see cref="UserError"/> naming the file and the line at fault.
    /// </summary>
    public static IReadOnlyList<CaptionEntry> ReadFile(string path)
    {
        var vtt = path.EndsWith(".vtt", StringComparison.OrdinalIgnoreCase);
        try { return vtt ? ParseVtt(File.ReadAllText(path)) : ParseSrt(File.ReadAllText(path)); }
        catch (FormatException e) { throw new UserError($"{path} is not a valid {(vtt ? "WebVTT" : "SRT")} file: {e.Message}", e); }
    }

    public static IReadOnlyList<CaptionEntry> ParseSrt(string text)
    {
        var entries = new List<CaptionEntry>();
        var blocks = Blocks(text);
        foreach (var (line, lines) in blocks)
        {
            if (!int.TryParse(lines[0].Trim().TrimStart('\uFEFF'), out var number) || number != entries.Count + 1)
                throw new FormatException($"SRT line {line}: expected cue number {entries.Count + 1}, found \"{lines[0]}\"");
            if (lines.Count < 3) throw new FormatException($"SRT line {line}: cue {number} has no timing or no text");
            var (start, end) = Timing(lines[1], ',', "SRT", line + 1);
            entries.Add(new CaptionEntry(start, end, string.Join('\n', lines.Skip(2))));
        }
        return entries;
    }

    public static IReadOnlyList<CaptionEntry> ParseVtt(string text)
    {
        var blocks = Blocks(text);
        if (blocks.Count == 0 || !blocks[0].Lines[0].TrimStart('\uFEFF').StartsWith("WEBVTT"))
            throw new FormatException("VTT line 1: missing the WEBVTT header");
        var entries = new List<CaptionEntry>();
        foreach (var (line, lines) in blocks.Skip(1))
        {
            if (lines[0].StartsWith("NOTE") || lines[0] == "STYLE" || lines[0] == "REGION") continue;
            // A cue may start with an identifier line before its timing.
            var t = lines[0].Contains("-->") ? 0 : 1;
            if (t >= lines.Count || t + 1 >= lines.Count) throw new FormatException($"VTT line {line}: cue has no timing or no text");
            var (start, end) = Timing(lines[t], '.', "VTT", line + t);
            entries.Add(new CaptionEntry(start, end, string.Join('\n', lines.Skip(t + 1))));
        }
        return entries;
    }

    static (TimeSpan, TimeSpan) Timing(string line, char separator, string format, int lineNumber)
    {
        var parts = line.Split("-->");
        // VTT allows cue settings after the end time ("00:01.000 --> 00:02.000 align:start").
        var endText = parts.Length == 2 ? parts[1].Trim().Split(' ', 2)[0] : "";
        if (parts.Length != 2 || !SubtitleTime.TryParse(parts[0], separator, out var start) || !SubtitleTime.TryParse(endText, separator, out var end))
            throw new FormatException($"{format} line {lineNumber}: bad timing \"{line}\"");
        if (end < start) throw new FormatException($"{format} line {lineNumber}: cue ends before it starts");
        return (start, end);
    }

    /// <summary>Blank-line separated blocks, each with the 1-based number of its first line.</summary>
    static List<(int Line, List<string> Lines)> Blocks(string text)
    {
        var blocks = new List<(int, List<string>)>();
        List<string>? current = null;
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0) { current = null; continue; }
            if (current is null) blocks.Add((i + 1, current = []));
            current.Add(lines[i]);
        }
        return blocks;
    }
}
