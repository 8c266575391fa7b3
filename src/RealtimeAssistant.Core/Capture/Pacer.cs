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

    TimeSpan origin;

    /// <summary>When a frame shown at <paramref name="at"/> is due: counted from the first frame's time, which is due at once.</summary>
    long Due(TimeSpan at) => start + (long)((at - origin).TotalSeconds * Stopwatch.Frequency);

    /// <summary>Whether a frame shown at <paramref name="at"/> is already a frame or more late: a camera's would be gone.</summary>
    public bool IsLate(TimeSpan at) => start != 0 && Stopwatch.GetTimestamp() - Due(at) > Stopwatch.Frequency / fps;

    /// <summary>Waits until a frame shown at <paramref name="at"/> is due, for a file paced by its frames' own times.</summary>
    public void WaitUntil(TimeSpan at, CancellationToken ct)
    {
        if (start == 0) (start, origin) = (Stopwatch.GetTimestamp(), at);
        var wait = Due(at) - Stopwatch.GetTimestamp();
        var ms = (int)(wait * 1000 / Stopwatch.Frequency);
        if (ms > 0 && ct.WaitHandle.WaitOne(ms)) ct.ThrowIfCancellationRequested();
    }
}
