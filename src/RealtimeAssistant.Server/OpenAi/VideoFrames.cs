using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// A video_url part's file → the frames the model reads: <see cref="ImageLimits.VideoFrames"/>
/// frames spread evenly over the clip (the first and the last included), in order, each a
/// separate image of the prompt, as OpenAI's guidance for video does with frames a client sends.
/// The file is opened as `ra annotate` opens one (<see cref="VideoFileSource"/>: bounded waits,
/// a codec that yields no frame refused), from a temporary file deleted straight after.
/// </summary>
public static class VideoFrames
{
    /// <summary>data:video/…;base64,… → the file's bytes (the media type is not trusted: the file is probed).</summary>
    public static byte[] FromDataUri(string url, string param)
    {
        var mediaType = DataUri.MediaType(url, "video", param, "invalid_video_url");
        if (!mediaType.StartsWith("video/", StringComparison.Ordinal))
            throw ApiError.BadRequest($"a video_url data: URI must be a video (data:video/mp4;base64,...), not '{(mediaType.Length > 40 ? mediaType[..40] + "…" : mediaType)}'", param, "invalid_video_url");
        return [.. DataUri.Payload(url, "video", "data:video/mp4;base64,...", param, "invalid_video_url", "invalid_video")];
    }

    /// <summary>The clip's frames to read: <paramref name="count"/> spread over it (all of a shorter clip), each checked against the pixel limit.</summary>
    public static List<Mat> Sample(byte[] file, int count, long maxPixels, string param, CancellationToken ct)
    {
        var path = Path.Combine(Path.GetTempPath(), $"ra-video-{Guid.NewGuid():N}");
        File.WriteAllBytes(path, file);
        var frames = new List<Mat>();
        try
        {
            // A container may not say how many frames it holds: count them first (grabbed, not converted).
            long total;
            using (var probe = Open(path, param)) total = probe.FrameCount ?? probe.Skip(long.MaxValue, ct);
            if (total < 1) throw ApiError.BadRequest("the video holds no frames", param, "invalid_video");
            var wanted = Enumerable.Range(0, (int)Math.Min(count, total))
                .Select(i => count == 1 ? 0 : (long)Math.Round(i * (total - 1) / (double)(Math.Min(count, total) - 1))).Distinct().ToList();
            using var source = Open(path, param);
            long at = 0;
            foreach (var index in wanted)
            {
                ct.ThrowIfCancellationRequested();
                at += source.Skip(index - at, ct);
                using var frame = source.Read(ct);
                if (frame is null) break; // the count ran past the frames that decode
                at++;
                if ((long)frame.Image.Width * frame.Image.Height > maxPixels)
                    throw ApiError.BadRequest($"the video is {frame.Image.Width}x{frame.Image.Height} pixels a frame, over this server's limit of {maxPixels:N0}", param, "image_too_large");
                frames.Add(frame.Image.Clone());
            }
            if (frames.Count == 0) throw ApiError.BadRequest("the video holds no frame that decodes", param, "invalid_video");
            return frames;
        }
        catch
        {
            foreach (var f in frames) f.Dispose();
            throw;
        }
        finally { File.Delete(path); }
    }

    static VideoFileSource Open(string path, string param)
    {
        try { return new VideoFileSource(path); }
        catch (UserError e) { throw ApiError.BadRequest($"the video cannot be read: {e.Message.Replace(Path.GetFileName(path), "it")}", param, "invalid_video"); }
    }
}
