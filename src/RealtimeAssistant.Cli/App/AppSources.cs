using RealtimeAssistant.Capture;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Cli.App;

/// <summary>The app's frame-source options: adds the "synthetic[:seed=N]" scheme (the scene world, 480×480 at 15 fps, looping).</summary>
public static class AppSources
{
    public const int SyntheticSize = 480, SyntheticFps = 15, SyntheticSeconds = 60;

    public static FrameSourceOptions Options(bool realtime = false, bool loop = false) => new()
    {
        Realtime = realtime,
        Loop = loop,
        Schemes = new Dictionary<string, Func<string, FrameSourceOptions, IFrameSource>> { ["synthetic"] = Synthetic },
    };

    /// <summary>"synthetic" or "synthetic:seed=7": a generated clip of the scene world; live (paced) unless the options say file speed.</summary>
    static IFrameSource Synthetic(string spec, FrameSourceOptions options)
    {
        int seed = 1;
        var args = spec.Split(':', 2);
        if (args.Length == 2)
            foreach (var kv in args[1].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var p = kv.Split('=', 2);
                if (p.Length == 2 && p[0] == "seed" && int.TryParse(p[1], out var s)) seed = s;
                else throw new UserError($"synthetic source: unknown argument '{kv}' (expected seed=N)");
            }
        var clip = ClipGenerator.Generate(seed, SyntheticSeconds, SyntheticFps, plain: true);
        long frames = clip.FrameCount;
        return new GeneratedFrameSource(i => clip.Render((int)(i % frames), SyntheticSize, SyntheticSize), SyntheticFps,
            count: options.Loop ? null : frames, realtime: options.Realtime, description: $"synthetic scene seed {seed}");
    }
}
