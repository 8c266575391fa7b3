using RealtimeAssistant.Model;
using RealtimeAssistant.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Tests.Model;

/// <summary>
/// The CPU matmul kernels against libtorch in float64, on random shapes (odd sizes included),
/// with each instruction-set path forced in turn.
/// </summary>
public class KernelTests
{
    public static TheoryData<KernelIsa> Paths()
    {
        var data = new TheoryData<KernelIsa>();
        foreach (var isa in Enum.GetValues<KernelIsa>().Where(i => i <= CpuIsa.Detected)) data.Add(isa);
        return data;
    }

    // rows, in, out: one row (decode), several, inputs that are not a multiple of 16 or 32, one output.
    static readonly (int Rows, int In, int Out)[] Shapes =
    {
        (1, 32, 4), (1, 1024, 96), (3, 1000, 37), (8, 77, 129), (1, 16, 1), (2, 2752, 65), (5, 31, 3), (1, 336, 128),
    };

    static Tensor Random(Generator g, params long[] shape) => torch.randn(shape, generator: g);

    // Scalars the tests pass to libtorch, alive for the whole run: an implicit one (a bare number)
    // can be freed by its finalizer while libtorch reads it (Model/Rooted), and these tensors are large.
    static readonly Scalar TinyShare = 0.2.ToScalar();
    static readonly Tensor Tiny = torch.tensor(1e-6f), One = torch.tensor(1f);

    /// <summary>relative · scale + absolute, with rooted Scalars.</summary>
    static Tensor Bound(Tensor scale, double relative, double absolute = 0) => scale.TimesNumber(relative).PlusNumber(absolute);

    /// <summary>Σ|x|·|w| per output: the scale a float dot product's rounding error is measured against.</summary>
    static Tensor Scale(Tensor x, Tensor w) => x.abs().to_type(ScalarType.Float64).matmul(w.abs().to_type(ScalarType.Float64).t());

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && (a == b).all().item<bool>();

    static void AssertWithin(Tensor y, Tensor reference, Tensor bound, string what)
    {
        var excess = ((y.to_type(ScalarType.Float64) - reference).abs() - bound).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds the bound by {excess:E3}");
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void F32MatchesLibtorch(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(11);
        foreach (var (rows, n, m) in Shapes)
        {
            var x = Random(g, rows, n); var w = Random(g, m, n); var b = Random(g, m);
            var y = WeightMatrix.DenseLinear(x, w, b);
            var reference = F.linear(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64));
            AssertWithin(y, reference, Bound(Scale(x, w), 1e-5, 1e-5), $"f32 {isa} {rows}×{n}→{m}");
        }
    }

    /// <summary>
    /// Several rows share each load of the weights, and each row's sum runs in the order it runs
    /// alone: a block of drafted tokens gets a decode step's bits, in every weight format. Over
    /// float32 and half weights, rows of x from 4,096 inputs (a down product's) under four rows
    /// share each load of x across four weight rows instead, and still give the bits of the rows'
    /// own products, a remainder of weight rows included.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void EachOfSeveralRows_IsThatRowAloneBitForBit(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(5);
        foreach (var (rows, n, m) in new[] { (8, 128, 37), (7, 77, 19), (5, 1000, 9), (4, 48, 3), (8, 96, 5), (5, 4133, 11), (3, 4133, 9), (2, 4096, 6) })
        {
            var x = Random(g, rows, n); var w = Random(g, m, n); var b = Random(g, m);
            using var q = Q8Matrix.Quantize(w);
            var wb = w.to_type(ScalarType.BFloat16);
            var wh = w.to_type(ScalarType.Float16);
            foreach (var (format, product) in new (string, Func<Tensor, Tensor>)[]
            {
                ("f32", xs => WeightMatrix.DenseLinear(xs, w, b)), ("bf16", xs => WeightMatrix.DenseLinear(xs, wb, b)),
                ("f16", xs => WeightMatrix.DenseLinear(xs, wh, b)), ("q8", xs => q.Linear(xs, b)),
            })
            {
                var all = product(x);
                var alone = torch.cat(Enumerable.Range(0, rows).Select(r => product(x.narrow(0, r, 1))).ToArray(), 0);
                Assert.True(Same(alone, all), $"{format} {isa} {rows}×{n}→{m}: rows differ from their products alone by {(alone - all).abs().max().item<float>():g3}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Bf16MatchesLibtorch(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(12);
        foreach (var (rows, n, m) in Shapes)
        {
            var x = Random(g, rows, n); var w = Random(g, m, n).to_type(ScalarType.BFloat16);
            var y = WeightMatrix.DenseLinear(x, w, null);
            Assert.Equal(ScalarType.Float32, y.dtype);
            // bfloat16 widens to float32 exactly: the only error is the float32 sum's.
            var reference = F.linear(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64));
            AssertWithin(y, reference, Bound(Scale(x, w), 1e-5, 1e-5), $"bf16 {isa} {rows}×{n}→{m}");
        }
    }

    /// <summary>
    /// bfloat16 weights on a CPU without native bf16 products (simulated): a product over many
    /// rows multiplies the weights widened to float32, so the only error is the float32 sum's,
    /// bias included. With native bf16 products the activations are rounded to bf16 first, which
    /// this bound would catch.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void Bf16WithoutNativeBf16Products_MultipliesFloat32Widenings(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var noBf16 = CpuIsa.ForceNoBf16Matmul();
        using var _ = torch.inference_mode();
        var g = new Generator(16);
        foreach (var (rows, n, m) in new[] { (Gemv.MaxRows + 3, 70, 9), (Gemv.MaxRows + 3, 4096, 1100) })
        {
            var x = Random(g, rows, n);
            var w = Random(g, m, n).to_type(ScalarType.BFloat16);
            var bias = Random(g, 1, m).reshape(m);
            var y = WeightMatrix.DenseLinear(x, w, bias);
            Assert.Equal(ScalarType.Float32, y.dtype);
            var reference = F.linear(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), bias.to_type(ScalarType.Float64));
            AssertWithin(y, reference, Bound(Scale(x, w), 1e-5, 1e-5), $"bf16 widened {isa} {rows}×{n}→{m}");
        }
    }

    /// <summary>
    /// float16 weights: the kernels (a few rows) and the widened float32 blocks (many rows) both
    /// multiply the exact values, so the only error is the float32 sum's; with subnormal, zero
    /// and negative-zero weights among them.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void F16MatchesLibtorch(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(14);
        // The last two shapes take the widened GEMM (more rows than the kernels take).
        foreach (var (rows, n, m) in Shapes.Append((Gemv.MaxRows + 3, 70, 9)).Append((Gemv.MaxRows + 3, 4096, 1100)))
        {
            var x = Random(g, rows, n);
            var normal = Random(g, m, n);
            var tiny = torch.rand(m, n, generator: g).lt(TinyShare); // a fifth of the weights subnormal in half precision
            var w = normal.mul(torch.where(tiny, Tiny, One)).to_type(ScalarType.Float16);
            w[0, 0] = torch.tensor(0f).to_type(ScalarType.Float16);
            w[0, 1] = torch.tensor(-0f).to_type(ScalarType.Float16);
            var y = WeightMatrix.DenseLinear(x, w, null);
            Assert.Equal(ScalarType.Float32, y.dtype);
            var reference = F.linear(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64));
            AssertWithin(y, reference, Bound(Scale(x, w), 1e-5, 1e-5), $"f16 {isa} {rows}×{n}→{m}");
        }
    }

    /// <summary>Every finite half (63,488 of the 65,536) widens to the float32 .NET's Half gives it, on every vector path this CPU has.</summary>
    [Fact]
    public void EveryHalfWidensExactly()
    {
        var halves = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        void Check(string path, int i, float got)
        {
            float want = (float)BitConverter.UInt16BitsToHalf(halves[i]);
            if (!float.IsFinite(want)) return; // refused when stored (F16WeightsAreFinite)
            Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got), $"{path}: 0x{halves[i]:x4} gave {got:R}, not {want:R}");
        }
        if (CpuIsa.Detected >= KernelIsa.Avx512)
            for (int i = 0; i < halves.Length; i += 16)
            {
                var v = Gemv.F16Widening.Sixteen(System.Runtime.Intrinsics.Vector256.Create(halves.AsSpan(i, 16)));
                for (int j = 0; j < 16; j++) Check("avx512", i + j, v[j]);
            }
        if (CpuIsa.Detected >= KernelIsa.Avx2)
            for (int i = 0; i < halves.Length; i += 8)
            {
                var v = Gemv.F16Widening.Eight(System.Runtime.Intrinsics.Vector128.Create(halves.AsSpan(i, 8)));
                for (int j = 0; j < 8; j++) Check("avx2", i + j, v[j]);
            }
        if (CpuIsa.Detected == KernelIsa.Scalar) Assert.Skip("this CPU has no vector path for the kernels (the scalar path uses .NET's Half)");
    }

    /// <summary>
    /// A matrix larger than the widening scratch is multiplied a block of rows at a time, each
    /// block's columns written into y (here blocks of 8 rows, the last one short, with a bias):
    /// the same products as one block, for both half formats.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void WidenedProductsInBlocksOfRows_AreTheProductsOfOneBlock(ScalarType half)
    {
        using var _ = torch.inference_mode();
        var g = new Generator(17);
        var x = Random(g, 2, 10, 70);
        var w = Random(g, 37, 70).to_type(half);
        var bias = Random(g, 1, 37).reshape(37);
        Tensor blocks;
        using (WeightMatrix.LimitScratch(8 * 70)) blocks = WeightMatrix.WidenedLinear(x, w, bias);
        var whole = WeightMatrix.WidenedLinear(x, w, bias);
        Assert.Equal(new long[] { 2, 10, 37 }, blocks.shape);
        var reference = F.linear(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), bias.to_type(ScalarType.Float64));
        AssertWithin(blocks, reference, Bound(Scale(x.reshape(-1, 70), w).reshape(2, 10, 37), 1e-5, 1e-5), $"{half} in blocks of 8 rows");
        AssertWithin(whole, reference, Bound(Scale(x.reshape(-1, 70), w).reshape(2, 10, 37), 1e-5, 1e-5), $"{half} in one block");
    }

    /// <summary>
    /// q8 weights under many rows are dequantized into a reused scratch, in bfloat16 where the CPU
    /// multiplies it natively and float32 otherwise (simulated), whole or a block of rows at a
    /// time (blocks of 128 rows, the last one short): the products over a dequantized copy, to
    /// the output's rounding.
    /// </summary>
    [Fact]
    public void Q8ProductsOverManyRows_AreTheProductsOverADequantizedCopy()
    {
        using var _ = torch.inference_mode();
        var g = new Generator(18);
        var x = Random(g, 2, 10, 250);
        var bias = Random(g, 1, 300).reshape(300);
        using var q = Q8Matrix.Quantize(Random(g, 300, 250));
        foreach (bool native in new[] { true, false })
        {
            if (native && !CpuIsa.HasBf16Matmul) continue;
            using var simulated = native ? null : CpuIsa.ForceNoBf16Matmul();
            using var copy = q.Dequantize(native ? ScalarType.BFloat16 : ScalarType.Float32);
            var scale = Scale(x.reshape(-1, 250), copy.to_type(ScalarType.Float32)).reshape(2, 10, 300);
            var reference = WeightMatrix.DenseLinear(x, copy, bias);
            var whole = q.Linear(x, bias);
            Tensor blocks;
            using (WeightMatrix.LimitScratch(128 * 250)) blocks = q.Linear(x, bias);
            foreach (var (y, how) in new[] { (whole, "one block"), (blocks, "blocks of 128 rows") })
            {
                Assert.Equal(new long[] { 2, 10, 300 }, y.shape);
                Assert.Equal(ScalarType.Float32, y.dtype);
                // bf16 products round their outputs to bf16, once or twice (before and after the bias):
                // within two bf16 ulps of what the sum's terms add up to in magnitude.
                AssertWithin(y, reference, Bound(scale.Plus(bias.abs().to_type(ScalarType.Float64)), native ? 1.6e-2 : 1e-5, 1e-4), $"q8 {(native ? "bf16" : "f32")} {how}");
            }
        }
    }

    /// <summary>Products over f16 weights running at once each widen into a scratch of their own: each gives what it gives alone.</summary>
    [Fact]
    public void F16ProductsAtOnce_EachGiveWhatTheyGiveAlone()
    {
        var g = new Generator(15);
        var w = Random(g, 1100, 4096).to_type(ScalarType.Float16);
        var xs = Enumerable.Range(0, 4).Select(_ => Random(g, Gemv.MaxRows + 5, 4096)).ToArray();
        // Half of them in blocks of 512 rows, so scratches of two sizes pass between products.
        Tensor Product(int i)
        {
            if (i % 2 == 0) return WeightMatrix.DenseLinear(xs[i], w, null);
            using (WeightMatrix.LimitScratch(512 * 4096)) return WeightMatrix.WidenedLinear(xs[i], w, null);
        }
        Tensor[] alone;
        using (torch.inference_mode()) alone = xs.Select((_, i) => Product(i)).ToArray();
        var together = new Tensor[xs.Length];
        Parallel.For(0, xs.Length, new ParallelOptions { MaxDegreeOfParallelism = xs.Length }, i =>
        {
            using var _ = torch.inference_mode();
            for (int rep = 0; rep < 3; rep++) together[i] = Product(i);
        });
        for (int i = 0; i < xs.Length; i++) Assert.True(Same(alone[i], together[i]), $"product {i} differs when others run beside it");
    }

    /// <summary>The kernels take halves to be finite, so a matrix with an infinity or NaN is not stored as f16: a user error.</summary>
    [Fact]
    public void F16WeightsAreFinite()
    {
        var w = torch.ones(4, 8);
        w[1, 2] = torch.tensor(float.PositiveInfinity);
        Assert.Contains("infinity or NaN", Assert.Throws<UserError>(() => WeightMatrix.Convert(w, WeightFormat.F16)).Message);
        w[1, 2] = torch.tensor(1e6f); // beyond a half's range: infinite once stored
        Assert.Throws<UserError>(() => WeightMatrix.Convert(w, WeightFormat.F16));
        w[1, 2] = torch.tensor(float.NaN);
        Assert.Throws<UserError>(() => WeightMatrix.Convert(w, WeightFormat.F16));
        w[1, 2] = torch.tensor(65504f);
        using var ok = WeightMatrix.Convert(w, WeightFormat.F16);
        Assert.Equal(WeightFormat.F16, ok.Format);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Q8MatchesLibtorchOverTheDequantizedWeights(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(13);
        foreach (var (rows, n, m) in Shapes)
        {
            var x = Random(g, rows, n); var b = Random(g, m);
            using var q = Q8Matrix.Quantize(Random(g, m, n));
            var wd = q.Dequantize(ScalarType.Float64);
            var y = q.Linear(x, b);
            var reference = F.linear(x.to_type(ScalarType.Float64), wd, b.to_type(ScalarType.Float64));
            // x goes to int16 per block of 32 (max |x| → 32767): each x moves by at most max|x_block|/65534.
            long n32 = (n + 31) / 32 * 32;
            var blockMax = F.pad(x, new[] { 0L, n32 - n }).view(rows, n32 / 32, 32).abs().amax(new long[] { -1 }, keepdim: true)
                .expand(rows, n32 / 32, 32).reshape(rows, n32).narrow(1, 0, n);
            AssertWithin(y, reference, Bound(Scale(blockMax, wd), 2e-5).Plus(Bound(Scale(x, wd), 1e-5, 1e-5)), $"q8 {isa} {rows}×{n}→{m}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void DecodeAttentionMatchesLibtorchsSdpa(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(17);
        // batch, heads, KV heads, head dim, keys: GQA, an odd key count, a head dim that is no multiple of 16.
        foreach (var (b, h, hkv, d, s) in new[] { (1, 16, 16, 64, 640), (2, 8, 2, 32, 37), (1, 4, 1, 24, 1), (1, 6, 3, 128, 300) })
        {
            var q = Random(g, b, h, 1, d);
            // Keys and values as a cache holds them: the first s rows of a larger buffer.
            var kBuf = Random(g, b, hkv, s + 9, d); var vBuf = Random(g, b, hkv, s + 9, d);
            var (k, v) = (kBuf.narrow(2, 0, s), vBuf.narrow(2, 0, s));
            Assert.True(DecodeAttention.Applies(q, (k, v)));
            var y = DecodeAttention.Run(q, (k, v));
            int rep = h / hkv;
            Tensor Repeat(Tensor t) => t.repeat_interleave(rep, 1);
            var reference = F.scaled_dot_product_attention(q.to_type(ScalarType.Float64), Repeat(k).to_type(ScalarType.Float64), Repeat(v).to_type(ScalarType.Float64));
            Assert.True(y.to_type(ScalarType.Float64).allclose(reference, 1e-5, 1e-5), $"{isa} b{b} h{h}/{hkv} d{d} s{s}: max diff {(y - reference).abs().max().item<double>():E2}");
            // Keys split in two ranges, read apart: one softmax over both, as over the joined cache.
            // Bit for bit: a key's score is its own whichever keys share its fold (the split moves every fold's keys).
            int cut = s / 3;
            var split = DecodeAttention.Run(q, (k.narrow(2, 0, cut), v.narrow(2, 0, cut)), (k.narrow(2, cut, s - cut), v.narrow(2, cut, s - cut)));
            Assert.True(Same(split, y), $"{isa} d{d} s{s}: split keys differ by {(split - y).abs().max().item<float>():E2}");
        }
        // What it does not take: several queries, a transposed key buffer, another dtype.
        var q2 = Random(g, 1, 4, 2, 32); var kk = Random(g, 1, 4, 10, 32);
        Assert.False(DecodeAttention.Applies(q2, (kk, kk)));
        Assert.False(DecodeAttention.Applies(q2.narrow(2, 0, 1), (kk.transpose(2, 3).contiguous().transpose(2, 3), kk)));
        Assert.False(DecodeAttention.Applies(q2.narrow(2, 0, 1).to_type(ScalarType.Float64), (kk.to_type(ScalarType.Float64), kk.to_type(ScalarType.Float64))));
    }

    /// <summary>
    /// The folded scores (16 keys a fold, AVX-512) against a horizontal sum per key, the path
    /// `ra bench engine --attention compare` measures them against: the same attention to float
    /// rounding, at every head width a fold takes and key counts on either side of a fold.
    /// </summary>
    [Fact]
    public void FoldedScores_MatchAPerKeySum()
    {
        if (CpuIsa.Detected != KernelIsa.Avx512) Assert.Skip("this CPU has no AVX-512: no fold to compare");
        using var _ = torch.inference_mode();
        var g = new Generator(29);
        foreach (var (d, s) in new[] { (16, 15), (32, 16), (64, 17), (128, 250), (64, 1) })
        {
            var q = Random(g, 1, 4, 1, d); var k = Random(g, 1, 2, s, d); var v = Random(g, 1, 2, s, d);
            Tensor folded, perKey;
            try
            {
                DecodeAttention.FoldedScores = false;
                perKey = DecodeAttention.Run(q, (k, v));
            }
            finally { DecodeAttention.FoldedScores = true; }
            folded = DecodeAttention.Run(q, (k, v));
            Assert.True(folded.allclose(perKey, 1e-6, 1e-6), $"d{d} s{s}: max diff {(folded - perKey).abs().max().item<float>():E2}");
        }
    }

    /// <summary>
    /// A batch of decode rows, each over its own cache: keys and values appended from memory
    /// (`KvGroup.AppendRow`, past the first buffer's capacity too), a source row over its source, target
    /// rows over their source and target read in place: each row equals libtorch's SDPA over its
    /// own joined keys.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void DecodeRowsOverTheirOwnCaches_MatchLibtorchsSdpa(KernelIsa isa)
    {
        using var forced = CpuIsa.Force(isa);
        using var _ = torch.inference_mode();
        var g = new Generator(23);
        foreach (int d in new[] { 24, 64 }) // a head no fold takes, and one AVX-512 folds
            RowsOverTheirOwnCaches(isa, g, d);
    }

    static void RowsOverTheirOwnCaches(KernelIsa isa, Generator g, int d)
    {
        int h = 8, hkv = 2;
        (int Source, int Target, CacheGroup Group)[] rows = [(5, 0, CacheGroup.Source), (1, 3, CacheGroup.Target), (37, 70, CacheGroup.Target), (0, 4, CacheGroup.Target)];
        var caches = rows.Select(_ => new LayerKv()).ToArray();
        for (int i = 0; i < rows.Length; i++)
        {
            if (rows[i].Source > 0)
                caches[i].Source.Append(Random(g, 1, hkv, rows[i].Source, d), Random(g, 1, hkv, rows[i].Source, d), Enumerable.Range(0, rows[i].Source).Select(p => (long)p).ToArray());
            for (int t = 0; t < rows[i].Target; t++)
            {
                // A row of a [1, Hkv, 3, D] block, as a batch's projections hold it (heads 3·D floats apart).
                var (k, v) = (Random(g, 1, hkv, 3, d), Random(g, 1, hkv, 3, d).transpose(1, 2).contiguous().transpose(1, 2));
                caches[i].Target.AppendRow(k, v, t % 3, t);
            }
        }
        var q = Random(g, 1, h, rows.Length, d);
        var ranges = rows.Select((r, i) => r.Group == CacheGroup.Source ? [caches[i].Source.KernelRange!.Value]
            : caches[i].Source.KernelRange is { } src ? new[] { src, caches[i].Target.KernelRange!.Value } : [caches[i].Target.KernelRange!.Value]).ToList();
        var y = DecodeAttention.RunRows(q, ranges, hkv);
        Tensor Repeat(Tensor t) => t.repeat_interleave(h / hkv, 1).to_type(ScalarType.Float64);
        for (int i = 0; i < rows.Length; i++)
        {
            var (k, v) = rows[i].Group == CacheGroup.Source ? (caches[i].Source.Keys, caches[i].Source.Values) : caches[i].KeysFor(CacheGroup.Target);
            Assert.Equal(rows[i].Group == CacheGroup.Source ? rows[i].Source : rows[i].Source + rows[i].Target, k.shape[2]);
            var reference = F.scaled_dot_product_attention(q.narrow(2, i, 1).to_type(ScalarType.Float64), Repeat(k), Repeat(v));
            var got = y.narrow(2, i, 1).to_type(ScalarType.Float64);
            Assert.True(got.allclose(reference, 1e-5, 1e-5), $"{isa} d{d} row {i}: max diff {(got - reference).abs().max().item<double>():E2}");
        }
        foreach (var c in caches) c.Dispose();
    }

    [Fact]
    public void WithoutAvx512TheOtherPathsGiveTheSameResults()
    {
        using var _ = torch.inference_mode();
        var g = new Generator(14);
        var x = Random(g, 2, 1000); var w = Random(g, 300, 1000);
        using var q = Q8Matrix.Quantize(w);
        var wb = w.to_type(ScalarType.BFloat16);
        Tensor[] Run(KernelIsa isa)
        {
            using var forced = CpuIsa.Force(isa);
            Assert.Equal(isa, CpuIsa.Current);
            return new[] { WeightMatrix.DenseLinear(x, w, null), WeightMatrix.DenseLinear(x, wb, null), q.Linear(x, null) };
        }
        var widest = Run(CpuIsa.Detected);
        foreach (var isa in Enum.GetValues<KernelIsa>().Where(i => i < CpuIsa.Detected))
        {
            var other = Run(isa);
            for (int i = 0; i < 3; i++)
                Assert.True(other[i].allclose(widest[i], 1e-4, 1e-4), $"{isa} against {CpuIsa.Detected}, product {i}: max diff {(other[i] - widest[i]).abs().max().item<float>()}");
        }
        Assert.Equal(CpuIsa.Detected, CpuIsa.Current); // the forcing ended with its scope
        if (CpuIsa.Detected < KernelIsa.Avx512) Assert.Throws<ArgumentException>(() => CpuIsa.Force(KernelIsa.Avx512));
    }

    /// <summary>
    /// The CPU quantizer gives libtorch's ops' bits: from float32, bfloat16 and float16 rows, with a
    /// padded last block, an all-zero row, weights at exact half steps (ties round to even), rows
    /// split across the kernel threads, and a row too wide for the stack.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Q8Kernel_QuantizesAsLibtorchsOps_BitForBit(ScalarType dtype)
    {
        using var _ = torch.inference_mode();
        var g = new Generator(19);
        foreach (var (m, n) in new[] { (7, 70), (300, 256), (3, 20_000), (1, 5) })
        {
            var w = Random(g, m, n).TimesNumber(3);
            w[0] = torch.zeros(n);
            if (n >= 64)
            {
                // A block whose values sit at half steps of its scale (127 → scale 1): 0.5, 1.5, 2.5 … round to even.
                var ties = torch.arange(32, ScalarType.Float32).add(0.5).TimesNumber(-1);
                ties[31] = torch.tensor(127f);
                w[m - 1].narrow(0, 32, 32).copy_(ties);
            }
            var stored = w.to_type(dtype).contiguous();
            using var kernel = Q8Matrix.Quantize(stored);
            using var reference = Q8Matrix.QuantizeWithTorch(stored);
            Assert.True(Same(kernel.Q, reference.Q), $"{dtype} [{m}, {n}]: the int8 values differ");
            Assert.True(Same(kernel.Scales, reference.Scales), $"{dtype} [{m}, {n}]: the scales differ");
            Assert.Equal(0, kernel.Q[0].abs().max().item<sbyte>());
            if (n >= 64) Assert.Equal(new sbyte[] { -0, -2, -2, -4, -4 }, kernel.Q[m - 1].narrow(0, 32, 5).data<sbyte>().ToArray());
        }
        // An infinity or NaN anywhere, even in a padded last block, is refused by both.
        foreach (var bad in new[] { float.NaN, float.NegativeInfinity })
        {
            var w = Random(g, 40, 70);
            w[37, 69] = torch.tensor(bad);
            var stored = w.to_type(dtype).contiguous();
            Assert.Contains("infinity or NaN", Assert.Throws<UserError>(() => Q8Matrix.Quantize(stored)).Message);
            Assert.Contains("infinity or NaN", Assert.Throws<UserError>(() => Q8Matrix.QuantizeWithTorch(stored)).Message);
        }
    }

    [Fact]
    public void Q8QuantizationRoundsEachBlockToItsScale()
    {
        using var _ = torch.inference_mode();
        var w = torch.randn(new long[] { 7, 70 }, generator: new Generator(15)).TimesNumber(3);
        w[2] = torch.zeros(70); // an all-zero row: scale 0, values 0
        using var q = Q8Matrix.Quantize(w);
        Assert.Equal(new long[] { 7, 96 }, q.Q.shape); // 70 padded to 3 blocks of 32
        Assert.Equal(new long[] { 7, 3 }, q.Scales.shape);
        Assert.Equal(0, q.Q.narrow(1, 70, 26).abs().max().item<sbyte>()); // the padding stays zero
        Assert.True(q.Q.abs().max().item<sbyte>() <= 127);
        var expected = F.pad(w, new[] { 0L, 26 }).view(7, 3, 32).abs().amax(new long[] { -1 }).TimesNumber(1.0 / 127);
        Assert.True(q.Scales.allclose(expected, 1e-6, 0));
        Assert.Equal(0f, q.Scales[2].abs().max().item<float>());
        // Every weight is within half a step of its block's scale.
        var step = q.Scales.unsqueeze(-1).expand(7, 3, 32).reshape(7, 96).narrow(1, 0, 70);
        var err = (q.Dequantize(ScalarType.Float32) - w).abs();
        Assert.True((err - step.TimesNumber(0.5001f)).max().item<float>() <= 1e-6f);
        // The CPU dequantizer (float32 and bfloat16) agrees with the formula.
        var formula = (q.Q.to_type(ScalarType.Float32).view(7, 3, 32) * q.Scales.unsqueeze(-1)).view(7, 96).narrow(1, 0, 70);
        Assert.True(Same(q.Dequantize(ScalarType.Float32), formula));
        Assert.True(Same(q.Dequantize(ScalarType.BFloat16), formula.to_type(ScalarType.BFloat16)));
        // Rows (an embedding lookup) are the dequantized rows.
        var ids = torch.tensor(new long[] { 6, 0, 2 }).view(1, 3);
        Assert.True(Same(q.Rows(ids, ScalarType.Float32), formula.index_select(0, ids.view(-1)).view(1, 3, 70)));
        Assert.Equal(7 * 96 + 7 * 3 * 4, q.Bytes);
    }

    [Fact]
    public void Q8OverManyRowsTakesABfloat16OrFloatMatmulOfTheDequantizedWeights()
    {
        using var _ = torch.inference_mode();
        var g = new Generator(16);
        var x = Random(g, 1, 40, 300); var b = Random(g, 50);
        using var q = Q8Matrix.Quantize(Random(g, 50, 300));
        var wd = q.Dequantize(ScalarType.Float64);
        var y = q.Linear(x, b);
        Assert.Equal(new long[] { 1, 40, 50 }, y.shape);
        var reference = F.linear(x.to_type(ScalarType.Float64), wd, b.to_type(ScalarType.Float64));
        // bfloat16 operands (where the CPU multiplies them natively) keep 8 bits: 2^-8 of the scale, twice.
        AssertWithin(y, reference, Bound(Scale(x.view(40, 300), wd).view(1, 40, 50), 1e-2, 1e-4), "q8 over 40 rows");
    }

    [Theory]
    [InlineData(false)] // libtorch's OpenMP team, where its libgomp is found
    [InlineData(true)]  // .NET's thread pool
    public void ThePoolCoversEveryRangeOnce_AlignedToTheGrain_AndReportsFailures(bool dotnet)
    {
        bool before = KernelPool.UseDotnetThreads;
        var threads = KernelPool.ThreadsOverride;
        KernelPool.UseDotnetThreads = dotnet;
        // Split over several threads whatever libtorch's count is now (a narrow model sets it to 1).
        KernelPool.ThreadsOverride = 3;
        // libtorch's Linux build ships libgomp: the kernels must have found it.
        if (OperatingSystem.IsLinux()) Assert.Equal(!dotnet, KernelPool.OnLibtorchThreads);
        try { CoverEveryRange(); }
        finally { KernelPool.UseDotnetThreads = before; KernelPool.ThreadsOverride = threads; }
    }

    static void CoverEveryRange()
    {
        foreach (var (count, grain, min) in new[] { (1000, 4, 10), (7, 4, 1), (1, 1, 1), (4096, 32, 1), (5, 1, 100) })
        {
            var hits = new int[count];
            var starts = new System.Collections.Concurrent.ConcurrentBag<int>();
            KernelPool.For(count, grain, min, (s, e) =>
            {
                starts.Add(s);
                for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]);
                KernelPool.For(10, 1, 1, (a, b) => { }); // a call from inside a job runs inline
            });
            Assert.All(hits, h => Assert.Equal(1, h));
            Assert.All(starts, s => Assert.Equal(0, s % grain));
        }
        var e = Assert.Throws<AggregateException>(() => KernelPool.For(1 << 20, 1, 1, (s, _) => { if (s > 0 || KernelPool.Threads == 1) throw new InvalidOperationException("boom"); }));
        Assert.IsType<InvalidOperationException>(e.InnerException);
    }

    [Fact]
    public void OnOneThread_AFailingRangeIsReportedAsASplitOneIs()
    {
        var threads = KernelPool.ThreadsOverride;
        KernelPool.ThreadsOverride = 1;
        try
        {
            int calls = 0;
            var e = Assert.Throws<AggregateException>(() => KernelPool.For(1000, 4, 1, (s, end) => { calls++; Assert.Equal((0, 1000), (s, end)); throw new InvalidOperationException("boom"); }));
            Assert.IsType<InvalidOperationException>(e.InnerException);
            Assert.Equal(1, calls);
        }
        finally { KernelPool.ThreadsOverride = threads; }
    }
}
