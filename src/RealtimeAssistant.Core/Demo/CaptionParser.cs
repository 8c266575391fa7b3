namespace RealtimeAssistant.Demo;

/// <summary>
/// Reads a caption back into facts: "obj:red circle", "pos:red circle=top left",
/// "motion:red circle=right", and for event sentences "event:red circle=leaves" (or =enters,
/// or the new motion for turns). Accepts every grammar variant; unknown words are skipped and
/// garbage yields fewer facts, never an exception.
/// </summary>
public static class CaptionParser
{
    public static List<string> Facts(string? caption)
    {
        var facts = new List<string>();
        if (string.IsNullOrWhiteSpace(caption)) return facts;
        var tokens = caption.ToLowerInvariant()
            .Replace(".", " . ").Replace(",", " , ").Replace("?", " ? ")
            .Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        var sentence = new List<string>();
        foreach (var t in tokens.Append("."))
        {
            if (t is "." or "?" or "!") { ParseSentence(sentence, facts); sentence.Clear(); }
            else sentence.Add(t);
        }
        return facts;
    }

    private static void ParseSentence(List<string> s, List<string> facts)
    {
        if (s.Any(t => t is "enters" or "leaves" or "turns" or "stops" or "starts")) ParseEvent(s, facts);
        else ParseDescription(s, facts);
    }

    // "a green star enters from the right", "the red circle leaves", "the blue square turns left",
    // "... stops", "... starts growing".
    private static void ParseEvent(List<string> s, List<string> facts)
    {
        string? name = null;
        for (int i = 0; i < s.Count; i++)
        {
            if (i + 1 < s.Count && DemoColors.TryParse(s[i], out var c) && Shapes.TryParse(s[i + 1], out var sh))
            {
                name = $"{c.Word()} {sh.Word()}";
                i++;
                continue;
            }
            if (name == null) continue;
            string? what = s[i] switch
            {
                "enters" => "enters",
                "leaves" => "leaves",
                "stops" => "still",
                "turns" or "starts" => ParseMotionAfter(s, i + 1),
                _ => null,
            };
            if (what != null) { facts.Add($"event:{name}={what}"); name = null; }
        }
    }

    // The motion named by the words at s[i..]: "left", "moving left", "growing", "shrinking".
    private static string? ParseMotionAfter(List<string> s, int i)
    {
        if (i < s.Count && s[i] is "moving" or "going" or "heading") i++;
        return i < s.Count && Motions.TryParse(s[i], out var m) ? m.Word() : null;
    }

    private static void ParseDescription(List<string> s, List<string> facts)
    {
        DemoColor? colour = null;
        string? current = null;
        bool hasPos = false, hasMotion = false;
        for (int i = 0; i < s.Count; i++)
        {
            string t = s[i], next = i + 1 < s.Count ? s[i + 1] : "";
            if (DemoColors.TryParse(t, out var c)) { colour = c; continue; }
            if (Shapes.TryParse(t, out var shape))
            {
                if (colour is { } col)
                {
                    current = $"{col.Word()} {shape.Word()}";
                    facts.Add("obj:" + current);
                    hasPos = hasMotion = false;
                }
                colour = null;
                continue;
            }
            if (current == null) continue;

            string? motion = null;
            if (t is "moving" or "going" or "heading" && next is "left" or "right" or "up" or "down") { motion = next; i++; }
            else if (t == "staying" && next == "still") { motion = "still"; i++; }
            else if (t == "not" && next == "moving") { motion = "still"; i++; }
            else if (t == "still") motion = "still";
            else if (t is "growing" or "shrinking") motion = t;
            else if (t == "getting" && next is "bigger" or "smaller") { motion = next == "bigger" ? "growing" : "shrinking"; i++; }
            if (motion != null)
            {
                if (!hasMotion) facts.Add($"motion:{current}={motion}");
                hasMotion = true;
                continue;
            }

            string? pos = null;
            if (t is "top" or "bottom")
            {
                pos = next is "left" or "right" ? $"{t} {next}" : t;
                if (pos != t) i++;
            }
            else if (t is "left" or "right") pos = t;
            else if (t is "centre" or "middle") pos = "centre";
            if (pos != null)
            {
                if (!hasPos) facts.Add($"pos:{current}={pos}");
                hasPos = true;
            }
        }
    }
}
