namespace RealtimeAssistant.Output;

/// <summary>
/// Makes caption text safe inside a cue: a blank line would end an SRT/VTT cue early and "-->"
/// would read as a timing line, so both are removed. Line breaks inside a caption are kept.
/// </summary>
internal static class CaptionText
{
    public static string ForCue(string text)
    {
        var lines = text.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n')
            .Select(l => l.Replace("-->", "->").TrimEnd())
            .Where(l => l.Length > 0);
        var joined = string.Join('\n', lines);
        return joined.Length > 0 ? joined : "…"; // an empty cue body is invalid
    }
}
