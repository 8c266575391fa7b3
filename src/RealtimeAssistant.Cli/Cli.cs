using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using OpenCvSharp;
using RealtimeAssistant.Model;
using Spectre.Console;

namespace RealtimeAssistant.Cli;

/// <summary>Shared CLI plumbing: user errors as one line, common options, logging.</summary>
public static partial class Cli
{
    /// <summary>Exit code of a user's mistake: a bad argument, file or option (one line on stderr).</summary>
    public const int UserErrorCode = 2;
    /// <summary>Exit code of `live` when its camera or stream was lost for good (retried for --give-up-after).</summary>
    public const int SourceLostCode = 3;

    /// <summary>Where the GLSL files are, for an installed `ra` (default: shaders/ beside the binary or above it).</summary>
    static readonly Option<string?> Shaders = new("--shaders")
    {
        Description = $"folder of the GLSL shaders (default: shaders/ beside ra or above it; or ${Rendering.ShaderDirectory.EnvVar})", Recursive = true,
    };

    /// <summary>
    /// Parses and runs. A parse error (a bad value, an unknown option, a missing one) is one line
    /// naming the option and what was wrong, then where the help is, and exit 2 — not the help dump.
    /// </summary>
    public static async Task<int> Main(RootCommand root, string[] args)
    {
        QuietNativeLogs();
        root.Options.Add(Shaders);
        // `ra` alone asks what there is: the commands, as --help lists them.
        var parse = root.Parse(args.Length == 0 ? ["--help"] : args);
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {DescribeErrors(parse)}");
            Console.Error.WriteLine($"see '{CommandPath(parse.CommandResult)} --help'");
            return UserErrorCode;
        }
        if (parse.GetValue(Shaders) is { } shaders) Environment.SetEnvironmentVariable(Rendering.ShaderDirectory.EnvVar, shaders);
        if (parse.CommandResult.Command.Options.Any(o => o.Name is "--json" or "--jsonl" && o is Option<string?> json && parse.GetValue(json) == "-"))
        {
            // `--json -` (and `--jsonl -`): stdout holds the JSON alone, so it pipes into jq; tables and progress go to stderr.
            _jsonOut = Console.Out;
            Console.SetOut(Console.Error);
            AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        }
        return await parse.InvokeAsync();
    }

    /// <summary>
    /// OpenCV and its bundled FFmpeg print to stderr themselves ("moov atom not found", "[ WARN:0]
    /// cap.cpp …") before our one-line error; errors reach the user through our messages instead.
    /// Set in the native environment (OpenCV reads it with getenv) before OpenCV first loads; a
    /// value the user set is kept, so OPENCV_LOG_LEVEL=DEBUG still debugs.
    /// </summary>
    static void QuietNativeLogs()
    {
        if (!OperatingSystem.IsLinux()) return;
        foreach (var (name, value) in new[] { ("OPENCV_LOG_LEVEL", "ERROR"), ("OPENCV_FFMPEG_DEBUG", "1"), ("OPENCV_FFMPEG_LOGLEVEL", "-8") })
            if (Environment.GetEnvironmentVariable(name) is null) { setenv(name, value, 0); Environment.SetEnvironmentVariable(name, value); }
    }

    [System.Runtime.InteropServices.DllImport("libc", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    static extern int setenv(string name, string value, int overwrite);

    /// <summary>The parse errors as one line, in plain words ("a whole number", not "System.Int32").</summary>
    public static string DescribeErrors(ParseResult parse)
    {
        var messages = parse.Errors.Select(e => TypeName().Replace(e.Message, m => m.Groups[1].Value switch
        {
            "System.Int32" or "System.Int64" or "System.UInt64" => "a whole number",
            "System.Double" or "System.Single" => "a number",
            "System.Boolean" => "true or false",
            var t => t.StartsWith("System.Nullable`1[") ? "a number" : t.Split('.')[^1],
        })).Distinct().ToList();
        // A group (`ra bench`) given no command: name the ones it has.
        var command = parse.CommandResult.Command;
        if (command.Subcommands.Count > 0 && command.Action is null && parse.Errors.Any(e => e.Message.StartsWith("Required command", StringComparison.Ordinal)))
            messages = [$"{CommandPath(parse.CommandResult)} needs a command: {string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))}",
                .. messages.Where(m => !m.StartsWith("Required command", StringComparison.Ordinal))];
        return string.Join("; ", messages.Select(m => m.TrimEnd('.'))).ReplaceLineEndings(" ");
    }

    [GeneratedRegex(@"expected type '([^']+)'")]
    private static partial Regex TypeName();

    static string CommandPath(CommandResult? result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Insert(0, c.Command is RootCommand ? "ra" : c.Command.Name);
        return names.Count == 0 ? "ra" : string.Join(' ', names);
    }

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

    /// <summary>--threads: torch's intra-op threads; at least 1 (0 or less is refused when parsing).</summary>
    public static Option<int?> ThreadsOption(string description = "torch threads (default: 1 for a model of width ≤ 128, else all cores)")
    {
        var o = new Option<int?>("--threads") { Description = description };
        Check(o, v => v is < 1 and var n ? $"--threads must be 1 or more, got {n}" : null);
        return o;
    }

    /// <summary>--give-up-after SECONDS: how long a camera or stream that gave no frame is reconnected before it is lost for good (then exit <see cref="SourceLostCode"/>).</summary>
    public static Option<double> GiveUpOption(string command)
    {
        var o = new Option<double>("--give-up-after")
        {
            Description = $"a camera or stream that gives no frame for this many seconds is lost for good: {command} says so and exits {SourceLostCode} (it reconnects until then; one that never gave a frame is exit {UserErrorCode})",
            DefaultValueFactory = _ => 30,
        };
        Check(o, v => v is > 0 && !double.IsInfinity(v) ? null : $"--give-up-after must be a number of seconds > 0, got {v}");
        return o;
    }

    /// <summary>A run whose camera or stream was lost for good: one line saying so, and <see cref="SourceLostCode"/>; else 0.</summary>
    public static int ReportLost(Capture.IFrameSource source, string command)
    {
        if (source is not Capture.IReconnectingSource { LostReason: { } reason }) return 0;
        Console.Error.WriteLine($"{command}: {reason}");
        return SourceLostCode;
    }

    /// <summary>--display-fps: the render rate, in (0, 1000].</summary>
    public static Option<double> DisplayFpsOption()
    {
        var o = new Option<double>("--display-fps") { Description = "render rate, frames per second (0 < fps ≤ 1000)", DefaultValueFactory = _ => 60 };
        Check(o, v => v is not (> 0 and <= 1000) ? $"--display-fps must be in (0, 1000], got {v}" : null);
        return o;
    }

    /// <summary>
    /// A number of seconds a run lasts or waits, refused while parsing unless in (0, <paramref name="max"/>]:
    /// NaN reached TimeSpan.FromSeconds and threw past every handler, and 0 or a negative one ran nothing and exited 0.
    /// </summary>
    public static Option<double> Seconds(Option<double> option, double max)
    {
        Check(option, v => v > 0 && v <= max ? null : SecondsError(option.Name, v, max));
        return option;
    }

    /// <inheritdoc cref="Seconds(Option{double}, double)"/>
    public static Option<double?> Seconds(Option<double?> option, double max)
    {
        Check(option, v => v is not { } s || (s > 0 && s <= max) ? null : SecondsError(option.Name, s, max));
        return option;
    }

    static string SecondsError(string name, double v, double max) =>
        $"{name} must be a number of seconds in (0, {max.ToString(System.Globalization.CultureInfo.InvariantCulture)}], got {v.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>
    /// A range check on an option's value. A token that does not parse is left to the parser, which
    /// reports it as a parse error; reading its value here would throw past every handler.
    /// </summary>
    static void Check<T>(Option<T> option, Func<T?, string?> error) => option.Validators.Add(r =>
    {
        T? value;
        try { value = r.GetValueOrDefault<T>(); }
        catch (InvalidOperationException) { return; }
        if (error(value) is { } message) r.AddError(message);
    });

    /// <summary>
    /// A bench's `--split`: the generated clips it runs on, held-out (what results are reported on,
    /// the default) or validation (<paramref name="chosen"/>: what a setting is chosen on).
    /// </summary>
    public static Option<string> ClipSplitOption(string chosen)
    {
        var split = new Option<string>("--split") { Description = $"held-out (what results are reported on) or validation (what {chosen} is chosen on)", DefaultValueFactory = _ => "held-out" };
        split.AcceptOnlyFromAmong("held-out", "validation");
        return split;
    }

    /// <summary>The first clip seed of the split <see cref="ClipSplitOption"/> gave.</summary>
    public static int FirstClipSeed(string? split) => split == "validation" ? Demo.ClipGenerator.ValidationSeed : Demo.ClipGenerator.HeldOutSeed;

    public static Option<string> DeviceOption() => new("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
    public static Option<string> DTypeOption() => new("--dtype") { Description = "auto, f32, bf16 or f16", DefaultValueFactory = _ => "auto" };
    public static Option<string?> JsonOption(string what) => WritesTo(new Option<string?>("--json") { Description = what }, folder: false);

    /// <summary>
    /// Refuses, when parsing, an output path nothing can be written at, so a command that runs for
    /// minutes does not fail at its end, when it saves.
    /// </summary>
    public static Option<T> WritesTo<T>(Option<T> option, bool folder) where T : class?
    {
        option.Validators.Add(r =>
        {
            // Only a path the user gave: a default is no mistake of theirs, and `--help` must answer anywhere.
            if (!r.Implicit && r.GetValueOrDefault<T>() is string path && UnwritablePath(path, folder) is { } why) r.AddError($"{option.Name}: {why}");
        });
        return option;
    }

    /// <summary>
    /// Why <paramref name="path"/> (a file, or a folder a command fills) cannot be written, or null
    /// when it can. The nearest folder that exists takes a probe file, deleted as it closes: only
    /// writing shows what the system allows (root passes every permission check, /proc refuses it).
    /// </summary>
    public static string? UnwritablePath(string path, bool folder)
    {
        if (!folder && path == "-") return null;
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return $"'{path}' is not a path ({e.Message})"; }
        if (!folder && Directory.Exists(full)) return $"{path} is a folder; give a file name";
        if (folder && File.Exists(full)) return $"{path} is a file; give a folder";
        var dir = folder ? full : Path.GetDirectoryName(full);
        while (dir is not null && !Directory.Exists(dir))
        {
            if (File.Exists(dir)) return $"cannot write {path}: {dir} is a file";
            dir = Path.GetDirectoryName(dir);
        }
        if (dir is null) return $"cannot write {path}: no folder of it exists";
        try
        {
            using var probe = new FileStream(Path.Combine(dir, $".ra-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}"),
                FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (UnauthorizedAccessException) { return $"cannot write {path}: permission denied in {dir}"; }
        catch (IOException) { return $"cannot write {path}: {dir} takes no new files"; }
        return null;
    }
    public static Option<string> WeightsOption() => new("--weights")
    {
        Description = "how the matmul weights are stored: auto (on the CPU a checkpoint stored in f16 or in bf16 keeps its own weights; otherwise dense in --dtype), f32, bf16, f16, or q8 (int8 with a scale per 32 weights); converted at load",
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

    /// <summary>Whether the user gave <paramref name="option"/> (not just its default).</summary>
    public static bool IsExplicit(ParseResult pr, Option option) => pr.GetResult(option) is { Implicit: false };

    public static ILoggerFactory Logging(bool verbose = false) => LoggerFactory.Create(b =>
        b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
         .SetMinimumLevel(verbose ? Microsoft.Extensions.Logging.LogLevel.Debug : Microsoft.Extensions.Logging.LogLevel.Warning));

    /// <summary>The repository's bundled demo model, found by walking up from the binary.</summary>
    /// <summary>
    /// The bundled media folder: the one holding demo.mp4 (a bare "media" would also find a
    /// system's /media above a published binary).
    /// </summary>
    public static string? MediaFolder() => FindRepoPath(Path.Combine("media", "demo.mp4")) is { } demo ? Path.GetDirectoryName(demo) : null;

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

    /// <summary>An image file, or "-": one piped into standard input.</summary>
    public static Mat ReadImage(string path)
    {
        if (path == "-") return DecodeImage(ReadStdin(), "from standard input");
        if (!File.Exists(path))
            throw new UserError(Output.MediaProbe.IsHttp(path)
                ? $"--image takes a file, not a URL: {path} (fetch it into standard input: curl -s URL | ra caption --image -)"
                : $"image not found: {path}");
        Mat img;
        try { img = Cv2.ImRead(path, ImreadModes.Color); }
        catch (OpenCVException e) { throw new UserError($"cannot decode image {path}: {e.Message}"); }
        if (img.Empty()) { img.Dispose(); throw new UserError($"cannot decode image {path} (not an image, or a format OpenCV cannot read)"); }
        return img;
    }

    static byte[] ReadStdin()
    {
        if (!Console.IsInputRedirected)
            throw new UserError("'-' reads an image piped into standard input, and nothing is piped in here (e.g. curl -s URL | ra caption --image -)");
        using var stdin = Console.OpenStandardInput();
        using var bytes = new MemoryStream();
        stdin.CopyTo(bytes);
        return bytes.ToArray();
    }

    static Mat DecodeImage(byte[] bytes, string what)
    {
        if (bytes.Length == 0) throw new UserError($"no image came {what}");
        Mat img;
        try { img = Cv2.ImDecode(bytes, ImreadModes.Color); }
        catch (OpenCVException e) { throw new UserError($"cannot decode the image {what}: {e.Message}"); }
        if (img.Empty()) { img.Dispose(); throw new UserError($"cannot decode the image {what} (not an image, or a format OpenCV cannot read)"); }
        return img;
    }

    /// <summary>The engine options a command's flags give; the engine reports its weights on stderr in one line.</summary>
    public static EngineOptions EngineOptions(ParseResult pr, Option<string> device, Option<string> dtype, Option<string> weights, Option<long?>? maxPixels = null) =>
        new() { Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!, Weights = pr.GetValue(weights)!, MaxPixels = maxPixels is null ? null : pr.GetValue(maxPixels), Report = Console.Error.WriteLine };

    public static Option<long?> MaxPixelsOption() => new("--max-pixels")
    {
        Description = "Qwen2-VL and Qwen2.5-VL: the most pixels a frame or image is resized to (the processor's max_pixels; a frame's visual tokens and vision time scale with it); default: the model's preprocessor_config.json",
    };

    /// <summary>The process's stdout when `--json -` sent everything else to stderr.</summary>
    static TextWriter? _jsonOut;

    /// <summary>Where `-` writes JSON: the process's stdout, whatever else was sent to stderr.</summary>
    public static TextWriter JsonStdout => _jsonOut ?? Console.Out;

    public static void WriteJson(string path, object value)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(value, JsonOptions);
        if (path == "-") { JsonStdout.WriteLine(json); JsonStdout.Flush(); }
        else
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir != null) Directory.CreateDirectory(dir);
            File.WriteAllText(path, json);
            AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(path)}[/]");
        }
    }

    /// <summary>How every JSON report is written: indented, a number with no value as null.</summary>
    internal static readonly System.Text.Json.JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Converters = { new FiniteOrNull<double>(), new FiniteOrNull<float>() } };

    /// <summary>
    /// A number with no value (a percentile of no reads: NaN) as JSON's null: JSON has no NaN, and
    /// the serializer would throw after the run, losing what it measured.
    /// </summary>
    internal sealed class FiniteOrNull<T> : System.Text.Json.Serialization.JsonConverter<T> where T : struct, System.Numerics.IFloatingPointIeee754<T>
    {
        public override T Read(ref System.Text.Json.Utf8JsonReader reader, Type type, System.Text.Json.JsonSerializerOptions options) =>
            reader.TokenType == System.Text.Json.JsonTokenType.Null ? T.NaN : T.CreateChecked(reader.GetDouble());

        public override void Write(System.Text.Json.Utf8JsonWriter writer, T value, System.Text.Json.JsonSerializerOptions options)
        {
            if (!T.IsFinite(value)) writer.WriteNullValue();
            else if (value is float f) writer.WriteNumberValue(f); // as float prints it, not widened
            else writer.WriteNumberValue(double.CreateChecked(value));
        }

        public override bool HandleNull => true;
    }
}
