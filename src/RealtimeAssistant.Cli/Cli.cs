using System.CommandLine;
using Microsoft.Extensions.Logging;
using OpenCvSharp;
using RealtimeAssistant.Model;
using Spectre.Console;

namespace RealtimeAssistant.Cli;

/// <summary>Shared CLI plumbing: user errors as one line, common options, logging.</summary>
public static class Cli
{
    /// <summary>
    /// Runs a command body. A <see cref="UserError"/> (or a file the user named being unreadable)
    /// prints one line on stderr and exits 2; Ctrl+C exits 130; anything else is a bug and keeps its trace.
    /// </summary>
    public static async Task<int> Run(Func<CancellationToken, Task<int>> body, CancellationToken ct)
    {
        try { return await body(ct); }
        catch (UserError e) { Console.Error.WriteLine($"error: {e.Message}"); return 2; }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { Console.Error.WriteLine("interrupted"); return 130; }
        catch (FileNotFoundException e) { Console.Error.WriteLine($"error: file not found: {e.FileName ?? e.Message}"); return 2; }
        catch (DirectoryNotFoundException e) { Console.Error.WriteLine($"error: {e.Message}"); return 2; }
        catch (UnauthorizedAccessException e) { Console.Error.WriteLine($"error: {e.Message}"); return 2; }
    }

    public static Command WithAction(this Command cmd, Func<ParseResult, CancellationToken, Task<int>> action)
    {
        cmd.SetAction((pr, ct) => Run(c => action(pr, c), ct));
        return cmd;
    }

    public static Option<string> DeviceOption() => new("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
    public static Option<string> DTypeOption() => new("--dtype") { Description = "auto, f32, bf16 or f16", DefaultValueFactory = _ => "auto" };
    public static Option<string?> JsonOption(string what) => new("--json") { Description = what };
    public static Option<string> WeightsOption() => new("--weights")
    {
        Description = "how the matmul weights are stored: auto (dense in --dtype), f32, bf16, or q8 (int8 with a scale per 32 weights); converted at load",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<string?> FrameBandOption() => new("--frame-band")
    {
        Description = "frames a new frame attends, itself included: N, or 'window' for all W (default: the span the model was trained with, ra_frame_band); the caption always sees the window",
    };

    /// <summary>--frame-band's value for StreamingOptions.FrameBand: null (the model's), W ('window') or N.</summary>
    public static int? FrameBand(string? value, int window) => value switch
    {
        null => null,
        "window" => window,
        _ when int.TryParse(value, out var n) => n,
        _ => throw new UserError($"--frame-band takes a number of frames or 'window', got '{value}'"),
    };

    public static ILoggerFactory Logging(bool verbose = false) => LoggerFactory.Create(b =>
        b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
         .SetMinimumLevel(verbose ? Microsoft.Extensions.Logging.LogLevel.Debug : Microsoft.Extensions.Logging.LogLevel.Warning));

    /// <summary>The repository's bundled demo model, found by walking up from the binary.</summary>
    public static string? FindRepoPath(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
        }
        var cwd = Path.Combine(Environment.CurrentDirectory, relative);
        return File.Exists(cwd) || Directory.Exists(cwd) ? cwd : null;
    }

    public static Mat ReadImage(string path)
    {
        if (!File.Exists(path)) throw new UserError($"image not found: {path}");
        Mat img;
        try { img = Cv2.ImRead(path, ImreadModes.Color); }
        catch (OpenCVException e) { throw new UserError($"cannot decode image {path}: {e.Message}"); }
        if (img.Empty()) { img.Dispose(); throw new UserError($"cannot decode image {path} (not an image, or a format OpenCV cannot read)"); }
        return img;
    }

    /// <summary>The engine options a command's flags give; the engine reports its weights on stderr in one line.</summary>
    public static EngineOptions EngineOptions(ParseResult pr, Option<string> device, Option<string> dtype, Option<string> weights) =>
        new() { Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!, Weights = pr.GetValue(weights)!, Report = Console.Error.WriteLine };

    public static void WriteJson(string path, object value)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(value, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        if (path == "-") Console.Out.WriteLine(json);
        else
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir != null) Directory.CreateDirectory(dir);
            File.WriteAllText(path, json);
            AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(path)}[/]");
        }
    }
}
