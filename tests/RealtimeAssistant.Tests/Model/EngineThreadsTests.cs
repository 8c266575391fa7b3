using RealtimeAssistant.Cli.Commands;
using RealtimeAssistant.Model;
using RealtimeAssistant.Tests.Server;

namespace RealtimeAssistant.Tests.Model;

[CollectionDefinition("torch threads", DisableParallelization = true)]
public sealed class TorchThreadsCollection;

/// <summary>
/// The intra-op threads a loaded model gets when nobody chose: one for a decoder of width at most
/// <see cref="Engine.OneThreadWidth"/>, libtorch's own count for a wider one; the model loaded last
/// sets the process's count. Alone in its collection: the count is the process's.
/// </summary>
[Collection("torch threads")]
public class EngineThreadsTests
{
    [Fact]
    public void ANarrowModel_RunsOnOneThread_AWiderOne_OnTheMachines()
    {
        if (Environment.ProcessorCount < 2) Assert.Skip("one core: one thread either way");
        var wide = Capture.TestMedia.TempDir("wide-model");
        BenchModels.WriteLlavaShaped(wide, 192);
        using (var demo = Engine.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }))
        {
            Assert.True(demo.Text.HiddenSize <= Engine.OneThreadWidth);
            Assert.Equal(1, TorchSharp.torch.get_num_threads());
        }
        using (var w = Engine.Load(wide, new EngineOptions { Device = "cpu" }))
            Assert.True(TorchSharp.torch.get_num_threads() > 1, $"{TorchSharp.torch.get_num_threads()} thread(s) for width {w.Text.HiddenSize}");
        using (Engine.Load(ServerTestSupport.DemoModel, new EngineOptions { Device = "cpu" }))
            Assert.Equal(1, TorchSharp.torch.get_num_threads());
    }
}
