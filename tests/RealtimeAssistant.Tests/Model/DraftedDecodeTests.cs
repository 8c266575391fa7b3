using RealtimeAssistant.Cli.App;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Training;
using TorchSharp;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Prompt-lookup decoding: drafts from the last caption, verified in one pass, give the captions
/// and the caches that one token a pass gives, in both session modes, greedy or sampled, also
/// when the caller stops a caption early; and the drafts are taken (it is not a no-op).
/// </summary>
public class DraftedDecodeTests
{
    [Fact]
    public void TheLookup_DraftsWhatFollowedTheLongestSuffix_NearestTheSamePlaceInTheLastCaption()
    {
        // "a red cross at right and a cyan star at right ." as ids; the suffix "at right" occurs twice.
        int[] earlier = [10, 11, 12, 13, 14, 15, 10, 16, 17, 13, 14, 18];
        var lookup = new PromptLookup(earlier);
        var draft = new List<int>();
        lookup.Draft([10, 11, 12, 13, 14], 4, draft);
        Assert.Equal([15, 10, 16, 17], draft); // the 3-gram "cross at right" (12 13 14) occurs once
        lookup.Draft([10, 16, 17, 13, 14], 8, draft);
        Assert.Equal([18], draft); // "star at right": the second place, and only what the caption has left
        lookup.Draft([13, 14], 3, draft);
        Assert.Equal([15, 10, 16], draft); // "at right" at the caption's start is nearest position 0
        lookup.Draft([20, 21, 20], 3, draft);
        Assert.Equal([21, 20], draft); // nothing in the last caption: the caption so far repeats itself
        lookup.Draft([30], 3, draft);
        Assert.Empty(draft);
        lookup.Draft([10], 0, draft);
        Assert.Empty(draft);
        new PromptLookup([]).Draft([10, 11], 5, draft);
        Assert.Empty(draft);
    }

    static (List<string> Captions, KvCache Cache, DraftStats Drafts, ICaptionSession Session) Stream(Engine e, string mode, int drafts,
        IReadOnlyList<OpenCvSharp.Mat> frames, double temperature = 0, int? stopAfter = null, int history = 0)
    {
        var o = new StreamingOptions
        {
            WindowFrames = 2, CaptionHistoryTokens = history, Pruning = e.Layout.Schedule,
            Generation = new GenerationOptions { MaxNewTokens = 24, DraftTokens = drafts, Temperature = temperature, Seed = 7 },
        };
        ICaptionSession s = mode == SessionModes.Gpe ? new GpeSession(e, o) : new ReEncodingSession(e, o);
        var captions = new List<string>();
        for (int i = 0; i < frames.Count; i++)
        {
            var events = s.ReadAndWrite(frames[i]);
            // Every third caption is cut short by its reader, as a question interrupting a caption does.
            captions.Add(string.Concat((stopAfter is { } n && i % 3 == 1 ? events.Take(n) : events).Select(t => t.Text)));
        }
        return (captions, s.Cache, ((SessionBase)s).Drafts, s);
    }

    public static TheoryData<string, double, int?> Cases() => new()
    {
        { SessionModes.Gpe, 0, null },
        { SessionModes.ReEncode, 0, null },
        { SessionModes.Gpe, 0.9, null },
        { SessionModes.Gpe, 0, 4 },
        { SessionModes.ReEncode, 0, 4 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DraftedCaptions_AreTheOneTokenAPassCaptions_AndLeaveTheSameCache(string mode, double temperature, int? stopAfter)
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        using var _ = torch.inference_mode();
        // Two scenes one after the other: captions that repeat the last one, then one that does not.
        var frames = new DemoDataset(DemoSplit.Eval).CaptionSample(4, DemoModelSpec.ImageSize, 6).Frames
            .Concat(new DemoDataset(DemoSplit.Eval).CaptionSample(9, DemoModelSpec.ImageSize, 6).Frames).ToList();
        const int history = 16; // caption tokens kept across writes: drafts are verified after them, and re-encoding rebuilds them from the drafted captions
        var (plain, plainCache, none, a) = Stream(e, mode, 0, frames, temperature, stopAfter, history);
        var (drafted, draftedCache, stats, b) = Stream(e, mode, 7, frames, temperature, stopAfter, history);
        using (a) using (b)
        {
            Assert.Equal(plain, drafted);
            Assert.Equal(0, none.Passes);
            Assert.True(stats.Accepted > frames.Count, $"drafts were taken: {stats.Accepted} of {stats.Drafted} in {stats.Passes} passes");
            for (int l = 0; l < e.Text.NumHiddenLayers; l++)
                foreach (var g in new[] { CacheGroup.Source, CacheGroup.Target })
                {
                    var (x, y) = (plainCache.Layers[l][g], draftedCache.Layers[l][g]);
                    Assert.Equal(x.Positions.ToArray(), y.Positions.ToArray());
                    if (x.IsEmpty) continue;
                    double err = (x.Keys - y.Keys).abs().max().item<float>();
                    Assert.True(err < 1e-5, $"layer {l} {g}: cached keys differ by {err}");
                }
        }
    }

    [Fact]
    public void TheDriversStats_CountTheDraftsTakenByItsSession_ThroughADecorator()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var o = new StreamingOptions { WindowFrames = 2, Generation = new GenerationOptions { MaxNewTokens = 24, DraftTokens = 7 } };
        using var session = new Counted(new GpeSession(e, o));
        using var driver = new StreamingDriver(session, new DriverOptions { Policy = WritePolicy.Parse("every:1"), GateThreshold = 0 });
        var frames = new DemoDataset(DemoSplit.Eval).CaptionSample(4, DemoModelSpec.ImageSize, 6).Frames;
        for (int i = 0; i < frames.Count; i++) driver.Push(frames[i], i, TimeSpan.FromSeconds(i));
        Assert.Equal(frames.Count, driver.Stats.Writes);
        Assert.True(driver.Stats.DraftsTaken > 0 && driver.Stats.DraftsTaken <= driver.Stats.Drafted, $"{driver.Stats.DraftsTaken} of {driver.Stats.Drafted}");
        Assert.Equal(session.Drafts!.Accepted, driver.Stats.DraftsTaken);
    }

    sealed class Counted(ICaptionSession inner) : SessionDecorator(inner);

    [Fact]
    public void AQuestionBetweenTwoCaptions_LeavesTheCaptionsDraftsAsTheyWere()
    {
        using var e = AppModel.Load(null, new EngineOptions { Device = "cpu" });
        var o = new StreamingOptions { WindowFrames = 2, Generation = new GenerationOptions { MaxNewTokens = 24, DraftTokens = 7 } };
        var frames = new DemoDataset(DemoSplit.Eval).CaptionSample(4, DemoModelSpec.ImageSize, 3).Frames;
        (string Caption, long Drafted, long Taken) LastCaption(string? question)
        {
            using var s = new GpeSession(e, o);
            string.Concat(s.ReadAndWrite(frames[0]).Select(t => t.Text));
            if (question is not null) Assert.NotEmpty(string.Concat(s.Write(question).Select(t => t.Text)));
            var (drafted, taken) = (s.Drafts!.Drafted, s.Drafts.Accepted);
            var caption = string.Concat(s.ReadAndWrite(frames[1]).Select(t => t.Text));
            return (caption, s.Drafts.Drafted - drafted, s.Drafts.Accepted - taken);
        }
        var straight = LastCaption(null);
        var asked = LastCaption("what colour is the star ?");
        Assert.True(straight.Taken > 0, "the second caption took drafts from the first");
        Assert.Equal(straight, asked);
    }

    [Fact]
    public void DraftTokens_OutOfRange_IsAUserError()
    {
        Assert.Throws<UserError>(() => new GenerationOptions { DraftTokens = -1 }.Validate());
        Assert.Throws<UserError>(() => new GenerationOptions { DraftTokens = GenerationOptions.MaxDraftTokens + 1 }.Validate());
        new GenerationOptions { DraftTokens = GenerationOptions.MaxDraftTokens }.Validate();
    }
}
