using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>What the prompt builder needs to know of the model: its image marker and the layout record read when it loaded (its chat template among them).</summary>
public sealed record PromptFormat(string ImageMarker, string? FrameMarker, string Instruction, RealtimeAssistant.Model.Chat.ChatTemplate? Template = null)
{
    public static PromptFormat Of(Engine engine) => new(engine.Model.ImageMarker, engine.Layout.FrameMarker, engine.Layout.Instruction, engine.Layout.Template);
}

/// <summary>The model's prompt for a conversation: its text (one image marker per image) and the images in marker order.</summary>
public sealed record ChatPrompt(string Text, IReadOnlyList<Mat> Images)
{
    /// <summary>
    /// THE one place a conversation becomes a prompt. (The chat-template library replaces this
    /// body: render the checkpoint's chat template over the messages.) Until then:
    /// <list type="bullet">
    /// <item>Models with our frame layout (config <c>ra_frame_marker</c>, the demo model) have no
    /// turns: every image in the conversation, in order, becomes a frame <c>&lt;image&gt; frame</c>,
    /// followed by the last user message's text, or the model's instruction when it has none. So
    /// [image, "describe the scene ."] is exactly `ra caption`'s default prompt. System messages
    /// and earlier text turns are left out: the model was trained on one question about the frames.</item>
    /// <item>Other llava-hf checkpoints get LLaVA-1.5's template (USER: / ASSISTANT: turns, a
    /// message's images before its text, system text as is), so earlier turns are kept.</item>
    /// </list>
    /// Client text never adds image slots: the image marker is removed from it.
    /// </summary>
    public static ChatPrompt FromMessages(IReadOnlyList<ChatMessage> messages, PromptFormat format)
    {
        if (messages.Any(m => m.Content.Any(c => c is ImageUrlPart or VideoPart)))
            throw new InvalidOperationException("a remote image or a video is built into a prompt undecoded (RemoteImages.FetchAll comes first)");
        string Clean(string text) => text.Replace(format.ImageMarker, " ");
        var images = new List<Mat>();
        var sb = new StringBuilder();
        if (format.FrameMarker is { } frame)
        {
            foreach (var m in messages)
                foreach (var img in m.Images)
                {
                    images.Add(img);
                    sb.Append(format.ImageMarker).Append(' ').Append(frame).Append(' ');
                }
            var question = messages.LastOrDefault(m => m.Role == "user") is { } last ? Clean(last.Text).Trim() : "";
            sb.Append(question.Length > 0 ? question : format.Instruction);
            return new ChatPrompt(sb.ToString(), images);
        }
        if (format.Template is { } template)
        {
            // The checkpoint's own chat template, as apply_chat_template renders it: each message's
            // parts in order (images as image parts), the answer's generation prompt at the end.
            var turns = new List<RealtimeAssistant.Model.Chat.ChatMessage>();
            foreach (var m in messages)
            {
                var parts = new List<RealtimeAssistant.Model.Chat.ChatPart>();
                foreach (var part in m.Content)
                    switch (part)
                    {
                        case ImagePart img: images.Add(img.Image); parts.Add(RealtimeAssistant.Model.Chat.ChatPart.Image()); break;
                        case TextPart t: parts.Add(RealtimeAssistant.Model.Chat.ChatPart.TextPart(Clean(t.Text))); break;
                    }
                turns.Add(parts.All(p => p.Type == "text")
                    ? RealtimeAssistant.Model.Chat.ChatMessage.FromText(m.Role, string.Concat(parts.Select(p => p.Text)))
                    : RealtimeAssistant.Model.Chat.ChatMessage.FromParts(m.Role, parts.ToArray()));
            }
            return new ChatPrompt(template.Render(turns), images);
        }
        // No template: llava-1.5's, written out.
        foreach (var m in messages)
        {
            if (m.Role != "system" && m.Role != "developer") sb.Append(m.Role.ToUpperInvariant()).Append(": ");
            foreach (var img in m.Images)
            {
                images.Add(img);
                sb.Append(format.ImageMarker).Append('\n');
            }
            foreach (var t in m.Content.OfType<TextPart>()) sb.Append(Clean(t.Text)).Append(' ');
        }
        sb.Append("ASSISTANT:");
        return new ChatPrompt(sb.ToString(), images);
    }
}
