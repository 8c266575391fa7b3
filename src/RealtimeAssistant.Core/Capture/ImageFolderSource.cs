using System.Diagnostics;
using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>A folder of images (jpg, png, bmp) played in name order at a given frame rate.</summary>
public sealed class ImageFolderSource : IFrameSource
{
    static readonly string[] Extensions = [".jpg", ".jpeg", ".png", ".bmp"];
    readonly string[] files;
    readonly FrameSourceOptions options;
    readonly Pacer? pacer;
    long index;
    bool ended;

    public string Description { get; }
    public double Fps { get; }
    public bool IsLive => options.Realtime;
    public long? FrameCount => files.Length;
    public string Status => ended ? "ended" : $"image {index % files.Length + 1}/{files.Length}";

    public ImageFolderSource(string folder, FrameSourceOptions? options = null)
    {
        this.options = options ?? new FrameSourceOptions();
        if (!Directory.Exists(folder)) throw new UserError($"image folder not found: {folder}");
        files = Directory.EnumerateFiles(folder)
            .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(NaturalOrder.Instance)
            .ToArray();
        if (files.Length == 0) throw new UserError($"no images (jpg, png, bmp) in folder {folder}");
        if (this.options.Fps is not (> 0 and < 1000)) throw new UserError($"frame rate for an image folder must be between 0 and 1000, not {this.options.Fps}");
        Fps = this.options.Fps;
        Description = $"folder {folder} ({files.Length} images, {Fps:0.##} fps)";
        if (this.options.Realtime) pacer = new Pacer(Fps);
    }

    public Frame? Read(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (ended || (index >= files.Length && !options.Loop)) { ended = true; return null; }
        pacer?.WaitForNext(ct);
        var file = files[index % files.Length];
        var image = Cv2.ImRead(file, ImreadModes.Color);
        if (image.Empty())
        {
            image.Dispose();
            throw new UserError($"cannot decode image {file}");
        }
        var frame = new Frame(image, index, TimeSpan.FromSeconds(index / Fps), Stopwatch.GetTimestamp());
        index++;
        return frame;
    }

    public void Dispose() => ended = true;
}
