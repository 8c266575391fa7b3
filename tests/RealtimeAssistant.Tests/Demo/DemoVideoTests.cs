using System.Text.Json;
using OpenCvSharp;
using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class DemoVideoTests
{
    [Fact]
    public void WrittenVideoReadsBackWithEveryFrameAndTruth()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ra-demo-" + Guid.NewGuid().ToString("N"));
        string path = Path.Combine(dir, "clip.mp4");
        try
        {
            var clip = DemoVideo.Write(path, seed: 7, seconds: 2, fps: 10, size: 96);
            Assert.Equal(20, clip.FrameCount);
            using var cap = new VideoCapture(path);
            Assert.True(cap.IsOpened());
            int frames = 0;
            using var m = new Mat();
            while (cap.Read(m) && !m.Empty())
            {
                Assert.Equal(new Size(96, 96), m.Size());
                frames++;
            }
            Assert.Equal(20, frames);

            using var truth = JsonDocument.Parse(File.ReadAllText(path + ".truth.json"));
            var captions = truth.RootElement.GetProperty("captions");
            Assert.Equal(2, captions.GetArrayLength());
            Assert.Equal(clip.CaptionFor(-1, 0), captions[0].GetProperty("caption").GetString());
            Assert.Equal(clip.Events.Count, truth.RootElement.GetProperty("events").GetArrayLength());
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BadArgumentsAreUserErrors() =>
        Assert.Throws<UserError>(() => DemoVideo.Write(Path.Combine(Path.GetTempPath(), "x.mp4"), 1, seconds: 0));
}
