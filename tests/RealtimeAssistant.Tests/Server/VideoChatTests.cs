using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using OpenCvSharp;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Inference;
using RealtimeAssistant.Server.OpenAi;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// A video_url part (vLLM's extension of OpenAI's chat format): the clip, inline or by URL, is
/// read as its frames spread over it, each an image of the prompt, so its answer is the answer to
/// those frames sent as images; a file that is no video, or too many frames, is a 400.
/// </summary>
public class VideoChatTests(ITestOutputHelper log)
{
    /// <summary>An mp4v clip of two scenes, 12 frames each; its bytes, and its frames as they decode.</summary>
    static (byte[] File, List<Mat> Frames) Clip()
    {
        var path = Path.Combine(TestMedia.TempDir("video-chat"), "two-scenes.mp4");
        using (var writer = new VideoWriter(path, FourCC.MP4V, 12, new OpenCvSharp.Size(128, 128)))
        {
            Assert.True(writer.IsOpened(), "OpenCV could not open an mp4v writer");
            foreach (var seed in new[] { 21, 22 })
            {
                using var scene = SceneRenderer.Render(SceneSampler.Sample(new Random(seed), 2, 3), 128, 128);
                for (int i = 0; i < 12; i++) writer.Write(scene);
            }
        }
        var frames = new List<Mat>();
        using var capture = new VideoCapture(path);
        for (var m = new Mat(); capture.Read(m) && !m.Empty(); m = new Mat()) frames.Add(m);
        return (File.ReadAllBytes(path), frames);
    }

    static JsonObject Body(string model, params JsonNode[] parts)
    {
        var content = new JsonArray(parts.Append(new JsonObject { ["type"] = "text", ["text"] = "describe the scene ." }).ToArray());
        return new JsonObject
        {
            ["model"] = model, ["temperature"] = 0, ["max_tokens"] = 16,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        };
    }

    static JsonObject Video(string url) => new() { ["type"] = "video_url", ["video_url"] = new JsonObject { ["url"] = url } };
    static JsonObject Image(Mat m) => new() { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = "data:image/png;base64," + Convert.ToBase64String(m.ImEncode(".png")) } };

    static async Task<(HttpStatusCode Status, JsonNode Body)> Post(HttpClient http, JsonObject body)
    {
        using var r = await http.PostAsync("v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        return (r.StatusCode, JsonNode.Parse(await r.Content.ReadAsStringAsync())!);
    }

    [Fact]
    public async Task AVideoUrl_IsReadAsItsFramesSpreadOverTheClip_AndBadVideosAre400s()
    {
        var (file, frames) = Clip();
        Assert.Equal(24, frames.Count);
        await using var site = await LoopbackSite.Start(a => a.MapGet("/clip.mp4", () => Results.Bytes(file, "video/mp4")));
        using var model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 4);
        var limits = new ImageLimits { MaxPixels = 512 * 512, MaxImages = 8, VideoFrames = 4, RemoteUrls = ImageUrlPolicy.Any };
        await using var server = await ApiServer.StartAsync(new ServerOptions { Port = 0, Images = limits }, model);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(2) };

        // Four frames spread over 24, the first and the last included: 0, 8, 15, 23.
        var (s1, asImages) = await Post(http, Body(model.Id, [.. new[] { 0, 8, 15, 23 }.Select(i => Image(frames[i]))]));
        Assert.True(s1 == HttpStatusCode.OK, asImages.ToJsonString());
        var dataUri = "data:video/mp4;base64," + Convert.ToBase64String(file);
        var (s2, asVideo) = await Post(http, Body(model.Id, Video(dataUri)));
        Assert.True(s2 == HttpStatusCode.OK, asVideo.ToJsonString());
        string Text(JsonNode c) => c["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        Assert.Equal(Text(asImages), Text(asVideo));
        Assert.Equal(asImages["usage"]!.ToJsonString(), asVideo["usage"]!.ToJsonString());
        var (s3, byUrl) = await Post(http, Body(model.Id, Video(site.Urls.First() + "/clip.mp4")));
        Assert.True(s3 == HttpStatusCode.OK, byUrl.ToJsonString());
        Assert.Equal(Text(asVideo), Text(byUrl));

        async Task Refused(string code, params JsonNode[] parts)
        {
            var (status, body) = await Post(http, Body(model.Id, parts));
            Assert.True(status == HttpStatusCode.BadRequest, body.ToJsonString());
            Assert.Equal(code, body["error"]!["code"]!.GetValue<string>());
            Assert.DoesNotContain('\n', body["error"]!["message"]!.GetValue<string>());
        }
        var noise = new byte[4096];
        new Random(1).NextBytes(noise);
        await Refused("invalid_video", Video("data:video/mp4;base64," + Convert.ToBase64String(noise)));
        await Refused("invalid_video", Video("data:video/mp4;base64," + Convert.ToBase64String(file[..(file.Length / 8)])));
        await Refused("invalid_video_url", Video("data:image/png;base64,AAAA"));
        await Refused("invalid_video_url", Video("file:///etc/passwd"));
        await Refused("invalid_video_url", Video(site.Urls.First() + "/absent.mp4"));
        await Refused("too_many_images", Video(dataUri), Image(frames[0]), Image(frames[1]), Image(frames[2]), Image(frames[3]), Image(frames[4]));

        // A server that gives a video no time to be read says so, in one line.
        await using var hasty = await ApiServer.StartAsync(new ServerOptions { Port = 0, Images = limits with { VideoReadTimeout = TimeSpan.FromTicks(1) } }, model);
        using var hastyHttp = new HttpClient { BaseAddress = hasty.Url, Timeout = TimeSpan.FromMinutes(2) };
        var (sh, slow) = await Post(hastyHttp, Body(model.Id, Video(dataUri)));
        Assert.True(sh == HttpStatusCode.BadRequest, slow.ToJsonString());
        Assert.Contains("could not be read within", slow["error"]!["message"]!.GetValue<string>());

        // Still whole.
        var (s4, again) = await Post(http, Body(model.Id, Video(dataUri)));
        Assert.Equal(HttpStatusCode.OK, s4);
        Assert.Equal(Text(asVideo), Text(again));
        foreach (var f in frames) f.Dispose();
    }

    /// <summary>
    /// An AV1 clip, which OpenCV's FFmpeg cannot decode and Debian's ffmpeg does: its answer is the
    /// answer to its frames, as ffmpeg decodes them, sent as images.
    /// </summary>
    [Fact]
    public async Task AnAv1Video_IsReadThroughFfmpeg_AsItsFrames()
    {
        var path = TestMedia.Av1Clip(TestMedia.TempDir("video-chat-av1"), 8, log);
        var frames = new List<Mat>();
        using (var source = new RealtimeAssistant.Capture.VideoFileSource(path))
            while (source.Read() is { } f) using (f) frames.Add(f.Image.Clone());
        Assert.Equal(8, frames.Count);
        using var model = SerialChatModel.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }, queueCapacity: 4);
        var limits = new ImageLimits { MaxPixels = 512 * 512, MaxImages = 8, VideoFrames = 4 };
        await using var server = await ApiServer.StartAsync(new ServerOptions { Port = 0, Images = limits }, model);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(2) };

        // Four frames spread over 8: 0, 2, 5, 7.
        var (s1, asImages) = await Post(http, Body(model.Id, [.. new[] { 0, 2, 5, 7 }.Select(i => Image(frames[i]))]));
        Assert.True(s1 == HttpStatusCode.OK, asImages.ToJsonString());
        var (s2, asVideo) = await Post(http, Body(model.Id, Video("data:video/mp4;base64," + Convert.ToBase64String(File.ReadAllBytes(path)))));
        Assert.True(s2 == HttpStatusCode.OK, asVideo.ToJsonString());
        string Text(JsonNode c) => c["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        Assert.Equal(Text(asImages), Text(asVideo));
        foreach (var f in frames) f.Dispose();
    }
}
