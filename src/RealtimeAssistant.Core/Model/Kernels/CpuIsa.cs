using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>The instruction sets the CPU kernels have a path for, widest last.</summary>
public enum KernelIsa { Scalar, Avx2, Avx512 }

/// <summary>
/// Which kernel path runs: the widest this CPU has, or a narrower one forced for a test or a
/// measurement (a machine without AVX-512 is simulated by forcing <see cref="KernelIsa.Avx2"/>).
/// </summary>
public static class CpuIsa
{
    public static KernelIsa Detected { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated ? KernelIsa.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelIsa.Avx2
        : KernelIsa.Scalar;

    // Per async flow, so a test that forces a path does not change the one a concurrent test takes.
    static readonly AsyncLocal<KernelIsa?> Forced = new();

    /// <summary>The path the kernels take now (read by the calling thread before it hands out ranges).</summary>
    public static KernelIsa Current => Forced.Value ?? Detected;

    /// <summary>Takes <paramref name="isa"/> (at most <see cref="Detected"/>) in this flow until the result is disposed.</summary>
    public static IDisposable Force(KernelIsa isa)
    {
        if (isa > Detected) throw new ArgumentException($"this CPU has no {isa} path (it has {Detected})", nameof(isa));
        var previous = Forced.Value;
        Forced.Value = isa;
        return new Restore(() => Forced.Value = previous);
    }

    /// <summary>
    /// Whether a bfloat16 matmul runs natively here (AVX512_BF16 or AMX-BF16): then a bf16 GEMM is
    /// the fastest dense one libtorch has on this CPU, and a prefill over compact weights takes it.
    /// </summary>
    public static bool HasBf16Matmul { get; } = X86Base.IsSupported && DetectBf16();

    static readonly AsyncLocal<bool?> ForcedBf16Matmul = new();

    /// <summary>
    /// Whether a product over bfloat16 weights takes libtorch's bf16 GEMM now: where the CPU has
    /// it natively, unless a test or a measurement simulates a CPU without it
    /// (<see cref="ForceNoBf16Matmul"/>). Otherwise the weights are widened to float32 for it.
    /// </summary>
    public static bool MultipliesBf16 => ForcedBf16Matmul.Value ?? HasBf16Matmul;

    /// <summary>Products in this flow take the path a CPU without native bf16 takes, until the result is disposed.</summary>
    public static IDisposable ForceNoBf16Matmul()
    {
        var previous = ForcedBf16Matmul.Value;
        ForcedBf16Matmul.Value = false;
        return new Restore(() => ForcedBf16Matmul.Value = previous);
    }

    static bool DetectBf16()
    {
        var (maxLeaf, _, _, _) = X86Base.CpuId(0, 0);
        if (maxLeaf < 7) return false;
        var (_, _, _, edx0) = X86Base.CpuId(7, 0);
        var (eax1, _, _, _) = X86Base.CpuId(7, 1);
        bool avx512Bf16 = Avx512F.IsSupported && (eax1 & (1 << 5)) != 0;
        bool amxBf16 = (edx0 & (1 << 22)) != 0;
        return avx512Bf16 || amxBf16;
    }

    internal sealed class Restore(Action undo) : IDisposable
    {
        Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }
}
