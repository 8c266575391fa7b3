using System.Text.Json;
using RealtimeAssistant.Output;

namespace RealtimeAssistant.Tests.Output;

public class CaptionWriterTests
{
    static readonly CaptionEntry[] Entries =
    [
        new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2.5), "A person walks in.", 412.5, 96, 30),
        new(TimeSpan.FromMilliseconds(2500), TimeSpan.FromSeconds(4), "They pick up a red cup\nand look at it.", 388, 80, 75,
            new Dictionary<string, object?> { ["model"] = "tiny", ["confidence"] = 0.5 }),
        new(TimeSpan.FromHours(1) + TimeSpan.FromMilliseconds(61_001), TimeSpan.FromHours(1) + TimeSpan.FromSeconds(62), "Ünïcödé \"quotes\" → done", null, null, null),
    ];

    static string Dir(string name) => Capture.TestMedia.TempDir(name);

    [Fact]
    public void Timestamps_AreFormattedPerSpec()
    {
        Assert.Equal("00:00:01,000", SubtitleTime.Srt(TimeSpan.FromSeconds(1)));
        Assert.Equal("01:01:01,001", SubtitleTime.Srt(TimeSpan.FromMilliseconds(3_661_001)));
        Assert.Equal("00:00:01.000", SubtitleTime.Vtt(TimeSpan.FromSeconds(1)));
        Assert.True(SubtitleTime.TryParse("01:02.345", '.', out var t)); // VTT may omit hours
        Assert.Equal(TimeSpan.FromMilliseconds(62_345), t);
        Assert.False(SubtitleTime.TryParse("01:02,345", ',', out _));    // SRT may not
        Assert.False(SubtitleTime.TryParse("00:00:01.000", ',', out _));
    }

    [Fact]
    public void Srt_RoundTrips()
    {
        var path = Path.Combine(Dir("srt"), "captions.srt");
        using (var w = new SrtWriter(path)) foreach (var e in Entries) w.Write(e);
        var text = File.ReadAllText(path);
        Assert.StartsWith("1\n00:00:01,000 --> 00:00:02,500\nA person walks in.\n\n2\n", text);
        AssertSameCaptions(Entries, SubtitleParser.ParseSrt(text));
    }

    [Fact]
    public void Vtt_RoundTrips()
    {
        var path = Path.Combine(Dir("vtt"), "captions.vtt");
        using (var w = new VttWriter(path)) foreach (var e in Entries) w.Write(e);
        var text = File.ReadAllText(path);
        Assert.StartsWith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\n", text);
        AssertSameCaptions(Entries, SubtitleParser.ParseVtt(text));
    }

    [Fact]
    public void Jsonl_RoundTrips_WithTheDocumentedFields()
    {
        var path = Path.Combine(Dir("jsonl"), "captions.jsonl");
        using (var w = new JsonlWriter(path)) foreach (var e in Entries) w.Write(e);
        var lines = File.ReadAllLines(path);
        Assert.Equal(3, lines.Length);
        using (var doc = JsonDocument.Parse(lines[0]))
        {
            var o = doc.RootElement;
            Assert.Equal(1.0, o.GetProperty("t_start").GetDouble());
            Assert.Equal(2.5, o.GetProperty("t_end").GetDouble());
            Assert.Equal("A person walks in.", o.GetProperty("text").GetString());
            Assert.Equal(412.5, o.GetProperty("latency_ms").GetDouble());
            Assert.Equal(96, o.GetProperty("kept_tokens").GetInt32());
            Assert.Equal(30, o.GetProperty("frame").GetInt64());
        }
        var back = CaptionJsonl.Read(path);
        AssertSameCaptions(Entries, back);
        Assert.Equal(Entries.Select(e => e.Frame), back.Select(e => e.Frame));
        Assert.Equal(Entries.Select(e => e.KeptTokens), back.Select(e => e.KeptTokens));
        Assert.Equal("tiny", ((JsonElement)back[1].Extra!["model"]!).GetString());
    }

    [Fact]
    public void AWriterThatIsNeverDisposed_LeavesValidFilesAfterEveryEntry()
    {
        // As after a Ctrl+C: nothing is closed, every file must still parse with all entries so far.
        var dir = Dir("killed");
        var srt = new SrtWriter(Path.Combine(dir, "c.srt"));
        var vtt = new VttWriter(Path.Combine(dir, "c.vtt"));
        var jsonl = new JsonlWriter(Path.Combine(dir, "c.jsonl"));
        Assert.Empty(SubtitleParser.ParseVtt(ReadShared(vtt.Path))); // header alone is a valid VTT
        for (int n = 1; n <= Entries.Length; n++)
        {
            srt.Write(Entries[n - 1]); vtt.Write(Entries[n - 1]); jsonl.Write(Entries[n - 1]);
            Assert.Equal(n, SubtitleParser.ParseSrt(ReadShared(srt.Path)).Count);
            Assert.Equal(n, SubtitleParser.ParseVtt(ReadShared(vtt.Path)).Count);
            Assert.Equal(n, ReadShared(jsonl.Path).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(CaptionJsonl.Parse).Count());
        }
        srt.Dispose(); vtt.Dispose(); jsonl.Dispose();
    }

    [Fact]
    public void Append_ContinuesNumbering()
    {
        var path = Path.Combine(Dir("append"), "c.srt");
        using (var w = new SrtWriter(path)) w.Write(Entries[0]);
        using (var w = new SrtWriter(path, append: true)) { Assert.Equal(1, w.Count); w.Write(Entries[1]); }
        var parsed = SubtitleParser.ParseSrt(File.ReadAllText(path));
        Assert.Equal(2, parsed.Count);
    }

    [Fact]
    public void TextThatWouldBreakACue_IsMadeSafe()
    {
        var path = Path.Combine(Dir("unsafe"), "c.srt");
        using (var w = new SrtWriter(path))
        {
            w.Write(new CaptionEntry(TimeSpan.Zero, TimeSpan.FromSeconds(1), "first\n\nsecond --> third"));
            w.Write(new CaptionEntry(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), "   "));
        }
        var parsed = SubtitleParser.ParseSrt(File.ReadAllText(path));
        Assert.Equal(2, parsed.Count);
        Assert.Equal("first\nsecond -> third", parsed[0].Text);
    }

    [Theory]
    [InlineData("1\n00:00:01.000 --> 00:00:02,000\nhi\n", "bad timing")]
    [InlineData("2\n00:00:01,000 --> 00:00:02,000\nhi\n", "expected cue number 1")]
    [InlineData("1\n00:00:03,000 --> 00:00:02,000\nhi\n", "ends before it starts")]
    [InlineData("1\n00:00:01,000 --> 00:00:02,000\n", "no timing or no text")]
    public void SrtParser_RejectsMalformedFiles(string text, string why)
    {
        var e = Assert.Throws<FormatException>(() => SubtitleParser.ParseSrt(text));
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void VttParser_NeedsTheHeader_AndAcceptsIdsAndSettings()
    {
        Assert.Throws<FormatException>(() => SubtitleParser.ParseVtt("00:00:01.000 --> 00:00:02.000\nhi\n"));
        var parsed = SubtitleParser.ParseVtt("WEBVTT - title\n\nNOTE a comment\n\ncue-1\n00:01.000 --> 00:02.000 align:start\nhi\n");
        Assert.Single(parsed);
        Assert.Equal(TimeSpan.FromSeconds(1), parsed[0].Start);
    }

    [Fact]
    public void JsonlReader_SkipsACutOffLastLine_ButRejectsABadMiddleLine()
    {
        var dir = Dir("jsonl-cut");
        var cut = Path.Combine(dir, "cut.jsonl");
        File.WriteAllText(cut, CaptionJsonl.Line(Entries[0]) + "\n" + CaptionJsonl.Line(Entries[1])[..20]);
        Assert.Single(CaptionJsonl.Read(cut));
        var bad = Path.Combine(dir, "bad.jsonl");
        File.WriteAllText(bad, "{oops\n" + CaptionJsonl.Line(Entries[0]) + "\n");
        Assert.Contains("line 1", Assert.Throws<FormatException>(() => CaptionJsonl.Read(bad)).Message);
    }

    static string ReadShared(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(s).ReadToEnd();
    }

    static void AssertSameCaptions(IReadOnlyList<CaptionEntry> expected, IReadOnlyList<CaptionEntry> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Start, actual[i].Start);
            Assert.Equal(expected[i].End, actual[i].End);
            Assert.Equal(expected[i].Text, actual[i].Text);
        }
    }
}
