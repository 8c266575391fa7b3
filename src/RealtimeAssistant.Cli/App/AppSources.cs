using RealtimeAssistant.Capture;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Cli.App;

/// <summary>The app's frame-source options: adds the "synthetic[:seed=N,size=N,fps=N]" scheme (the scene world, by default 480×480 at 15 fps).</summary>
public static class AppSources
{
    public const int SyntheticSize = 480, SyntheticFps = 15, SyntheticSeconds = 60;

    /// <param name="pipesAsFiles">a FIFO or "-" is read as a file, every frame to its end (annotate, stream), not as a camera</param>
    /// <param name="urlsAsFiles">so is every stream URL, a camera's too (annotate)</param>
    public static FrameSourceOptions Options(bool realtime = false, bool loop = false, bool pipesAsFiles = false, bool urlsAsFiles = false) => new()
    {
        Realtime = realtime,
        Loop = loop,
        PipesAsFiles = pipesAsFiles,
        UrlsAsFiles = urlsAsFiles,
        Schemes = new Dictionary<string, Func<string, FrameSourceOptions, IFrameSource>> { ["synthetic"] = Synthetic },
    };

    /// <summary>
    /// "synthetic" or "synthetic:seed=7[,size=64][,fps=10]": a generated clip of the scene world (default 480×480 at 15 fps);
    /// live (paced) unless the options say file speed. Small frames keep many streams cheap (the cluster's tests and bench).
    /// </summary>
    static IFrameSource Synthetic(string spec, FrameSourceOptions options)
    {
        int seed = 1, size = SyntheticSize, fps = SyntheticFps;
        var args = spec.Split(':', 2);
        if (args.Length == 2)
            foreach (var kv in args[1].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var p = kv.Split('=', 2);
                int v = 0;
                if (p.Length != 2 || !int.TryParse(p[1], out v)) throw new UserError($"synthetic source: '{kv}' is not NAME=NUMBER (seed, size, fps)");
                switch (p[0])
                {
                    case "seed": seed = v; break;
                    case "size" when v is >= 16 and <= 2048: size = v; break;
                    case "fps" when v is >= 1 and <= 120: fps = v; break;
                    case "size": throw new UserError($"synthetic source: size must be 16..2048, got {v}");
                    case "fps": throw new UserError($"synthetic source: fps must be 1..120, got {v}");
                    default: throw new UserError($"synthetic source: unknown argument '{kv}' (expected seed=N, size=N, fps=N)");
                }
            }
        var clip = ClipGenerator.Generate(seed, SyntheticSeconds, fps, plain: true);
        long frames = clip.FrameCount;
        return new GeneratedFrameSource(i => clip.Render((int)(i % frames), size, size), fps,
            count: options.Loop ? null : frames, realtime: options.Realtime, description: $"synthetic scene seed {seed}",
            start: options.FirstFrame(fps));
    }
}
