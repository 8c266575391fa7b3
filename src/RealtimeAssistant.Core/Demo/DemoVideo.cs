using System.Text.Json;
using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>
/// Writes a generated clip as an mp4 (mp4v) plus a sidecar "PATH.truth.json" holding the
/// per-second ground-truth captions and the events. Plain backdrops and no sensor noise keep
/// 30 s at 480×480 well under 5 MB.
/// </summary>
public static class DemoVideo
{
    public static Clip Write(string path, int seed, int seconds = 30, int fps = 15, int size = 480)
    {
        if (seconds <= 0 || fps <= 0 || size < 16)
            throw new UserError($"Demo video needs positive seconds and fps and a size of at least 16 (got {seconds} s, {fps} fps, {size} px).");
        var clip = ClipGenerator.Generate(seed, seconds, fps, plain: true);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);

        using (var writer = new VideoWriter(path, FourCC.FromString("mp4v"), fps, new Size(size, size)))
        {
            if (!writer.IsOpened()) throw new UserError($"Cannot write video '{path}': OpenCV could not open an mp4v writer there.");
            for (int f = 0; f < clip.FrameCount; f++)
            {
                using var frame = clip.Render(f, size, size);
                writer.Write(frame);
            }
        }
        File.WriteAllText(path + ".truth.json", TruthJson(clip, seconds, size));
        return clip;
    }

    /// <summary>The sidecar: one caption per second (events since the previous second first) and all events.</summary>
    public static string TruthJson(Clip clip, int seconds, int size)
    {
        var perSecond = new List<object>();
        int prev = -1;
        for (int s = 0; s < seconds; s++)
        {
            int frame = Math.Min(s * clip.Fps, clip.FrameCount - 1);
            perSecond.Add(new { second = s, frame, caption = clip.CaptionFor(prev, frame) });
            prev = frame;
        }
        var events = clip.Events.Select(e => new
        {
            frame = e.Frame,
            time = Math.Round(e.Frame / (double)clip.Fps, 3),
            kind = e.Kind.ToString().ToLowerInvariant(),
            @object = e.Object.Name,
            sentence = e.Sentence,
        });
        var truth = new { seed = clip.Seed, fps = clip.Fps, frames = clip.FrameCount, width = size, height = size, captions = perSecond, events };
        return JsonSerializer.Serialize(truth, new JsonSerializerOptions { WriteIndented = true });
    }
}
