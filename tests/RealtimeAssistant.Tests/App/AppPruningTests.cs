using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pipeline;

namespace RealtimeAssistant.Tests.App;

/// <summary>The app's P key on the bundled model: pruning with the schedule beside the weights, switchable per caption.</summary>
public class AppPruningTests
{
    [Fact]
    public void PruningSwitchesOnAndOff_AndReportsWhatItKept()
    {
        using var captioner = AppModel.Load(null, new EngineOptions());
        Assert.False(captioner.PruningEnabled); // the app starts unpruned
        var clip = ClipGenerator.Generate(1_000_003, 2, 15);
        using var a = clip.Render(0, 64, 64);
        using var b = clip.Render(5, 64, 64);
        var request = new CaptionRequest(new[] { a, b });

        var plain = captioner.Caption(request, null, CancellationToken.None);
        Assert.Equal(plain.VisualTokens, plain.KeptTokens);
        Assert.Null(plain.KeptGrid);

        captioner.PruningEnabled = true;
        var pruned = captioner.Caption(request, null, CancellationToken.None);
        Assert.Equal(plain.VisualTokens, pruned.VisualTokens);
        // The shipped schedule spares the newest of several frames (keep_newest_frame): all of its
        // 64 tokens stay, and of the older frame at most what the filter kept before its exit.
        Assert.InRange(pruned.KeptTokens, 64, 127);
        Assert.NotNull(pruned.KeptGrid);
        Assert.Equal(pruned.GridW * pruned.GridH, pruned.KeptGrid!.Length);
        Assert.False(string.IsNullOrWhiteSpace(pruned.Text));
    }
}
