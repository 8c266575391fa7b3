namespace RealtimeAssistant.Rendering;

/// <summary>
/// Where the last frame put each layer, in output pixels (top-left origin); empty when a layer was
/// hidden. For tests, screenshots and anything that must hit-test the overlay.
/// </summary>
public readonly record struct OverlayLayout(RectF Video, RectF CaptionBand, RectF Hud, RectF Status);
