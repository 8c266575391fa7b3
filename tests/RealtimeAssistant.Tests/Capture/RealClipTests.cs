using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// Footage nobody here made: OpenCV's sample videos from Debian's opencv-doc package
/// (XviD, MS-MPEG4v3 and Cinepak, in sizes no generated clip has), as `./ra test` fetches them (see TestMedia.Sample).
/// </summary>
public class RealClipTests(ITestOutputHelper log)
{
    public static TheoryData<string, int, int, int> Clips => new()
    {
        { "vtest.avi", 768, 576, 795 },     // msmpeg4v3 (div3), 10 fps
        { "Megamind.avi", 720, 528, 270 },  // mpeg4 (XVID), 23.976 fps
        { "tree.avi", 320, 240, 444 },      // cinepak (cvid), 15 fps
    };

    [Theory]
    [MemberData(nameof(Clips))]
    public void OpensAndReadsFrames_OfTheExpectedSize(string name, int width, int height, int frames)
    {
        var path = TestMedia.Sample(name);
        using var source = FrameSources.Open(path);
        Assert.Equal(frames, source.FrameCount);
        // The first 20 frames are enough to prove decoding; the whole clip would only cost time.
        double brightest = 0;
        for (int i = 0; i < 20; i++)
        {
            using var f = source.Read();
            Assert.NotNull(f);
            Assert.Equal(new Size(width, height), f!.Image.Size());
            Assert.Equal(i, f.Index);
            var mean = Cv2.Mean(f.Image);
            brightest = Math.Max(brightest, mean.Val0 + mean.Val1 + mean.Val2);
        }
        Assert.True(brightest > 10, "decoded frames are all black"); // Megamind fades in from black
        log.WriteLine(source.Description);
    }

    [Fact]
    public void BuggyClip_PlaysWhatItCan_WithoutThrowing()
    {
        // Megamind_bugy.avi is OpenCV's deliberately damaged sample: broken frames in the middle.
        var path = TestMedia.Sample("Megamind_bugy.avi");
        using var source = FrameSources.Open(path);
        int n = 0;
        while (source.Read() is { } f) { Assert.Equal(n, f.Index); f.Dispose(); n++; }
        log.WriteLine($"{n} of {source.FrameCount} frames decoded");
        Assert.InRange(n, 20, 270);
        Assert.Equal("ended", source.Status);
    }
}
