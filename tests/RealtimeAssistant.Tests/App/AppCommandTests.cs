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

    /// <summary>--max-frames ends annotate after the source's first N frames (a camera has no end of its own): the video and the captions stop there.</summary>
    [Fact]
    public async Task Annotate_MaxFrames_EndsTheRunThere()
    {
        var input = Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("cmd-ann-max-in"), frames: 30, fps: 15);
        var dir = Capture.TestMedia.TempDir("cmd-ann-max");
        Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", dir, "--model", AppTestSupport.TinyModel, "--gate", "0", "--max-frames", "12"]).InvokeAsync());
        Assert.Equal(12, Capture.TestMedia.ReadBack(Path.Combine(dir, "annotated.mp4")).Count);
        var last = System.Text.Json.JsonDocument.Parse(File.ReadAllLines(Path.Combine(dir, "captions.jsonl"))[^1]).RootElement;
        Assert.Equal(12, last.GetProperty("end_frame").GetInt64());
    }

    /// <summary>
    /// A 1 fps time-lapse gets the caption a second that annotate's default promises: the default
    /// stride never spans more than a second of the source (5 frames would be 5 s). A --stride
    /// given is kept.
    /// </summary>
    [Fact]
    public async Task Annotate_ASlowSource_IsReadAtLeastOnceASecond_ByDefault()
    {
        var input = Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("cmd-ann-1fps-in"), frames: 6, fps: 1);
        async Task<List<long>> Frames(params string[] flags)
        {
            var dir = Capture.TestMedia.TempDir("cmd-ann-1fps");
            Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", dir, "--model", AppTestSupport.TinyModel, "--gate", "0", .. flags]).InvokeAsync());
            return File.ReadAllLines(Path.Combine(dir, "captions.jsonl"))
                .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("frame").GetInt64()).ToList();
        }
        Assert.Equal([0, 1, 2, 3, 4, 5], await Frames());
        Assert.Equal([0, 5], await Frames("--stride", "5"));
    }

    /// <summary>
    /// --resume on a run whose captions reach the video's end has nothing to do: it says so, exits 0
    /// before any model loads (the model named here does not exist), and writes no empty part.
    /// </summary>
    [Fact]
    public async Task Annotate_ResumingACompleteRun_SaysSo_AndWritesNothing()
    {
        var dir = Capture.TestMedia.TempDir("cmd-ann-done");
        var input = Capture.TestMedia.WriteClip(Capture.TestMedia.TempDir("cmd-ann-done-in"), frames: 12);
        Assert.Equal(0, await AnnotateCommand.Create().Parse([input, "-o", dir, "--model", AppTestSupport.TinyModel, "--stride", "1", "--every", "3"]).InvokeAsync());
        var files = Directory.GetFiles(dir).Order().ToList();
        var jsonl = File.ReadAllText(Path.Combine(dir, "captions.jsonl"));
        Assert.Contains("\"end_frame\":12", jsonl);
        var err = new StringWriter();
        var was = Console.Error;
        Console.SetError(err);
        int code;
        try { code = await AnnotateCommand.Create().Parse([input, "-o", dir, "--resume", "--model", "/nonexistent/model"]).InvokeAsync(); }
        finally { Console.SetError(was); }
        Assert.Equal(0, code);
        Assert.Contains("is complete", err.ToString());
        Assert.Equal(files, Directory.GetFiles(dir).Order().ToList());
        Assert.Equal(jsonl, File.ReadAllText(Path.Combine(dir, "captions.jsonl")));
    }
}
