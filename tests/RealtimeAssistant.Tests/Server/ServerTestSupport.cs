using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;
using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Tests.Server;

internal static class ServerTestSupport
{
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "RealtimeAssistant.sln"))) return d.FullName;
            throw new DirectoryNotFoundException("repository root not found above the test binaries");
        }
    }

    public static string DemoModel => Path.Combine(RepoRoot, "media", "demo-model");

    /// <summary>The built CLI beside the tests (the test project references it).</summary>
    public static string RaDll => Path.Combine(AppContext.BaseDirectory, "ra.dll");

    /// <summary>A demo-world scene drawn at <paramref name="size"/>², written as PNG (lossless) or JPEG.</summary>
    public static string SceneImage(string dir, int seed, string ext, int size = 192)
    {
        var scene = SceneSampler.Sample(new Random(seed), minObjects: 2, maxObjects: 3);
        using var img = SceneRenderer.Render(scene, size, size, noiseSeed: seed);
        var path = Path.Combine(dir, $"scene-{seed}.{ext}");
        Cv2.ImWrite(path, img);
        return path;
    }

    public static string DataUri(string file) =>
        $"data:{(file.EndsWith(".png") ? "image/png" : "image/jpeg")};base64,{Convert.ToBase64String(File.ReadAllBytes(file))}";

    /// <summary>A chat request body: one user message with the images and, if given, the text.</summary>
    /// <summary>
    /// One sample of GET /metrics (Prometheus' text format): the series <paramref name="name"/> with
    /// exactly <paramref name="labels"/> (as written between the braces, e.g. kind="caption"), or 0
    /// when it is absent (a series appears with its first measurement).
    /// </summary>
    public static async Task<double> Metric(HttpClient http, string name, string labels = "")
    {
        using var r = await http.GetAsync("/metrics");
        Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode);
        var series = labels.Length == 0 ? name + " " : $"{name}{{{labels}}} ";
        var line = (await r.Content.ReadAsStringAsync()).Split('\n').FirstOrDefault(l => l.StartsWith(series, StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[series.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public static JsonObject ChatBody(string model, IEnumerable<string> imageUris, string? text = null, int? maxTokens = null, bool stream = false)
    {
        var content = new JsonArray();
        foreach (var uri in imageUris) content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = uri } });
        if (text is not null) content.Add(new JsonObject { ["type"] = "text", ["text"] = text });
        var body = new JsonObject
        {
            ["model"] = model, ["temperature"] = 0, ["stream"] = stream,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        };
        if (maxTokens is { } m) body["max_tokens"] = m;
        return body;
    }

    /// <summary>Runs a program to its end; its stdout, stderr and exit code.</summary>
    public static async Task<(int Code, string Out, string Err)> Run(string exe, IEnumerable<string> args, string? cwd = null, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = cwd ?? RepoRoot };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{exe} {string.Join(' ', args)} ran past {timeout ?? TimeSpan.FromMinutes(3)}");
        }
        return (p.ExitCode, await stdout, await stderr);
    }
}

/// <summary>`ra serve` as a user starts it: the built CLI in its own process, on a free loopback port.</summary>
internal sealed class ServeProcess : IAsyncDisposable
{
    readonly Process _process;
    readonly StringBuilder _stderr;
    public Uri Url { get; }
    /// <summary>What the server has written on stderr so far (its log), from its start.</summary>
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    ServeProcess(Process process, Uri url, StringBuilder stderr) { _process = process; Url = url; _stderr = stderr; }

    public static async Task<ServeProcess> Start(params string[] extraArgs)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = ServerTestSupport.RepoRoot };
        foreach (var a in new[] { ServerTestSupport.RaDll, "serve", "--port", "0" }.Concat(extraArgs)) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var stderr = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        // The one stdout line names the address: "ra serve: MODEL on http://127.0.0.1:PORT (…)".
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            while (true)
            {
                var line = await p.StandardOutput.ReadLineAsync(cts.Token)
                    ?? throw new InvalidOperationException($"ra serve exited ({(p.WaitForExit(5000) ? p.ExitCode : -1)}) before listening: {stderr}");
                var at = line.IndexOf("http://", StringComparison.Ordinal);
                if (line.StartsWith("ra serve:") && at >= 0)
                {
                    var url = new Uri(line[at..].Split(' ')[0]);
                    return new ServeProcess(p, url, stderr);
                }
            }
        }
        catch
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.Dispose();
            throw;
        }
    }

    public bool HasExited => _process.HasExited;

    public async ValueTask DisposeAsync()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}

/// <summary>The demo model behind an in-process server (real Kestrel on loopback), with small limits and an API key.</summary>
public sealed class InProcessServer : IAsyncLifetime
{
    public const string Key = "test-key-123";
    public const long MaxBody = 1024 * 1024;
    public const long MaxPixels = 512 * 512;

    IChatModel? _model;
    ApiServer? _server;
    readonly ErrorLog _errors = new();
    /// <summary>Errors the server logged (an unexpected failure is logged with its exception).</summary>
    public string LoggedErrors => _errors.Text;
    public HttpClient Http { get; private set; } = null!;
    public string ModelId => _model!.Id;
    public Uri Url => _server!.Url;

    public async ValueTask InitializeAsync()
    {
        _model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 16);
        _server = await ApiServer.StartAsync(new ServerOptions
        {
            Port = 0, ApiKey = Key, MaxRequestBytes = MaxBody, Images = new ImageLimits { MaxPixels = MaxPixels, MaxImages = 4 },
        }, _model, logging => logging.AddProvider(_errors));
        Http = new HttpClient { BaseAddress = _server.Url, Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
    }

    sealed class ErrorLog : ILoggerProvider, ILogger
    {
        readonly StringBuilder _text = new();
        public string Text { get { lock (_text) return _text.ToString(); } }
        public ILogger CreateLogger(string category) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel level) => level >= LogLevel.Error;
        public void Log<TState>(LogLevel level, EventId id, TState state, Exception? e, Func<TState, Exception?, string> format)
        {
            if (IsEnabled(level)) lock (_text) _text.AppendLine($"{format(state, e)} {e}");
        }
        public void Dispose() { }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (_server is not null) await _server.DisposeAsync();
        _model?.Dispose();
    }
}
