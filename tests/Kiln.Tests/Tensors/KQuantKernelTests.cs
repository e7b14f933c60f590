using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// Q2_K … Q6_K kernels, every path the CPU has, against ggml's dequantize formulas written out in
/// <see cref="KQuantReference"/> and exact dots in double.
/// </summary>
public class KQuantKernelTests
{
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);
    private delegate float FloatDot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x);
    private delegate float QuantizedDot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq);

    private sealed record Paths(
        (string Name, Dequantizer Run)[] Dequantizers,
        (string Name, FloatDot Run)[] Dots,
        (string Name, QuantizedDot Run)[] QuantizedDots);

    private static Paths For(GgmlType type)
    {
        bool avx2 = KernelTestData.Avx2;
        (string, T)[] Of<T>(T scalar, T dispatch, T simd) =>
            avx2 ? [("scalar", scalar), ("dispatch", dispatch), ("avx2", simd)] : [("scalar", scalar), ("dispatch", dispatch)];
        return type switch
        {
            GgmlType.Q2_K => new(Of<Dequantizer>(Q2_K.DequantizeScalar, Q2_K.Dequantize, Q2_K.DequantizeAvx2),
                Of<FloatDot>(Q2_K.DotScalar, Q2_K.Dot, Q2_K.DotAvx2), Of<QuantizedDot>(Q2_K.DotQ8KScalar, Q2_K.DotQ8K, Q2_K.DotQ8KAvx2)),
            GgmlType.Q3_K => new(Of<Dequantizer>(Q3_K.DequantizeScalar, Q3_K.Dequantize, Q3_K.DequantizeAvx2),
                Of<FloatDot>(Q3_K.DotScalar, Q3_K.Dot, Q3_K.DotAvx2), Of<QuantizedDot>(Q3_K.DotQ8KScalar, Q3_K.DotQ8K, Q3_K.DotQ8KAvx2)),
            GgmlType.Q4_K => new(Of<Dequantizer>(Q4_K.DequantizeScalar, Q4_K.Dequantize, Q4_K.DequantizeAvx2),
                Of<FloatDot>(Q4_K.DotScalar, Q4_K.Dot, Q4_K.DotAvx2), Of<QuantizedDot>(Q4_K.DotQ8KScalar, Q4_K.DotQ8K, Q4_K.DotQ8KAvx2)),
            GgmlType.Q5_K => new(Of<Dequantizer>(Q5_K.DequantizeScalar, Q5_K.Dequantize, Q5_K.DequantizeAvx2),
                Of<FloatDot>(Q5_K.DotScalar, Q5_K.Dot, Q5_K.DotAvx2), Of<QuantizedDot>(Q5_K.DotQ8KScalar, Q5_K.DotQ8K, Q5_K.DotQ8KAvx2)),
            GgmlType.Q6_K => new(Of<Dequantizer>(Q6_K.DequantizeScalar, Q6_K.Dequantize, Q6_K.DequantizeAvx2),
                Of<FloatDot>(Q6_K.DotScalar, Q6_K.Dot, Q6_K.DotAvx2), Of<QuantizedDot>(Q6_K.DotQ8KScalar, Q6_K.DotQ8K, Q6_K.DotQ8KAvx2)),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
    }

    public static TheoryData<GgmlType, int> Cases() => KQuantReference.TypeAndBlockCountData();

    public static TheoryData<GgmlType> TypeCases() => KQuantReference.TypeData();

    [Theory]
    [MemberData(nameof(Cases))]
    public void DequantizeIsGgmlFormulaExactly(GgmlType type, int blocks)
    {
        byte[] w = KQuantReference.RandomBlocks(type, blocks, 10 * blocks + (int)type);
        float[] expected = KQuantReference.Values(type, w);
        foreach (var (name, run) in For(type).Dequantizers)
        {
            var actual = new float[blocks * 256];
            run(w, actual);
            for (int i = 0; i < actual.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{type} {name}: element {i} is {actual[i]}, ggml gives {expected[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void EverySingleBitFlipDequantizesLikeGgml(GgmlType type)
    {
        // one block and each of its variants with a single quant or scale bit flipped: a path that read a field
        // from the wrong place would disagree with ggml's formula on some of them
        byte[] w = KQuantReference.RandomBlocks(type, 1, 77 + (int)type, unitScale: true);
        for (int bit = 0; bit < w.Length * 8; bit++)
        {
            if (IsFp16Scale(type, bit / 8))
                continue;
            byte[] flipped = (byte[])w.Clone();
            flipped[bit / 8] ^= (byte)(1 << (bit % 8));
            float[] expected = KQuantReference.Values(type, flipped);
            foreach (var (name, run) in For(type).Dequantizers)
            {
                var actual = new float[256];
                run(flipped, actual);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{type} {name}: block with bit {bit} flipped");
            }
        }
    }

    private static bool IsFp16Scale(GgmlType type, int at) => type switch
    {
        GgmlType.Q2_K => at >= 80,
        GgmlType.Q3_K => at >= 108,
        GgmlType.Q4_K or GgmlType.Q5_K => at < 4,
        _ => at >= 208,
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FloatDotPathsMatchExactDot(GgmlType type, int blocks)
    {
        byte[] w = KQuantReference.RandomBlocks(type, blocks, 20 * blocks + (int)type);
        float[] x = KernelTestData.Floats(blocks * 256, 21 * blocks + (int)type);
        var elements = KQuantReference.Decode(type, w);
        foreach (var (name, run) in For(type).Dots)
            KQuantReference.AssertDot(elements, KernelTestData.Widen(x), run(w, x), $"{type} {name}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void IntegerDotIsExactOnEveryPath(GgmlType type, int blocks)
    {
        // unit fp16 scales and d_x = 1: every partial sum is an integer well below 2^24, so any order is exact
        byte[] w = KQuantReference.RandomBlocks(type, blocks, 30 * blocks + (int)type, unitScale: true);
        byte[] x = KQuantReference.RandomQ8K(blocks, 31 * blocks + (int)type, unitScale: true);
        var elements = KQuantReference.Decode(type, w);
        int[] y = KQuantReference.DecodeQ8K(x).Q;
        long exact = 0;
        for (int i = 0; i < elements.Length; i++)
        {
            // with d = dmin = 1 the scale and offset are the integer sc and m
            exact += ((long)elements[i].Scale * elements[i].Q - (long)elements[i].Offset) * y[i];
        }
        foreach (var (name, run) in For(type).QuantizedDots)
            Assert.True(exact == (long)run(w, x), $"{type} {name}: {run(w, x)} vs exact {exact}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScaledIntegerDotPathsMatchExactDot(GgmlType type, int blocks)
    {
        byte[] w = KQuantReference.RandomBlocks(type, blocks, 40 * blocks + (int)type);
        byte[] x = KQuantReference.RandomQ8K(blocks, 41 * blocks + (int)type);
        var elements = KQuantReference.Decode(type, w);
        double[] y = KQuantReference.DecodeQ8K(x).Values;
        float scalar = 0;
        foreach (var (name, run) in For(type).QuantizedDots)
        {
            float result = run(w, x);
            KQuantReference.AssertDot(elements, y, result, $"{type} {name}");
            // the scalar twin emulates ggml's lanes and float order, so the paths agree to the bit
            if (name == "scalar")
                scalar = result;
            else
                Assert.True(BitConverter.SingleToInt32Bits(scalar) == BitConverter.SingleToInt32Bits(result), $"{type} {name}: {result} vs scalar {scalar}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void QuantizedActivationDotStaysWithinActivationRounding(GgmlType type, int blocks)
    {
        byte[] w = KQuantReference.RandomBlocks(type, blocks, 50 * blocks + (int)type);
        float[] x = KernelTestData.Floats(blocks * 256, 51 * blocks + (int)type, 4f);
        var xq = new byte[blocks * Q8_K.BlockBytes];
        Q8_K.Quantize(x, xq);
        var elements = KQuantReference.Decode(type, w);
        // each activation moves by at most half a step d_x of its block (d_x is a float, so no storage error)
        double bound = 0, magnitude = 0;
        for (int i = 0; i < elements.Length; i++)
        {
            double dx = Math.Abs(BitConverter.ToSingle(xq, i / 256 * Q8_K.BlockBytes));
            double a = (double)elements[i].Scale * elements[i].Q, m = elements[i].Offset;
            bound += Math.Abs(a - m) * dx * 0.5;
            magnitude += (Math.Abs(a) + Math.Abs(m)) * Math.Abs(x[i]);
        }
        float quantized = RowKernels.DotQuantized(type, w, xq), full = RowKernels.Dot(type, w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{type}: {quantized} vs {full}, bound {bound}");
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void RowKernelsDispatchToTheType(GgmlType type)
    {
        Assert.True(RowKernels.Supports(type));
        Assert.True(GgmlTypeTraits.IsSupportedForCompute(type));
        Assert.Equal(GgmlType.Q8_K, RowKernels.ActivationType(type));
        byte[] w = KQuantReference.RandomBlocks(type, 3, 60 + (int)type);
        float[] x = KernelTestData.Floats(3 * 256, 61 + (int)type);
        var values = new float[3 * 256];
        RowKernels.Dequantize(type, w, values);
        Assert.Equal(KQuantReference.Values(type, w), values);
        var xq = new byte[RowKernels.ActivationBytes(type, x.Length)];
        RowKernels.QuantizeActivations(type, x, xq);
        var expected = new byte[3 * Q8_K.BlockBytes];
        Q8_K.QuantizeScalar(x, expected);
        Assert.Equal(expected, xq);
        var paths = For(type);
        Assert.Equal(paths.QuantizedDots[0].Run(w, xq), RowKernels.DotQuantized(type, w, xq));
        KQuantReference.AssertDot(KQuantReference.Decode(type, w), KernelTestData.Widen(x), RowKernels.Dot(type, w, x), type.ToString());
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void WrongLengthsThrow(GgmlType type)
    {
        int bytes = KQuantReference.BlockBytes(type);
        Assert.Throws<ArgumentException>(() => RowKernels.Dequantize(type, new byte[bytes], new float[128]));
        Assert.Throws<ArgumentException>(() => RowKernels.Dequantize(type, new byte[bytes + 1], new float[256]));
        Assert.Throws<ArgumentException>(() => RowKernels.Dot(type, new byte[2 * bytes], new float[256]));
        Assert.Throws<ArgumentException>(() => RowKernels.DotQuantized(type, new byte[2 * bytes], new byte[Q8_K.BlockBytes]));
        Assert.Throws<ArgumentException>(() => RowKernels.DotQuantized(type, new byte[bytes - 1], new byte[Q8_K.BlockBytes]));
        Assert.Throws<ArgumentException>(() => RowKernels.ActivationBytes(type, 4096 + 32));
        foreach (var (name, run) in For(type).QuantizedDots)
        {
            if (name is "scalar" or "dispatch") // the SIMD paths trust the lengths their callers checked
                Assert.Throws<ArgumentException>(() => run(new byte[bytes], new byte[Q8_K.BlockBytes + 1]));
        }
    }
}
