using System.Text;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model;

namespace RealtimeAssistant.Pipeline;

/// <summary>
/// <see cref="IFrameCaptioner"/> over a loaded llava-layout model. Models trained with our frame
/// layout (config key ra_frame_marker) see several frames as [image, marker] each, then the
/// instruction; other LLaVA checkpoints see one frame in their default prompt.
/// </summary>
public sealed class LlavaFrameCaptioner : IFrameCaptioner
{
    readonly LlavaEngine _engine;
    readonly Captioner _captioner;
    readonly string? _marker;
    readonly string _instruction;
    readonly GenerationOptions _options;

    public int FramesPerCaption { get; }
    public int FrameStride { get; }
    public bool PruningEnabled { get; set; }

    public LlavaFrameCaptioner(LlavaEngine engine, int? framesPerCaption = null, int frameStride = 5, GenerationOptions? options = null)
    {
        _engine = engine;
        _captioner = new Captioner(engine);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(engine.Directory, "config.json")));
        _marker = cfg?["ra_frame_marker"]?.GetValue<string>();
        _instruction = cfg?["ra_instruction"]?.GetValue<string>() ?? "describe the scene .";
        FramesPerCaption = framesPerCaption ?? (_marker != null ? 2 : 1);
        if (FramesPerCaption < 1 || FramesPerCaption > 16) throw new UserError($"frames per caption must be 1..16, got {FramesPerCaption}");
        if (_marker == null && FramesPerCaption != 1) throw new UserError("this model takes one frame per caption");
        FrameStride = frameStride;
        _options = options ?? new GenerationOptions { MaxNewTokens = 48 };
    }

    public string Prompt(int frames, string? question)
    {
        if (_marker == null) return question is null ? _engine.DefaultPrompt : $"USER: <image>\n{question} ASSISTANT:";
        var sb = new StringBuilder();
        for (int i = 0; i < frames; i++) sb.Append("<image> ").Append(_marker).Append(' ');
        sb.Append(question ?? _instruction);
        return sb.ToString();
    }

    public CaptionResult Caption(CaptionRequest request, Action<string>? onDelta, CancellationToken ct)
    {
        if (request.Frames.Count == 0) throw new ArgumentException("no frames");
        var timings = new CaptionTimings();
        var text = new StringBuilder();
        foreach (var ev in _captioner.Caption(request.Frames, Prompt(request.Frames.Count, request.Question), _options, timings))
        {
            ct.ThrowIfCancellationRequested();
            text.Append(ev.Text);
            if (ev.Text.Length > 0) onDelta?.Invoke(ev.Text);
        }
        int visual = _engine.Config.ImageTokens * request.Frames.Count;
        return new CaptionResult(text.ToString().Trim(), timings, visual, visual, null, _engine.Config.Vision.PatchesPerSide, _engine.Config.Vision.PatchesPerSide);
    }

    public void Dispose() => _captioner.Dispose();
}
