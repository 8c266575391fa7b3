namespace RealtimeAssistant.Capture;

/// <summary>A live source that reconnects with backoff when it is lost (a camera, a FIFO, a network stream): its retry state.</summary>
public interface IReconnectingSource
{
    /// <summary>Failed attempts to open or keep the source, over its whole life.</summary>
    long Retries { get; }
    /// <summary>Times frames came again after the source was lost.</summary>
    long Recoveries { get; }
    /// <summary>Attempts since the last frame (0 while frames come).</summary>
    int Attempt { get; }
    /// <summary>Why the source ended, where it gave up on a device or stream that had been live
    /// (<see cref="FrameSourceOptions.GiveUpAfter"/>); null while it runs, or when it simply ended.</summary>
    string? LostReason { get; }
}
