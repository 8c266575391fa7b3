using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.App;
using TorchSharp;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// What frame reads and captions leave for the finalizer. An object whose finalizer was not
/// suppressed survives the collection that finds it dead, and the finalizer thread runs it: the
/// demo model's reads had their collections (and gen-1 ones) because each tensor shape asked
/// through TorchSharp's <c>shape</c> left such an object (<see cref="TensorDims"/>). Runs alone:
/// another test's garbage would count here.
/// </summary>
[Collection("finalizer race")]
public class FinalizerGarbageTests(ITestOutputHelper output)
{
    /// <summary>Objects the finalizer is left per unit of <paramref name="work"/>, over <paramref name="units"/> units after a warm-up.</summary>
    double LeftForTheFinalizer(Action<int> work, int units)
    {
        for (int i = 0; i < 4; i++) work(i);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        for (int i = 0; i < units; i++) work(4 + i);
        GC.Collect();
        long pending = GC.GetGCMemoryInfo(GCKind.FullBlocking).FinalizationPendingCount;
        GC.WaitForPendingFinalizers();
        return pending / (double)units;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FrameReadsAndCaptions_LeaveFewObjectsForTheFinalizer(bool pruned)
    {
        using var e = AppTestSupport.TinyEngine();
        using var session = new RealtimeAssistant.Streaming.GpeSession(e, AppTestSupport.TinyOptions(pruning: pruned ? AppTestSupport.TinySchedule : null));
        var clip = RealtimeAssistant.Demo.ClipGenerator.Generate(7, 40, 15);
        double perRead = LeftForTheFinalizer(i =>
        {
            using var img = clip.Render(i % clip.FrameCount, 32, 32);
            session.Read(img);
            foreach (var _ in session.Write()) { }
        }, 12);
        output.WriteLine($"{perRead:0.0} objects left for the finalizer per frame read and caption");
        // About 24 remain (torch.cat's handle arrays, OpenCV's wrappers); asking shapes through
        // Tensor.shape left about 240.
        Assert.True(perRead < 60, $"a frame read and its caption left {perRead:0.0} objects for the finalizer (about 24 expected; 240 when tensor shapes were read through Tensor.shape)");
    }
}
