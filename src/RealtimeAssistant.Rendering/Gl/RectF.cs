namespace RealtimeAssistant.Rendering;

/// <summary>A rectangle in output pixels, origin at the top-left (as in images and screenshots).</summary>
public readonly record struct RectF(float X, float Y, float Width, float Height)
{
    public float Right => X + Width;
    public float Bottom => Y + Height;
    public bool IsEmpty => Width <= 0 || Height <= 0;
    public static readonly RectF Empty = default;
}
