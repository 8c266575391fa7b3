namespace RealtimeAssistant.Capture;

/// <summary>Orders "frame2.png" before "frame10.png": digit runs compare as numbers.</summary>
internal sealed class NaturalOrder : IComparer<string>
{
    public static readonly NaturalOrder Instance = new();

    public int Compare(string? a, string? b)
    {
        if (a is null || b is null) return string.CompareOrdinal(a, b);
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            if (char.IsAsciiDigit(a[i]) && char.IsAsciiDigit(b[j]))
            {
                int si = i, sj = j;
                while (i < a.Length && char.IsAsciiDigit(a[i])) i++;
                while (j < b.Length && char.IsAsciiDigit(b[j])) j++;
                var x = a[si..i].TrimStart('0');
                var y = b[sj..j].TrimStart('0');
                if (x.Length != y.Length) return x.Length - y.Length;
                var c = string.CompareOrdinal(x, y);
                if (c != 0) return c;
            }
            else
            {
                if (a[i] != b[j]) return a[i] - b[j];
                i++; j++;
            }
        }
        return (a.Length - i) - (b.Length - j);
    }
}
