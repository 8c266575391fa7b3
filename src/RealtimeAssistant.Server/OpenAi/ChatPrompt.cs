using System.Text;
using OpenCvSharp;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>What the prompt builder needs to know of the model: its image marker and the layout record read when it loaded.</summary>
public sealed record PromptFormat(string ImageMarker, string? FrameMarker, string Instruction)
{
    public static PromptFormat Of(Engine engine) => new(engine.Model.ImageMarker, engine.Layout.FrameMarker, engine.Layout.Instruction);
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
        // llava-1.5's chat template, written out.
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
