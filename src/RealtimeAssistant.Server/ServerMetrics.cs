using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RealtimeAssistant.Server;

/// <summary>
/// What `ra serve` measures about its work, on .NET's own metrics API (one Meter), so any exporter
/// reads it: the server exposes it with ASP.NET Core's and the runtime's meters at GET /metrics in
/// Prometheus' text format. Times are in seconds, as Prometheus names them.
/// </summary>
public static class ServerMetrics
{
    /// <summary>The meter's name prefixes every instrument in Prometheus' names: `ra_chat_completions`, …</summary>
    public const string MeterName = "ra";
    static readonly Meter Meter = new(MeterName);

    static readonly Counter<long> Completions = Meter.CreateCounter<long>("chat.completions", description: "chat completions answered, by finish reason");
    static readonly Counter<long> ChatTokens = Meter.CreateCounter<long>("chat.tokens", description: "chat tokens, by kind (prompt, completion)");
    static readonly Histogram<double> FirstToken = Meter.CreateHistogram<double>("chat.time_to_first_token_seconds", unit: "s", description: "from a chat request's arrival to its first token");
    static readonly Counter<long> Segments = Meter.CreateCounter<long>("stream.captions", description: "captions and answers the live streams wrote, by kind (caption, answer) and mode");
    static readonly Histogram<double> GlassToCaption = Meter.CreateHistogram<double>("stream.glass_to_caption_seconds", unit: "s", description: "from a frame's capture to its finished caption or answer");
    static readonly Histogram<double> FrameRead = Meter.CreateHistogram<double>("stream.frame_read_seconds", unit: "s", description: "a caption's frame read (vision and the decoder's pass over the frame)");
    static readonly UpDownCounter<long> OpenStreams = Meter.CreateUpDownCounter<long>("streams.open", description: "live streams open");

    public static void Completion(string finishReason, int promptTokens, int completionTokens)
    {
        Completions.Add(1, new KeyValuePair<string, object?>("finish_reason", finishReason));
        ChatTokens.Add(promptTokens, new KeyValuePair<string, object?>("kind", "prompt"));
        ChatTokens.Add(completionTokens, new KeyValuePair<string, object?>("kind", "completion"));
    }

    public static void FirstTokenAfter(long startedAt) => FirstToken.Record(Stopwatch.GetElapsedTime(startedAt).TotalSeconds);

    public static void Caption(bool answer, string mode, double latencyMs, double readMs)
    {
        Segments.Add(1, new KeyValuePair<string, object?>("kind", answer ? "answer" : "caption"), new KeyValuePair<string, object?>("mode", mode));
        GlassToCaption.Record(latencyMs / 1000, new KeyValuePair<string, object?>("kind", answer ? "answer" : "caption"));
        if (!answer && readMs > 0) FrameRead.Record(readMs / 1000);
    }

    /// <summary>
    /// Starts the Prometheus side once per process: prometheus-net listens to .NET's meters from its
    /// first collection on, so one collection now keeps what is measured before the first scrape;
    /// and a series idle for up to a day is kept (the adapter's default drops one idle for 5
    /// minutes, which a scraper reads as a counter reset; a day is its most).
    /// </summary>
    public static void StartExport() => Exporting.Value.GetAwaiter().GetResult();

    static readonly double[] SecondsBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    static readonly Lazy<Task> Exporting = new(() =>
    {
        Prometheus.Metrics.ConfigureMeterAdapter(o =>
        {
            o.MetricsExpireAfter = TimeSpan.FromDays(1);
            // Our latencies run from milliseconds (a demo read) to a minute (a large model's caption on a CPU).
            o.ResolveHistogramBuckets = i => i.Meter.Name == MeterName ? SecondsBuckets : Prometheus.MeterAdapterOptions.DefaultHistogramBuckets;
        });
        return Prometheus.Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null);
    });

    public static void StreamOpened() => OpenStreams.Add(1);
    public static void StreamClosed() => OpenStreams.Add(-1);
}
