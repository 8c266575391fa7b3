using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Scalars that stay reachable, and the operations the inference paths run with them.
/// TorchSharp turns a number (and the implicit alpha of + and −) into a Scalar that only its
/// finalizer frees, and passes its handle to libtorch without keeping the object alive across the
/// call: a garbage collection on another thread can then free it while libtorch reads it (a
/// "toFloat" check failure, or a wrong value). The hot paths (each decode step, each frame read)
/// add, subtract, scale and fill with these instead; FinalizerRaceTests races collections
/// against decode steps and frame reads to show the difference.
/// </summary>
public static class Rooted
{
    public static readonly Scalar Zero = 0.ToScalar();
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar NegativeInfinity = float.NegativeInfinity.ToScalar();

    /// <summary>a + b.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);
    /// <summary>a += b.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary>0, 1, …, n−1 (int64).</summary>
    public static Tensor Arange(long n, Device device)
    {
        using var stop = n.ToScalar();
        return torch.arange(Zero, stop, One, ScalarType.Int64, device);
    }

    /// <summary>start, start + step, … below stop, as <paramref name="dtype"/> (torch.arange with integer bounds; null device: the default one).</summary>
    public static Tensor Arange(long start, long stop, long step, ScalarType dtype, Device? device = null)
    {
        using var a = start.ToScalar();
        using var b = stop.ToScalar();
        using var c = step.ToScalar();
        return torch.arange(a, b, c, dtype, device);
    }

    /// <summary>x + v for an integer v known only now (the Scalar lives until the call returns; an integer tensor stays integer).</summary>
    public static Tensor PlusNumber(this Tensor x, long v)
    {
        using var s = v.ToScalar();
        return x.add(s, One);
    }

    /// <summary>x + v for a number v known only now (the Scalar lives until the call returns).</summary>
    public static Tensor PlusNumber(this Tensor x, double v)
    {
        using var s = v.ToScalar();
        return x.add(s, One);
    }

    /// <summary>x · v for a number v known only now (the Scalar lives until the call returns). A float v widens exactly: libtorch keeps a float Scalar as a double too.</summary>
    public static Tensor TimesNumber(this Tensor x, double v)
    {
        using var s = v.ToScalar();
        return x.mul(s);
    }

    /// <summary>x / v for an integer v known only now (the Scalar lives until the call returns).</summary>
    public static Tensor DividedByNumber(this Tensor x, long v)
    {
        using var s = v.ToScalar();
        return x.div(s);
    }
}
