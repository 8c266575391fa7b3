using RealtimeAssistant.Output;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Output;

public class OutputFolderTests
{
    static CaptionEntry Entry(int i) => new(TimeSpan.FromSeconds(i), TimeSpan.FromSeconds(i + 1), $"caption {i}", 100 + i, 64, i * 10);

    static string EarlierRun(int captions)
    {
        var dir = TestMedia.TempDir("run");
        using var files = new CaptionFiles(OutputFolder.Prepare(dir));
        for (int i = 0; i < captions; i++) files.Write(Entry(i));
        File.WriteAllBytes(Path.Combine(dir, OutputFolder.VideoName), [0]);
        return dir;
    }

    [Fact]
    public void NewOrEmptyFolder_IsFresh()
    {
        var dir = Path.Combine(TestMedia.TempDir("fresh"), "out");
        var plan = OutputFolder.Prepare(dir);
        Assert.Equal(OutputMode.Fresh, plan.Mode);
        Assert.True(Directory.Exists(dir));
        Assert.EndsWith("annotated.mp4", plan.AnnotatedVideo);
    }

    [Fact]
    public void EarlierOutputs_AreRefused_WithAMessageNamingBothWaysOut()
    {
        var dir = EarlierRun(2);
        var e = Assert.Throws<UserError>(() => OutputFolder.Plan(dir));
        Assert.Contains("--resume", e.Message);
        Assert.Contains("--force", e.Message);
        Assert.Contains("captions.jsonl", e.Message);
        Assert.Throws<UserError>(() => OutputFolder.Plan(dir, force: true, resume: true));
    }

    [Fact]
    public void Force_DeletesTheEarlierOutputs()
    {
        var dir = EarlierRun(2);
        var plan = OutputFolder.Prepare(dir, force: true);
        Assert.Equal(OutputMode.Overwrite, plan.Mode);
        Assert.Empty(OutputFolder.ExistingOutputs(dir));
    }

    [Fact]
    public void Resume_FindsTheLastFrame_AndContinuesAllThreeFiles()
    {
        var dir = EarlierRun(3);
        // The earlier run was killed in the middle of a JSONL line.
        File.AppendAllText(Path.Combine(dir, OutputFolder.JsonlName), "{\"t_start\":3.0,\"t_e");
        var plan = OutputFolder.Prepare(dir, resume: true);
        Assert.Equal(OutputMode.Resume, plan.Mode);
        Assert.Equal(20, plan.LastFrame);
        Assert.Equal(3, plan.Existing.Count);
        Assert.EndsWith("annotated.part2.mp4", plan.AnnotatedVideo);

        using (var files = new CaptionFiles(plan)) files.Write(Entry(3));
        Assert.Equal(4, SubtitleParser.ParseSrt(File.ReadAllText(plan.Srt)).Count);
        Assert.Equal(4, SubtitleParser.ParseVtt(File.ReadAllText(plan.Vtt)).Count);
        var jsonl = CaptionJsonl.Read(plan.Jsonl);
        Assert.Equal([0L, 10, 20, 30], jsonl.Select(e => e.Frame!.Value));
    }

    [Fact]
    public void Resume_WithoutCaptionsJsonl_IsAUserError()
    {
        var dir = TestMedia.TempDir("nojsonl");
        File.WriteAllBytes(Path.Combine(dir, OutputFolder.VideoName), [0]);
        var e = Assert.Throws<UserError>(() => OutputFolder.Plan(dir, resume: true));
        Assert.Contains("captions.jsonl is missing", e.Message);
    }
}
