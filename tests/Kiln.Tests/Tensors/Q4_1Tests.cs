using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q4_1Tests
{
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);
    private delegate float FloatDot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x);
    private delegate float QuantizedDot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x);

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q4_1.DequantizeScalar);
        yield return ("dispatch", Q4_1.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q4_1.DequantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q4_1.DequantizeAvx512);
    }

    private static IEnumerable<(string Name, FloatDot Run)> FloatDots()
    {
        yield return ("scalar", Q4_1.DotScalar);
        yield return ("dispatch", Q4_1.Dot);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q4_1.DotAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q4_1.DotAvx512);
    }

    private static IEnumerable<(string Name, QuantizedDot Run)> QuantizedDots()
    {
        yield return ("scalar", Q4_1.DotQ8Scalar);
        yield return ("dispatch", Q4_1.DotQ8);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q4_1.DotQ8Avx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q4_1.DotQ8Avx512);
    }

    private static int Q(byte[] w, int offset, int i) => LegacyQuantTestData.Nibble(w, offset + 4, i);

    [Fact]
    public void HandBuiltBlockDequantizes()
    {
        // d = 0.5, m = -1.25; byte j holds element j in its low nibble (value j) and element j+16 in its high (15-j)
        var block = new byte[20];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), BitConverter.HalfToUInt16Bits((Half)(-1.25f)));
        for (int j = 0; j < 16; j++)
            block[4 + j] = (byte)(j | ((15 - j) << 4));
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[32];
            run(block, x);
            for (int j = 0; j < 16; j++)
            {
                Assert.True(j * 0.5f - 1.25f == x[j], $"{name}: element {j} is {x[j]}");
                Assert.True((15 - j) * 0.5f - 1.25f == x[j + 16], $"{name}: element {j + 16} is {x[j + 16]}");
            }
        }
    }

    [Fact]
    public void HandBuiltRowQuantizesLikeTheReference()
    {
        // min -1, max 14 → d = 15 / 15 = 1, id = 1, m = -1; q = min(15, trunc((x + 1) + 0.5))
        float[] x = new float[32];
        float[] values = [-1f, 14f, 0.49f, 0.5f, 3.2f, -0.5f, 13.7f];
        values.CopyTo(x, 0);
        x[20] = 6.4f;
        int[] expected = Enumerable.Repeat(1, 32).ToArray(); // zeros: trunc(1.5)
        int[] head = [0, 15, 1, 2, 4, 1, 15];                  // 0.5 → trunc(2.0): the tie rounds up; 13.7 → trunc(15.2)
        head.CopyTo(expected, 0);
        expected[20] = 7;
        var block = new byte[20];
        Q4_1.Quantize(x, block);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(0xBC00, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        for (int i = 0; i < 32; i++)
            Assert.True(expected[i] == LegacyQuantTestData.Nibble(block, 4, i), $"element {i}");
    }

    [Fact]
    public void TheFirstZeroSetsTheSignOfTheMinimum()
    {
        // ggml's `if (v < min)` never replaces -0 by +0 or the reverse, so the first zero's sign is stored in m
        float[] x = new float[32];
        x[0] = -0f;
        x[5] = 3f;
        var block = new byte[20];
        Q4_1.Quantize(x, block);
        Assert.Equal(0x8000, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        x[0] = 0f;
        x[1] = -0f;
        Q4_1.Quantize(x, block);
        Assert.Equal(0x0000, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)(3f / 15f)), BinaryPrimitives.ReadUInt16LittleEndian(block));
    }

    [Fact]
    public void ConstantBlockStoresZeroScale()
    {
        // max == min: d = 0, so id = 0 and every q is trunc(0.5) = 0; the value lives in m alone
        float[] x = Enumerable.Repeat(2.5f, 32).ToArray();
        var block = new byte[20];
        Q4_1.Quantize(x, block);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)2.5f), BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        Assert.True(block.AsSpan(4).ToArray().All(b => b == 0));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void RoundTripErrorIsWithinHalfAStep(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 1210 + blocks, 3f);
        var q = new byte[blocks * 20];
        Q4_1.Quantize(x, q);
        double[] back = LegacyQuantTestData.DecodeQ4_1(q);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> xb = x.AsSpan(b * 32, 32);
            double min = xb.ToArray().Min(), d = (xb.ToArray().Max() - min) / 15;
            for (int j = 0; j < 32; j++)
            {
                // half a step, plus fp16 storage of d (up to 15 steps of it) and of m
                double bound = d * (0.5 + 15.0 / 2048) + Math.Abs(min) / 2048 + 1e-6 * Math.Abs(xb[j]);
                Assert.True(Math.Abs(back[b * 32 + j] - xb[j]) <= bound, $"block {b} element {j}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void DequantizePathsMatchLayoutDecode(int blocks)
    {
        byte[] q = LegacyQuantTestData.Q4_1Blocks(blocks, 1310 + blocks);
        double[] expected = LegacyQuantTestData.DecodeQ4_1(q);
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[blocks * 32];
            run(q, x);
            for (int i = 0; i < x.Length; i++)
                Assert.True((float)expected[i] == x[i], $"{name}: element {i}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void FloatDotPathsMatchExactDot(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q4_1Blocks(blocks, 1410 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 1411 + blocks);
        double[] wd = LegacyQuantTestData.DecodeQ4_1(w), xd = KernelTestData.Widen(x);
        foreach (var (name, run) in FloatDots())
            KernelTestData.AssertDot(wd, xd, run(w, x), name);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void IntegerDotIsExactOnEveryPath(int blocks)
    {
        // d = 1 on both sides and m = 0: the result is the integer Σ q_w q_x itself
        byte[] w = LegacyQuantTestData.Q4_1Blocks(blocks, 1510 + blocks, unitScale: true);
        byte[] x = LegacyQuantTestData.Q8_1Blocks(blocks, 1511 + blocks, unitScale: true);
        w[4] = 0xFF; x[4] = 0x80; x[20] = 0x80; // 15 * -128 on both nibble halves: the extremes
        long exact = 0;
        for (int b = 0; b < blocks; b++)
            for (int i = 0; i < 32; i++)
                exact += Q(w, b * 20, i) * (sbyte)x[b * 36 + 4 + i];
        foreach (var (name, run) in QuantizedDots())
            Assert.True(exact == (long)run(w, x), $"{name}: {run(w, x)} vs {exact}");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ScaledIntegerDotPathsMatchGgmlFormula(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q4_1Blocks(blocks, 1610 + blocks);
        byte[] x = LegacyQuantTestData.Q8_1Blocks(blocks, 1611 + blocks);
        (double exact, double magnitude) = LegacyQuantTestData.OffsetDotWithQ8_1(w, 20, Q, x);
        foreach (var (name, run) in QuantizedDots())
        {
            float actual = run(w, x);
            Assert.True(Math.Abs(actual - exact) <= 1e-5 * magnitude, $"{name}: {actual} vs {exact}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void QuantizedActivationDotStaysWithinActivationRounding(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q4_1Blocks(blocks, 1710 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 1711 + blocks, 4f);
        var xq = new byte[blocks * 36];
        Q8_1.Quantize(x, xq);
        double[] wd = LegacyQuantTestData.DecodeQ4_1(w);
        double bound = LegacyQuantTestData.Q8_1ActivationBound(wd, xq, w, 20, x, out double magnitude);
        float quantized = Q4_1.DotQ8(w, xq), full = Q4_1.Dot(w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{quantized} vs {full}, bound {bound}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q4_1.Dequantize(new byte[20], new float[16]));
        Assert.Throws<ArgumentException>(() => Q4_1.Quantize(new float[32], new byte[18]));
        Assert.Throws<ArgumentException>(() => Q4_1.Dot(new byte[40], new float[32]));
        Assert.Throws<ArgumentException>(() => Q4_1.DotQ8(new byte[40], new byte[68])); // two Q8_0 blocks, not Q8_1
        Assert.Throws<ArgumentException>(() => Q4_1.DotQ8(new byte[19], new byte[36]));
    }
}
