using RealtimeAssistant.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model;

/// <summary>How a model's matmul weights are stored (<c>--weights</c>).</summary>
public enum WeightFormat
{
    /// <summary>float32: 4 bytes a weight.</summary>
    F32,
    /// <summary>bfloat16: 2 bytes a weight; products accumulate in float32.</summary>
    BF16,
    /// <summary>int8 in blocks of 32 along the input, a float32 scale per block: 1.125 bytes a weight.</summary>
    Q8,
    /// <summary>IEEE half: 2 bytes a weight, widened exactly to float32 for every product (a float16 checkpoint's own weights).</summary>
    F16,
}

public static class WeightFormats
{
    public static WeightFormat Parse(string spec) => spec.Trim().ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => WeightFormat.F32,
        "bf16" or "bfloat16" => WeightFormat.BF16,
        "f16" or "fp16" or "float16" => WeightFormat.F16,
        "q8" or "int8" => WeightFormat.Q8,
        var s => throw new UserError($"--weights '{s}' is not one of auto, f32, bf16, f16, q8"),
    };

    public static string Name(this WeightFormat f) => f switch { WeightFormat.F32 => "f32", WeightFormat.BF16 => "bf16", WeightFormat.F16 => "f16", _ => "q8" };

    /// <summary>The dense format a tensor dtype is, if it is one.</summary>
    public static WeightFormat? Of(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => WeightFormat.F32,
        ScalarType.BFloat16 => WeightFormat.BF16,
        ScalarType.Float16 => WeightFormat.F16,
        _ => null,
    };
}

/// <summary>
/// A weight matrix W [out, in] in one storage format, and the product x·Wᵀ + b over it. On the
/// CPU a product over a few rows (a decode step) runs this project's kernels (Kernels/Gemv),
/// which stream the weights at memory speed; more rows run libtorch's GEMM, over compact weights
/// in bfloat16 where the CPU has native bf16 dot products and in float32 otherwise (f16 always).
/// On other devices libtorch runs all.
/// </summary>
public abstract unsafe class WeightMatrix : IDisposable
{
    public abstract WeightFormat Format { get; }
    public abstract long OutFeatures { get; }
    public abstract long InFeatures { get; }
    /// <summary>Weights the matrix stands for (out × in, whatever its storage).</summary>
    public long Elements => OutFeatures * InFeatures;
    public abstract Device Device { get; }
    /// <summary>Bytes the matrix holds.</summary>
    public abstract long Bytes { get; }

    /// <summary>x [.., in] → x·Wᵀ + b [.., out], in x's dtype.</summary>
    public abstract Tensor Linear(Tensor x, Tensor? bias);

    /// <summary>Rows <paramref name="ids"/> of W as [ids.shape.., in] in <paramref name="dtype"/>: an embedding lookup.</summary>
    public abstract Tensor Rows(Tensor ids, ScalarType dtype);

    /// <summary>W as a dense [out, in] tensor of <paramref name="dtype"/>.</summary>
    public abstract Tensor Dequantize(ScalarType dtype);

    /// <summary>The product over this matrix's memory on the CPU kernels (null where they do not take it).</summary>
    internal abstract KernelProduct? CpuProduct();

    public abstract void Dispose();

    /// <summary>A copy of <paramref name="w"/> [out, in] in <paramref name="format"/>; w is left as it is.</summary>
    public static WeightMatrix Convert(Tensor w, WeightFormat format) => format switch
    {
        WeightFormat.Q8 => Q8Matrix.Quantize(w),
        WeightFormat.BF16 => new DenseMatrix(w.to_type(ScalarType.BFloat16).contiguous().DetachFromDisposeScope()),
        WeightFormat.F16 => new DenseMatrix(Finite(w.to_type(ScalarType.Float16).contiguous()).DetachFromDisposeScope()),
        _ => new DenseMatrix(w.to_type(ScalarType.Float32).contiguous().DetachFromDisposeScope()),
    };

    /// <summary>
    /// Elements a scratch for a matrix's rows holds at most (128 MB in float32): every matrix a
    /// 2–3B model's prefill multiplies fits in one block, so its product is one GEMM straight into
    /// y; a larger matrix is multiplied a block of rows at a time, each block's columns copied into y.
    /// </summary>
    internal const long ScratchElements = 1 << 25;

    static readonly AsyncLocal<long?> ScratchLimit = new();

    /// <summary>Scratches in this flow hold at most <paramref name="elements"/> until the result is disposed (tests of the blocked path).</summary>
    internal static IDisposable LimitScratch(long elements)
    {
        var previous = ScratchLimit.Value;
        ScratchLimit.Value = elements;
        return new Kernels.CpuIsa.Restore(() => ScratchLimit.Value = previous);
    }

    // Scratches for a matrix's rows, per dtype, one per product running at once: taken for a
    // product and put back after it, each grown to the largest block it has held.
    static readonly System.Collections.Concurrent.ConcurrentDictionary<ScalarType, System.Collections.Concurrent.ConcurrentBag<Tensor>> Scratches = new();

    /// <summary>Writes rows [first, first + count) of a weight matrix, dense and row-major, at dst.</summary>
    internal unsafe delegate void RowWriter(long first, long count, void* dst);

    /// <summary>
    /// x·Wᵀ + b [.., m] for a W [m, n] stored compactly on the CPU: <paramref name="rows"/> makes
    /// W's rows in <paramref name="dtype"/> in a reused scratch, at most
    /// <see cref="ScratchElements"/> at a time, and libtorch's GEMM multiplies each block (x cast
    /// to dtype and back when they differ). The scratch is bounded, so the compact weights' memory
    /// saving holds, and reused, so no product touches fresh pages.
    /// </summary>
    internal static unsafe Tensor ScratchLinear(Tensor x, long m, long n, ScalarType dtype, RowWriter rows, Tensor? bias)
    {
        long block = Math.Clamp((ScratchLimit.Value ?? ScratchElements) / Math.Max(1, n), 1, m);
        var bag = Scratches.GetOrAdd(dtype, _ => new());
        if (!bag.TryTake(out var scratch) || scratch.numel() < block * n)
        {
            scratch?.Dispose();
            scratch = torch.empty(block * n, dtype).DetachFromDisposeScope();
        }
        try
        {
            using var scope = torch.NewDisposeScope();
            var xd = x.dtype == dtype ? x : x.to_type(dtype);
            var bd = bias is null || bias.dtype == dtype ? bias : bias.to_type(dtype);
            byte* dst = TensorMemory.Ptr<byte>(scratch);
            if (block == m)
            {
                rows(0, m, dst);
                return F.linear(xd, scratch.narrow(0, 0, m * n).view(m, n), bd).to_type(x.dtype).MoveToOuterDisposeScope();
            }
            var shape = x.Dims();
            shape[^1] = m;
            var y = torch.empty(shape, x.dtype, x.device);
            var x2 = xd.reshape(-1, n);
            var y2 = y.view(-1, m);
            for (long o = 0; o < m; o += block)
            {
                long c = Math.Min(block, m - o);
                using var inner = torch.NewDisposeScope();
                rows(o, c, dst);
                y2.narrow(1, o, c).copy_(F.linear(x2, scratch.narrow(0, 0, c * n).view(c, n), bd?.narrow(0, o, c)));
            }
            return y.MoveToOuterDisposeScope();
        }
        finally { bag.Add(scratch); }
    }

    /// <summary>
    /// x·Wᵀ + b over a float16 or bfloat16 W on the CPU, as float32 multiplies it: W's rows are
    /// widened exactly (<see cref="Gemv.WidenF16"/>, <see cref="Gemv.WidenBf16"/>) into a float32
    /// scratch (<see cref="ScratchLinear"/>).
    /// </summary>
    internal static unsafe Tensor WidenedLinear(Tensor x, Tensor w, Tensor? bias)
    {
        bool bf16 = w.dtype == ScalarType.BFloat16;
        long n = w.size(1);
        var wc = w.is_contiguous() ? w : w.contiguous();
        try
        {
            nint halves = (nint)TensorMemory.Ptr<ushort>(wc);
            return ScratchLinear(x, w.size(0), n, ScalarType.Float32, (o, c, dst) => Widen(bf16, (ushort*)halves + o * n, (float*)dst, c * n), bias);
        }
        finally
        {
            if (!ReferenceEquals(wc, w)) wc.Dispose();
        }
    }

    static unsafe void Widen(bool bf16, ushort* halves, float* dst, long count)
    {
        if (bf16) Gemv.WidenBf16(halves, dst, count);
        else Gemv.WidenF16(halves, dst, count);
    }

    /// <summary>The kernels widen halves on the assumption that none is infinite or NaN (Gemv, float16): such a checkpoint is refused.</summary>
    static Tensor Finite(Tensor half)
    {
        if (torch.isfinite(half).all().item<bool>()) return half;
        half.Dispose();
        throw new UserError("a weight matrix holds an infinity or NaN, which --weights f16 cannot store (the checkpoint is damaged; --weights f32 loads it as it is)");
    }

    /// <summary>
    /// x·Wᵀ + b for a dense W of any dtype (x is cast to it and back when they differ). Where a
    /// gradient is needed, libtorch runs it (the kernels have no backward). Half weights under
    /// float32 activations on the CPU are widened to float32 for the product instead, float16
    /// always (libtorch's CPU half GEMM is slow, and half activations could overflow) and
    /// bfloat16 where the CPU has no native bf16 products (libtorch's bf16 GEMM is slow there).
    /// </summary>
    public static Tensor DenseLinear(Tensor x, Tensor w, Tensor? bias)
    {
        if (!Compaction.NeedsGradient(x, w, bias) && KernelApplies(x, w, bias)) return RunKernel(x, w.size(0), (xp, rows, n, yp, bp) =>
        {
            unsafe
            {
                if (w.dtype == ScalarType.Float32) Gemv.F32(xp, rows, n, TensorMemory.Ptr<float>(w), (int)w.size(0), bp, yp);
                else if (w.dtype == ScalarType.Float16) Gemv.F16(xp, rows, n, TensorMemory.Ptr<ushort>(w), (int)w.size(0), bp, yp);
                else Gemv.Bf16(xp, rows, n, TensorMemory.Ptr<ushort>(w), (int)w.size(0), bp, yp);
            }
        }, bias);
        if (x.dtype == w.dtype) return F.linear(x, w, bias);
        using var scope = torch.NewDisposeScope();
        if (x.dtype == ScalarType.Float32 && w.device_type == DeviceType.CPU && !Compaction.NeedsGradient(x, w, bias)
            && (w.dtype == ScalarType.Float16 || w.dtype == ScalarType.BFloat16 && !CpuIsa.MultipliesBf16))
            return WidenedLinear(x, w, bias).MoveToOuterDisposeScope();
        return F.linear(x.to_type(w.dtype), w, bias?.to_type(w.dtype)).to_type(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether products over a few rows take the CPU kernels (the default). Off, libtorch runs every
    /// product, q8 ones over a dequantized copy: the reference `ra bench engine --kernels off` measures.
    /// </summary>
    public static bool KernelsEnabled { get; set; } = true;

    /// <summary>Whether the CPU kernels take this product: float32 activations, few rows, contiguous weights.</summary>
    internal static bool KernelApplies(Tensor x, Tensor w, Tensor? bias) =>
        KernelsEnabled && x.device_type == DeviceType.CPU && w.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32
        && (w.dtype == ScalarType.Float32 || w.dtype == ScalarType.BFloat16 || w.dtype == ScalarType.Float16) && w.is_contiguous()
        && BiasApplies(bias) && Rows(x) <= Gemv.MaxRows;

    internal static bool BiasApplies(Tensor? bias) =>
        bias is null || (bias.dtype == ScalarType.Float32 && bias.is_contiguous() && bias.device_type == DeviceType.CPU);

    internal static long Rows(Tensor x) => x.size(-1) == 0 ? 0 : x.numel() / x.size(-1);

    internal unsafe delegate void Kernel(float* x, int rows, int n, float* y, float* bias);

    /// <summary>Allocates y [.., out], gives the kernel x (made contiguous), y and the bias as pointers.</summary>
    internal static unsafe Tensor RunKernel(Tensor x, long outFeatures, Kernel kernel, Tensor? bias)
    {
        var xc = x.is_contiguous() ? x : x.contiguous();
        try
        {
            var shape = x.Dims();
            shape[^1] = outFeatures;
            var y = torch.empty(shape, ScalarType.Float32, x.device);
            kernel(TensorMemory.Ptr<float>(xc), (int)Rows(x), (int)x.size(-1), TensorMemory.Ptr<float>(y),
                bias is null ? null : TensorMemory.Ptr<float>(bias));
            return y;
        }
        finally { if (!ReferenceEquals(xc, x)) xc.Dispose(); }
    }
}

/// <summary>A float32, bfloat16 or float16 matrix.</summary>
public sealed class DenseMatrix : WeightMatrix
{
    readonly Tensor _w;
    public DenseMatrix(Tensor w) => _w = w;
    public Tensor Weight => _w;
    public override WeightFormat Format => WeightFormats.Of(_w.dtype) ?? throw new InvalidOperationException($"no weight format stores {_w.dtype}");
    public override long OutFeatures => _w.size(0);
    public override long InFeatures => _w.size(1);
    public override Device Device => _w.device;
    public override long Bytes => _w.numel() * _w.ElementSize;
    public override Tensor Linear(Tensor x, Tensor? bias) => DenseLinear(x, _w, bias);
    public override Tensor Rows(Tensor ids, ScalarType dtype)
    {
        var shape = ids.Dims().Append(_w.size(1)).ToArray();
        using var rows = _w.index_select(0, ids.reshape(-1));
        return rows.to_type(dtype).view(shape);
    }
    public override Tensor Dequantize(ScalarType dtype) => _w.to_type(dtype, copy: true);
    internal override KernelProduct? CpuProduct() => KernelProduct.Dense(_w);
    public override void Dispose() => _w.Dispose();
}

/// <summary>
/// Weight-only int8: blocks of 32 along the input, each with a float32 scale (its largest |w| /
/// 127, so a block's values round to −127..127). The input is zero-padded to a multiple of 32.
/// </summary>
public sealed unsafe class Q8Matrix : WeightMatrix
{
    /// <summary>int8 [out, in32].</summary>
    public Tensor Q { get; }
    /// <summary>float32 [out, in32 / 32].</summary>
    public Tensor Scales { get; }
    readonly long _in;

    public Q8Matrix(Tensor q, Tensor scales, long inFeatures)
    {
        if (q.dtype != ScalarType.Int8 || scales.dtype != ScalarType.Float32 || q.size(1) % 32 != 0 || scales.size(1) * 32 != q.size(1) || inFeatures > q.size(1))
            throw new ArgumentException("q8 storage: int8 [out, in32] and float32 scales [out, in32/32]");
        (Q, Scales, _in) = (q, scales, inFeatures);
    }

    public override WeightFormat Format => WeightFormat.Q8;
    public override long OutFeatures => Q.size(0);
    public override long InFeatures => _in;
    public override Device Device => Q.device;
    public override long Bytes => Q.numel() + Scales.numel() * 4;

    /// <summary>Rows quantized per chunk, so a large float32 matrix never has a second full-size temporary.</summary>
    const long RowsPerChunk = 1024;

    /// <summary>
    /// Quantizes w [out, in] of any float dtype, on its device: on the CPU a float32, bfloat16 or
    /// float16 matrix in one pass of the kernel (<see cref="Kernels.Q8Blocks.Quantize"/>), elsewhere
    /// with libtorch's ops, which give the same bits.
    /// </summary>
    public static Q8Matrix Quantize(Tensor w)
    {
        Kernels.Q8Blocks.Source? source = w.dtype switch
        {
            ScalarType.Float32 => Kernels.Q8Blocks.Source.F32,
            ScalarType.BFloat16 => Kernels.Q8Blocks.Source.BF16,
            ScalarType.Float16 => Kernels.Q8Blocks.Source.F16,
            _ => null,
        };
        if (source is not { } kind || w.device_type != DeviceType.CPU || w.dim() != 2 || !w.is_contiguous() || w.size(0) > int.MaxValue || w.size(1) > int.MaxValue)
            return QuantizeWithTorch(w);
        long m = w.size(0), n = w.size(1), n32 = (n + 31) / 32 * 32;
        var q = torch.empty(new[] { m, n32 }, ScalarType.Int8, w.device).DetachFromDisposeScope();
        var scales = torch.empty(new[] { m, n32 / 32 }, ScalarType.Float32, w.device).DetachFromDisposeScope();
        bool finite;
        unsafe { finite = Kernels.Q8Blocks.Quantize(Kernels.TensorMemory.Ptr<byte>(w), kind, (int)m, (int)n, Kernels.TensorMemory.Ptr<sbyte>(q), Kernels.TensorMemory.Ptr<float>(scales)); }
        return Finite(new Q8Matrix(q, scales, n), finite);
    }

    /// <summary>The matrix, unless a weight was an infinity or NaN: no block's scale can hold one, and every product over it would be NaN.</summary>
    static Q8Matrix Finite(Q8Matrix matrix, bool finite)
    {
        if (finite) return matrix;
        matrix.Dispose();
        throw new UserError("a weight matrix holds an infinity or NaN, which --weights q8 cannot store (the checkpoint is damaged; --weights f32 loads it as it is)");
    }

    /// <summary>Quantizes w with libtorch's ops, a chunk of rows at a time (any device; the kernel's reference).</summary>
    internal static Q8Matrix QuantizeWithTorch(Tensor w)
    {
        long m = w.size(0), n = w.size(1), n32 = (n + 31) / 32 * 32;
        var q = torch.empty(new[] { m, n32 }, ScalarType.Int8, w.device).DetachFromDisposeScope();
        var scales = torch.empty(new[] { m, n32 / 32 }, ScalarType.Float32, w.device).DetachFromDisposeScope();
        using var noGrad = torch.no_grad();
        using Scalar steps = 127f.ToScalar(), lowest = (-127).ToScalar(), highest = 127.ToScalar(); // alive across the calls: see Rooted
        for (long r = 0; r < m; r += RowsPerChunk)
        {
            using var scope = torch.NewDisposeScope();
            long rows = Math.Min(RowsPerChunk, m - r);
            var chunk = w.narrow(0, r, rows).to_type(ScalarType.Float32);
            if (n32 != n) chunk = F.pad(chunk, new[] { 0L, n32 - n });
            var blocks = chunk.view(rows, n32 / 32, 32);
            var s = blocks.abs().amax(new long[] { -1 }).div(steps);
            var inv = torch.where(s.gt(Rooted.Zero), s.reciprocal(), torch.zeros_like(s)); // what 1f / s runs, less a ×1
            var values = (blocks * inv.unsqueeze(-1)).round_().clamp_(lowest, highest).to_type(ScalarType.Int8);
            q.narrow(0, r, rows).copy_(values.view(rows, n32));
            scales.narrow(0, r, rows).copy_(s);
        }
        // A NaN or infinity among the weights leaves its block's scale one too.
        return Finite(new Q8Matrix(q, scales, n), torch.isfinite(scales).all().item<bool>());
    }

    public override Tensor Dequantize(ScalarType dtype)
    {
        long m = Q.size(0), n32 = Q.size(1);
        if (Q.device_type == DeviceType.CPU && (dtype == ScalarType.Float32 || dtype == ScalarType.BFloat16))
        {
            var output = torch.empty(new[] { m, _in }, dtype, Q.device);
            unsafe { Q8Blocks.Dequantize(TensorMemory.Ptr<sbyte>(Q), TensorMemory.Ptr<float>(Scales), (int)m, (int)_in, TensorMemory.Ptr<byte>(output), dtype == ScalarType.BFloat16); }
            return output;
        }
        using var scope = torch.NewDisposeScope();
        var w = (Q.to_type(ScalarType.Float32).view(m, n32 / 32, 32) * Scales.unsqueeze(-1)).view(m, n32);
        return w.narrow(1, 0, _in).to_type(dtype).contiguous().MoveToOuterDisposeScope();
    }

    public override Tensor Linear(Tensor x, Tensor? bias)
    {
        if (KernelsEnabled && x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && BiasApplies(bias) && Rows(x) <= Gemv.MaxRows)
            return RunKernel(x, OutFeatures, (xp, rows, n, yp, bp) =>
            {
                unsafe { Gemv.Q8(xp, rows, n, TensorMemory.Ptr<sbyte>(Q), TensorMemory.Ptr<float>(Scales), (int)OutFeatures, bp, yp); }
            }, bias);
        // Many rows: the weights dequantized into a reused scratch, in the dtype the CPU multiplies fastest.
        var dtype = x.device_type == DeviceType.CPU && CpuIsa.MultipliesBf16 ? ScalarType.BFloat16 : x.dtype;
        // (Not under autograd: a product's backward would read the scratch after the next product reused it.)
        if (Q.device_type == DeviceType.CPU && !Compaction.NeedsGradient(x, Q, bias) && dtype is ScalarType.Float32 or ScalarType.BFloat16)
        {
            long n32 = Q.size(1), blocks = n32 / 32;
            nint q = (nint)TensorMemory.Ptr<sbyte>(Q), scales = (nint)TensorMemory.Ptr<float>(Scales);
            bool bf16 = dtype == ScalarType.BFloat16;
            return ScratchLinear(x, OutFeatures, _in, dtype,
                (o, c, dst) => Q8Blocks.Dequantize((sbyte*)q + o * n32, (float*)scales + o * blocks, (int)c, (int)_in, dst, bf16), bias);
        }
        using var w = Dequantize(dtype);
        return DenseLinear(x, w, bias);
    }

    internal override KernelProduct? CpuProduct() =>
        Q.device_type != DeviceType.CPU ? null : new KernelProduct((nint)TensorMemory.Ptr<sbyte>(Q), (nint)TensorMemory.Ptr<float>(Scales), (int)OutFeatures, (int)_in, WeightFormat.Q8);

    public override Tensor Rows(Tensor ids, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var flat = ids.reshape(-1);
        long k = flat.size(0), n32 = Q.size(1);
        var rows = (Q.index_select(0, flat).to_type(ScalarType.Float32).view(k, n32 / 32, 32) * Scales.index_select(0, flat).unsqueeze(-1)).view(k, n32);
        var shape = ids.Dims().Append(_in).ToArray();
        return rows.narrow(1, 0, _in).to_type(dtype).reshape(shape).MoveToOuterDisposeScope();
    }

    public override void Dispose() { Q.Dispose(); Scales.Dispose(); }
}

/// <summary>
/// y [rows, out] = x [rows, in]·Wᵀ (+ b) on the CPU kernels over a weight's memory, for callers
/// that hold no tensors (the fused decode step). The weight's owner keeps it alive and in place.
/// </summary>
internal readonly unsafe record struct KernelProduct(nint W, nint Scales, int Out, int In, WeightFormat Format)
{
    /// <summary>A dense float32, bfloat16 or float16 [out, in] on the CPU, contiguous (null otherwise).</summary>
    public static KernelProduct? Dense(Tensor w)
    {
        if (w.device_type != DeviceType.CPU || w.dim() != 2 || !w.is_contiguous()) return null;
        var format = WeightFormats.Of(w.dtype);
        return format is { } f ? new KernelProduct((nint)TensorMemory.Ptr<byte>(w), 0, (int)w.size(0), (int)w.size(1), f) : null;
    }

    public void Run(float* x, int rows, float* y, float* bias)
    {
        switch (Format)
        {
            case WeightFormat.F32: Gemv.F32(x, rows, In, (float*)W, Out, bias, y); break;
            case WeightFormat.BF16: Gemv.Bf16(x, rows, In, (ushort*)W, Out, bias, y); break;
            case WeightFormat.F16: Gemv.F16(x, rows, In, (ushort*)W, Out, bias, y); break;
            default: Gemv.Q8(x, rows, In, (sbyte*)W, (float*)Scales, Out, bias, y); break;
        }
    }
}
