using RealtimeAssistant.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// Rooted's operations replace TorchSharp's implicit-Scalar forms on the hot paths; they must give
/// the same bits (the HF comparisons downstream assume nothing moved).
/// </summary>
public class RootedTests
{
    static void AssertSameBits(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.eq(actual).all().item<bool>(), $"values differ by up to {(expected.to_type(ScalarType.Float64) - actual.to_type(ScalarType.Float64)).abs().max().item<double>()}");
    }

    [Fact]
    public void TimesNumber_IsTheOperatorWithAFloatOrADouble()
    {
        using var _ = torch.NewDisposeScope();
        var bytes = torch.arange(0, 256, ScalarType.Int64).to_type(ScalarType.Float32); // every pixel value
        const float rescale = 1f / 255f;
        AssertSameBits(bytes * rescale, bytes.TimesNumber(rescale));
        var wide = bytes.to_type(ScalarType.Float64);
        AssertSameBits(wide * (1.0 / 255), wide.TimesNumber(1.0 / 255));
        // A float factor on a float64 tensor: the float's own value, not 1/255 in double.
        AssertSameBits(wide * rescale, wide.TimesNumber(rescale));
        Assert.False((wide * (1.0 / 255)).eq(wide.TimesNumber(rescale)).all().item<bool>());
    }

    [Fact]
    public void DividedByNumber_AndArange_AreTheImplicitForms()
    {
        using var _ = torch.NewDisposeScope();
        foreach (var (dim, dtype) in new[] { (40, ScalarType.Float32), (24, ScalarType.Float32), (64, ScalarType.Float64), (80, ScalarType.Float64) })
        {
            var implicitForm = torch.arange(0, dim, 2, dtype) / dim;
            var rooted = Rooted.Arange(0, dim, 2, dtype).DividedByNumber(dim);
            AssertSameBits(implicitForm, rooted);
            // What the rotary tables are made of: 1 / θ^(2i/d), as reciprocal() without the ×1.
            var theta = dtype == ScalarType.Float32 ? torch.tensor(10000f) : torch.tensor(1_000_000.0);
            AssertSameBits(1.0f / torch.pow(theta, implicitForm), torch.pow(theta, rooted).reciprocal());
        }
        AssertSameBits(torch.arange(7, device: torch.CPU), Rooted.Arange(7, torch.CPU));
    }

    [Fact]
    public void Plus_IsTheOperator()
    {
        using var _ = torch.NewDisposeScope();
        var g = new Generator(7);
        var a = torch.randn(new long[] { 3, 5 }, generator: g);
        var b = torch.randn(new long[] { 3, 5 }, generator: g);
        AssertSameBits(a + b, a.Plus(b));
        var ids = torch.tensor(new long[] { 0, 255, 17 });
        AssertSameBits(ids + torch.tensor(new long[] { 0, 256, 512 }), ids.Plus(torch.tensor(new long[] { 0, 256, 512 })));
    }
}
