using Microsoft.Extensions.Logging;

namespace RealtimeAssistant.Capture;

/// <summary>The capture code's log lines, in one place.</summary>
internal static class CaptureLog
{
    public static void LogLoop(this ILogger logger, string path) =>
        logger.LogDebug("looping {Path} from the start", path);

    public static void LogLost(this ILogger logger, string source, string status) =>
        logger.LogWarning("{Source}: {Status}", source, status);

    public static void LogRecovered(this ILogger logger, string source) =>
        logger.LogInformation("{Source}: frames are coming again", source);
}
