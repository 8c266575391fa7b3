using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Training;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;
namespace RealtimeAssistant.Tests.Training;
public class ScratchProbe(ITestOutputHelper o)
{
    [Fact]
    public void Probe()
    {
        var dir = Environment.GetEnvironmentVariable("PROBE_MODEL") ?? "/tmp/ck2";
        if (!Directory.Exists(dir)) return;
        using var e = LlavaEngine.Load(dir);
        using var pre = new ImagePreprocessor(DemoModelSpec.Preprocessor(), e.Device, ScalarType.Float32);
        var batcher = new DemoBatcher(e.Tokenizer, pre, e.Config.ImageTokens, e.Device);
        var data = new DemoDataset(DemoSplit.Train);
        var samples = Enumerable.Range(0, 16).Select(i => data.CaptionSample(i, 64, 1)).ToList();
        using var batch = batcher.Make(samples, 1, false);
        foreach (var p in e.Model.parameters()) p.requires_grad = true;
        var (loss, ce, scale) = DemoBatcher.LossParts(e.Model, batch);
        ce.backward();
        double Norm(IEnumerable<TorchSharp.Modules.Parameter> ps) => Math.Sqrt(ps.Where(p => p.grad is not null).Sum(p => p.grad!.pow(2).sum().item<float>()));
        o.WriteLine($"ce {ce.item<float>()} scale {scale} vision grad {Norm(e.Model.vision_tower.parameters())} proj grad {Norm(e.Model.multi_modal_projector.parameters())} lm grad {Norm(e.Model.language_model.parameters())}");
        using var _ = torch.no_grad();
        var f = e.Model.EncodeImages(batch.Pixels!);
        o.WriteLine($"feats std {f.std().item<float>()} across-image std {f.std(0).mean().item<float>()} across-token std {f.std(1).mean().item<float>()}");
        var px = batch.Pixels!;
        o.WriteLine($"pixel std across images {px.std(0).mean().item<float>()}");
        var shuffled = new DemoBatch { Pixels = px.flip(0), Ids = batch.Ids, Labels = batch.Labels, Positions = batch.Positions, ImageSlots = batch.ImageSlots, Frames = 1 };
        o.WriteLine($"ce shuffled images {DemoBatcher.LossParts(e.Model, shuffled).CrossEntropy.item<float>()}");
    }
}
