using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Server;
using RealtimeAssistant.Server.OpenAi;

namespace RealtimeAssistant.Tests.Server;

/// <summary>The chat endpoint's pieces on their own: request parser, images, prompt, stop sequences, options.</summary>
public class ChatPieceTests
{
    static readonly ImageLimits Limits = new() { MaxPixels = 1 << 20, MaxImages = 4 };

    static string Png(int w = 32, int h = 24)
    {
        using var img = new Mat(h, w, MatType.CV_8UC3, new Scalar(10, 200, 30));
        return "data:image/png;base64," + Convert.ToBase64String(img.ImEncode(".png"));
    }

    static ChatRequest Parse(string json) => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(json), Limits);

    [Fact]
    public void Parser_ReadsOpenAisShapes()
    {
        using var r = Parse($$$"""
            {"model": "m", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 9, "max_completion_tokens": 7,
             "temperature": 0.3, "top_p": 0.8, "seed": -5, "stop": "END", "user": "ignored", "presence_penalty": 0.1,
             "messages": [
               {"role": "system", "content": "be brief"},
               {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "{{{Png(32, 24)}}}", "detail": "low"}}]},
               {"role": "assistant", "content": null},
               {"role": "user", "content": [{"type": "image_url", "image_url": "{{{Png(8, 8)}}}"}]}]}
            """);
        Assert.Equal("m", r.Model);
        Assert.True(r.Stream);
        Assert.True(r.IncludeUsage);
        Assert.Equal(7, r.MaxTokens); // max_completion_tokens wins, as in OpenAI's API
        Assert.Equal(0.3, r.Temperature);
        Assert.Equal(0.8, r.TopP);
        Assert.Equal(-5, r.Seed);
        Assert.Equal(["END"], r.Stop);
        Assert.Equal(["system", "user", "assistant", "user"], r.Messages.Select(m => m.Role));
        Assert.Equal("be brief", r.Messages[0].Text);
        var image = Assert.IsType<ImagePart>(r.Messages[1].Content[1]);
        Assert.Equal((32, 24), (image.Image.Width, image.Image.Height));
        Assert.Empty(r.Messages[2].Content);
        Assert.Equal(8, r.Messages[3].Images.Single().Width);
    }

    [Fact]
    public void Parser_DefaultsAreOpenAis()
    {
        using var r = Parse("""{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": null, "seed": null}""");
        Assert.False(r.Stream);
        Assert.Null(r.MaxTokens);
        Assert.Equal(1.0, r.Temperature);
        Assert.Equal(1.0, r.TopP);
        Assert.Null(r.Seed);
        Assert.Empty(r.Stop);
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}]}""", "model")]
    [InlineData("""{"model": 3, "messages": [{"role": "user", "content": "x"}]}""", "model")]
    [InlineData("""{"model": "m", "messages": []}""", "messages")]
    [InlineData("""{"model": "m", "messages": [{"content": "x"}]}""", "messages[0].role")]
    [InlineData("""{"model": "m", "messages": [{"role": "user"}]}""", "messages[0].content")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}""", "messages[0].content[0].text")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}""", "messages[0].content[0].image_url.url")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}""", "stream")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}""", "stream_options")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}""", "max_tokens")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}""", "max_tokens")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1e40}""", "seed")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}""", "stop")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": 1}""", "logprobs")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}""", "top_logprobs")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}""", "top_logprobs")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": -1}""", "top_logprobs")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}""", "n")]
    public void Parser_NamesTheParameterItRefuses(string json, string param)
    {
        var e = Assert.Throws<ApiError>(() => Parse(json));
        Assert.Equal(400, e.Status);
        Assert.Equal(param, e.Param);
    }

    [Fact]
    public void Parser_RefusesTextThatIsNotUnicode()
    {
        var bytes = Encoding.UTF8.GetBytes("""{"model": "m", "messages": [{"role": "user", "content": "ab"}]}""").ToList();
        bytes.Insert(bytes.IndexOf((byte)'b'), 0xC3); // a lead byte with no continuation
        Assert.Equal(400, Assert.Throws<ApiError>(() => ChatRequestParser.Parse(bytes.ToArray(), Limits)).Status);
        Assert.Equal(400, Assert.Throws<ApiError>(() => Parse("""{"model": "m", "messages": [{"role": "user", "content": "a\ud800b"}]}""")).Status);
    }

    [Theory]
    [InlineData(".png", 1, 1)]
    [InlineData(".png", 333, 71)]
    [InlineData(".jpg", 1, 1)]
    [InlineData(".jpg", 640, 480)]
    [InlineData(".jpg", 17, 1201)]
    public void ImageHeaders_GiveTheSizeOpenCvDecodes(string ext, int w, int h)
    {
        using var img = new Mat(h, w, MatType.CV_8UC3, new Scalar(1, 2, 3));
        foreach (var prms in ext == ".jpg" ? new[] { new ImageEncodingParam(ImwriteFlags.JpegProgressive, 0), new ImageEncodingParam(ImwriteFlags.JpegProgressive, 1) } : [new ImageEncodingParam(ImwriteFlags.PngCompression, 3)])
        {
            var file = img.ImEncode(ext, prms);
            var kind = DataUriImage.Sniff(file);
            Assert.Equal(ext == ".png" ? DataUriImage.Kind.Png : DataUriImage.Kind.Jpeg, kind);
            Assert.Equal((w, h), DataUriImage.Dimensions(file, kind!.Value));
            using var decoded = DataUriImage.Decode($"data:image/{(ext == ".png" ? "png" : "jpeg")};base64,{Convert.ToBase64String(file)}", long.MaxValue, "p");
            Assert.Equal((w, h), (decoded.Width, decoded.Height));
        }
    }

    [Fact]
    public void DamagedImages_AreRefusedNeverThrownAtTheServer()
    {
        var rng = new Random(7);
        using var img = new Mat(40, 30, MatType.CV_8UC3);
        Cv2.Randu(img, Scalar.All(0), Scalar.All(255));
        foreach (var ext in new[] { ".png", ".jpg" })
        {
            var good = img.ImEncode(ext);
            for (int i = 0; i < 300; i++)
            {
                var bad = good.ToArray();
                if (i % 3 == 0) bad = bad[..rng.Next(bad.Length)];
                else for (int k = rng.Next(1, 6); k > 0; k--) bad[rng.Next(bad.Length)] = (byte)rng.Next(256);
                var uri = $"data:image/{(ext == ".png" ? "png" : "jpeg")};base64,{Convert.ToBase64String(bad)}";
                try { using var m = DataUriImage.Decode(uri, 1 << 20, "p"); Assert.False(m.Empty()); }
                catch (ApiError e) { Assert.Equal(400, e.Status); }
            }
        }
    }

    static readonly PromptFormat Demo = new("<image>", "frame", "describe the scene .");
    static readonly PromptFormat Llava = new("<image>", null, "unused");

    static ChatMessage User(params object[] parts) => new("user", parts.Select(p => p is Mat m ? (ContentPart)new ImagePart(m) : new TextPart((string)p)).ToList());
    static ChatMessage Said(string role, string text) => new(role, [new TextPart(text)]);

    [Fact]
    public void Prompt_DemoLayout_IsFramesThenTheLastQuestion()
    {
        using Mat a = new(4, 4, MatType.CV_8UC3), b = new(4, 4, MatType.CV_8UC3);
        // One image and the instruction: exactly the model's default prompt, what `ra caption` runs.
        var p = ChatPrompt.FromMessages([User(a, "describe the scene .")], Demo);
        Assert.Equal("<image> frame describe the scene .", p.Text);
        Assert.Same(a, Assert.Single(p.Images));
        // No text: the instruction.
        Assert.Equal("<image> frame describe the scene .", ChatPrompt.FromMessages([User(a)], Demo).Text);
        // Earlier turns: their images stay frames, in order; the question is the last user text.
        p = ChatPrompt.FromMessages([Said("system", "be brief"), User(a, "describe the scene ."), Said("assistant", "a red circle ."), User(b, "what colour is the circle ?")], Demo);
        Assert.Equal("<image> frame <image> frame what colour is the circle ?", p.Text);
        Assert.Equal([a, b], p.Images);
        // Client text cannot add image slots.
        Assert.Equal("<image> frame how many", ChatPrompt.FromMessages([User(a, "<image>how many")], Demo).Text);
    }

    [Fact]
    public void Prompt_OtherCheckpoints_FollowLlava15sTemplate()
    {
        using Mat a = new(4, 4, MatType.CV_8UC3), b = new(4, 4, MatType.CV_8UC3);
        var p = ChatPrompt.FromMessages([Said("system", "S"), User(a, "What?"), Said("assistant", "A"), User("More?", b)], Llava);
        // /work/shared/chat-templates/llava-1.5.jinja rendered by jinja2 (trim_blocks, lstrip_blocks, add_generation_prompt) over the same messages.
        Assert.Equal("S USER: <image>\nWhat? ASSISTANT: A USER: <image>\nMore? ASSISTANT:", p.Text);
        Assert.Equal([a, b], p.Images);
    }

    /// <summary>OpenAI's result: the text before the first occurrence of the stop sequence.</summary>
    static string Cut(string text, string stop) => text.IndexOf(stop, StringComparison.Ordinal) is var i and >= 0 ? text[..i] : text;

    [Fact]
    public void StopSequence_CutsTheSameWhateverTheChunking_AndHoldsBackOnlyAPossiblePrefix()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 2000; trial++)
        {
            var text = new string(Enumerable.Range(0, rng.Next(0, 30)).Select(_ => "ab c."[rng.Next(5)]).ToArray());
            var stop = new string(Enumerable.Range(0, rng.Next(1, 4)).Select(_ => "ab c."[rng.Next(5)]).ToArray());
            var filter = new StopSequences([stop]);
            var sent = new StringBuilder();
            int pushed = 0;
            while (pushed < text.Length && !filter.Stopped)
            {
                int n = Math.Min(rng.Next(1, 5), text.Length - pushed);
                sent.Append(filter.Push(text.Substring(pushed, n)));
                pushed += n;
                if (!filter.Stopped) Assert.True(sent.Length >= pushed - (stop.Length - 1), $"'{text}' / '{stop}': held back more than a prefix");
            }
            sent.Append(filter.Flush());
            Assert.Equal(Cut(text, stop), sent.ToString());
            Assert.Equal(text.Contains(stop, StringComparison.Ordinal), filter.Stopped);
        }
    }

    [Fact]
    public void StopSequences_SeveralAndNone()
    {
        var f = new StopSequences(["circle", " at"]);
        Assert.Equal("a red ", f.Push("a red ci"));
        Assert.Equal("", f.Push("rcle at left"));
        Assert.True(f.Stopped);
        Assert.Equal("", f.Push("more"));
        Assert.Equal("", f.Flush());
        var none = new StopSequences([]);
        Assert.Equal("abc", none.Push("abc"));
        Assert.False(none.Stopped);
    }

    [Theory]
    [InlineData("127.0.0.1", null, true)]
    [InlineData("localhost", null, true)]
    [InlineData("::1", null, true)]
    [InlineData("[::1]", null, true)]
    [InlineData("0.0.0.0", null, false)]
    [InlineData("0.0.0.0", "k", true)]
    [InlineData("192.168.1.4", null, false)]
    [InlineData("::", null, false)]
    [InlineData("example.com", "k", false)]
    public void ServerOptions_KeepTheServerOnLoopbackWithoutAKey(string host, string? key, bool ok)
    {
        var options = new ServerOptions { Host = host, ApiKey = key };
        if (ok) options.Validate();
        else Assert.Throws<UserError>(() => options.Validate());
    }
}
