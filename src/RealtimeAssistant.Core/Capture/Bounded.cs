namespace RealtimeAssistant.Capture;

/// <summary>
/// Runs a native call that might never return (opening a FIFO with no writer, decoding a codec the
/// build lacks) on its own thread and stops waiting after a timeout. A call that timed out cannot
/// be aborted; its thread is a background thread and is left to finish (or not) on its own.
/// </summary>
internal static class Bounded
{
    public static bool TryRun<T>(Func<T> call, TimeSpan timeout, out T? result, CancellationToken ct = default)
    {
        var task = Task.Factory.StartNew(call, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            if (task.Wait(timeout, ct))
            {
                result = task.Result;
                return true;
            }
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
        }
        result = default;
        return false;
    }
}
