namespace RealtimeAssistant.Demo;

public enum BackdropKind { Flat, VerticalGradient, HorizontalGradient, Stripes, Checker, Noise }

/// <summary>
/// Everything in a picture that is not an object: background, lighting, an occluding bar and
/// sensor noise. Colours are (B, G, R), kept dark and grey so object colours stay readable.
/// </summary>
public sealed record Backdrop(
    BackdropKind Kind,
    (byte B, byte G, byte R) Color1,
    (byte B, byte G, byte R) Color2,
    double Period,          // stripes/checker/noise cell size, as a fraction of the image side
    bool Vertical,          // stripe direction
    double Brightness,      // global lighting gain
    double NoiseSigma,      // sensor noise, in grey levels
    Occluder? Occluder)
{
    public static readonly Backdrop Plain =
        new(BackdropKind.Flat, (40, 40, 40), (40, 40, 40), 0.2, false, 1.0, 0, null);
}

/// <summary>A grey bar drawn over the objects, from (X1, Y1) to (X2, Y2), normalised.</summary>
public sealed record Occluder(double X1, double Y1, double X2, double Y2, double Thickness, byte Grey);
