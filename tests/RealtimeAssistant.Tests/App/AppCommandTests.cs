using System.CommandLine;
using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Cli.Commands;

namespace RealtimeAssistant.Tests.App;

/// <summary>The app commands' argument errors: one line, exit 2, before any model or window.</summary>
public class AppCommandTests
{
    [Fact]
    public async Task Demo_WithAMissingModelFolder_ExitsWithAUserError()
    {
        var code = await DemoCommand.Create().Parse(["--model", "/nonexistent/model", "--headless"]).InvokeAsync();
        Assert.Equal(2, code);
    }

    [Fact]
    public void MissingModel_MessageSaysHowToGetOne()
    {
        var e = Assert.Throws<UserError>(() => AppModel.Resolve("/nonexistent/model"));
        Assert.Contains("model folder not found", e.Message);
        if (RealtimeAssistant.Cli.Cli.FindRepoPath(AppModel.DemoModelPath) is null)
        {
            e = Assert.Throws<UserError>(() => AppModel.Resolve(null));
            Assert.Contains("./ra train", e.Message);
        }
    }

    [Fact]
    public async Task Annotate_RefusesAFolderWithOutputs_WithoutForceOrResume()
    {
        var dir = Capture.TestMedia.TempDir("cmd-ann");
        File.WriteAllText(Path.Combine(dir, "captions.srt"), "");
        var input = Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("cmd-ann-in"), frames: 5);
        var code = await AnnotateCommand.Create().Parse([input, "-o", dir, "--model", "/nonexistent/model"]).InvokeAsync();
        Assert.Equal(2, code);
    }
}
