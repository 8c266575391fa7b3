using RealtimeAssistant.Model;

namespace RealtimeAssistant.Streaming;

/// <summary>
/// How a stream lays out its source for one model: what stays at the start (a system or user
/// prefix), what one frame is (its image run and the text around it), and what a write appends
/// (the instruction or a question, and the prompt for the answer). Models trained on our frame
/// layout (ra_frame_marker) use [image, marker] per frame and no prefix; any other checkpoint
/// gets its own prompt format, split around its image snippet: the frames of the window sit
/// where that one image sat.
/// </summary>
public sealed class StreamFormat
{
    readonly Func<string?, int[]> _write;
    /// <summary>Source entries before the first frame; they stay for the whole stream (never pruned or evicted).</summary>
    public required int[] Prefix { get; init; }
    /// <summary>One frame: the image marker (which the image's run replaces) and the text with it.</summary>
    public required int[] Frame { get; init; }
    /// <summary>Captions go to the target group at φ past the source's first position (a model trained with GPE); otherwise right after the write's prompt.</summary>
    public required bool GroupPositions { get; init; }
    public required string Instruction { get; init; }

    StreamFormat(Func<string?, int[]> write) => _write = write;

    /// <summary>The tokens a write appends: the question (or the instruction) in the model's format.</summary>
    public int[] Write(string? question)
    {
        if (question is not null && string.IsNullOrWhiteSpace(question)) throw new UserError("empty question");
        var ids = _write(question);
        if (ids.Length == 0) throw new UserError("empty question");
        return ids;
    }

    public static StreamFormat For(Engine e)
    {
        var tok = e.Tokenizer;
        int marker = e.ImageMarkerId;
        if (e.Layout.FrameMarker is { } frameMarker)
        {
            var frameId = tok.TokenToId(frameMarker) ?? throw new UserError($"frame marker '{frameMarker}' is not in the tokenizer");
            return new StreamFormat(q => tok.Encode(q ?? e.Layout.Instruction, addSpecialTokens: false).ToArray())
            {
                Prefix = Array.Empty<int>(), Frame = new[] { marker, frameId }, GroupPositions = e.GroupPositions, Instruction = e.Layout.Instruction,
            };
        }
        // The model's own prompt with one image, split at the image: prefix | image | the rest.
        const string instruction = "Describe what is happening in the video briefly.";
        var (prefix, frame, first) = Split(e, instruction);
        return new StreamFormat(q => q is null ? first : Split(e, q).Write)
        {
            Prefix = prefix, Frame = frame, GroupPositions = e.GroupPositions, Instruction = instruction,
        };
    }

    /// <summary>
    /// The model's prompt for one image and <paramref name="text"/> (its chat template, or its
    /// default form), tokenised whole (so token boundaries are the model's), then cut around the
    /// image snippet's tokens. A snippet that ends in the image itself takes the separator after it
    /// (LLaVA's "\n"), so frames stay apart; a family may name that separator (SmolVLM2's video frames).
    /// </summary>
    static (int[] Prefix, int[] Frame, int[] Write) Split(Engine e, string text)
    {
        var snippet = e.Model.ImageSnippet;
        var prompt = e.Layout.DefaultPrompt is { } own && own.Contains(snippet) && text == Engine.DefaultQuestion ? own : e.Prompt(text, 1);
        if (!prompt.Contains(snippet, StringComparison.Ordinal)) throw new UserError($"the model's prompt has no image ({snippet})");
        var ids = e.Tokenizer.Encode(prompt);
        var snip = e.Tokenizer.Encode(snippet, addSpecialTokens: false);
        int start = IndexOf(ids, snip);
        if (start < 0) throw new UserError($"the image snippet {snippet} does not tokenise the same inside the prompt");
        var frame = snip.ToList();
        int rest = start + snip.Count;
        if (e.Model.FrameSeparator is { } sep) frame.AddRange(e.Tokenizer.Encode(sep, addSpecialTokens: false));
        else if (frame[^1] == e.ImageMarkerId && rest < ids.Count - 1) frame.Add(ids[rest++]);
        return (ids.Take(start).ToArray(), frame.ToArray(), ids.Skip(rest).ToArray());
    }

    static int IndexOf(List<int> ids, List<int> part)
    {
        for (int i = 0; i + part.Count <= ids.Count; i++)
            if (ids.Skip(i).Take(part.Count).SequenceEqual(part)) return i;
        return -1;
    }
}
