using System.Globalization;
using System.Text.RegularExpressions;

namespace RealtimeAssistant.Output;

/// <summary>Subtitle timestamps: SRT "00:00:01,000", VTT "00:00:01.000" (hours optional when reading VTT).</summary>
public static partial class SubtitleTime
{
    public static string Srt(TimeSpan t) => Format(t, ',');
    public static string Vtt(TimeSpan t) => Format(t, '.');

    static string Format(TimeSpan t, char separator)
    {
        if (t < TimeSpan.Zero) t = TimeSpan.Zero;
        var ms = (long)Math.Round(t.TotalMilliseconds);
        return string.Create(CultureInfo.InvariantCulture,
            $"{ms / 3_600_000:00}:{ms / 60_000 % 60:00}:{ms / 1000 % 60:00}{separator}{ms % 1000:000}");
    }

    [GeneratedRegex(@"^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)([,.])(\d{3})$")]
    private static partial Regex Pattern();

    /// <summary>Parses one timestamp; <paramref name="separator"/> is ',' for SRT, '.' for VTT.</summary>
    public static bool TryParse(string text, char separator, out TimeSpan time)
    {
        time = default;
        var m = Pattern().Match(text.Trim());
        if (!m.Success || m.Groups[4].Value[0] != separator) return false;
        // SRT always has hours; VTT may leave them out.
        if (separator == ',' && !m.Groups[1].Success) return false;
        long h = 0;
        // Hours past TimeSpan's range (about 2.5 million) are not a time.
        if (m.Groups[1].Success && (!long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out h) || h > 2_000_000)) return false;
        time = TimeSpan.FromHours(h)
             + TimeSpan.FromMinutes(int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))
             + TimeSpan.FromSeconds(int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture))
             + TimeSpan.FromMilliseconds(int.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture));
        return true;
    }
}
