using System.Text;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// Cuts generated text at the first stop sequence, as OpenAI does: the text ends just before it
/// and the stop sequence itself is not returned. Streaming, it holds back only a tail that could
/// still grow into a stop sequence, so every other character goes out as soon as it is generated.
/// </summary>
public sealed class StopSequences(IReadOnlyList<string> stops)
{
    readonly StringBuilder _pending = new();

    public bool Stopped { get; private set; }

    /// <summary>Characters of the generated text sent so far (after a stop: where the text was cut).</summary>
    public int Sent { get; private set; }

    /// <summary>Takes the next generated text; returns what may be sent now ("" while held back or after a stop).</summary>
    public string Push(string delta)
    {
        if (Stopped) return "";
        _pending.Append(delta);
        if (stops.Count == 0) return Take(_pending.Length);
        var text = _pending.ToString();
        int cut = -1;
        foreach (var s in stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            var before = text[..cut];
            _pending.Clear();
            Sent += before.Length;
            return before;
        }
        int hold = 0;
        foreach (var s in stops)
            for (int k = Math.Min(s.Length - 1, text.Length); k > hold; k--)
                if (text.AsSpan(text.Length - k).SequenceEqual(s.AsSpan(0, k))) { hold = k; break; }
        return Take(text.Length - hold);
    }

    /// <summary>The held-back tail once generation has ended without a stop.</summary>
    public string Flush() => Stopped ? "" : Take(_pending.Length);

    string Take(int n)
    {
        var s = _pending.ToString(0, n);
        _pending.Remove(0, n);
        Sent += n;
        return s;
    }
}
