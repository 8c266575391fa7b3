using System.Diagnostics;

namespace RealtimeAssistant.Capture;

/// <summary>
/// Holds a file back to its frame rate so it behaves like a camera. Tells the caller how many
/// frames it is behind, so a slow decoder can skip instead of drifting further into the past.
/// </summary>
internal sealed class Pacer(double fps)
{
    long start;
    long paced;

    /// <summary>Waits until frame number <c>paced</c> is due; returns how many whole frames late we are.</summary>
    public long WaitForNext(CancellationToken ct)
    {
        if (start == 0) start = Stopwatch.GetTimestamp();
        var due = start + (long)(paced * Stopwatch.Frequency / fps);
        var now = Stopwatch.GetTimestamp();
        paced++;
        if (due > now)
        {
            var ms = (int)((due - now) * 1000 / Stopwatch.Frequency);
            if (ms > 0 && ct.WaitHandle.WaitOne(ms)) ct.ThrowIfCancellationRequested();
            return 0;
        }
        return (long)((now - due) * fps / Stopwatch.Frequency);
    }

    /// <summary>Counts frames the caller skipped so later deadlines stay on the wall clock.</summary>
    public void Skipped(long frames) => paced += frames;
}
