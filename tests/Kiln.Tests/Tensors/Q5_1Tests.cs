using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q5_1Tests
{
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);
    private delegate float FloatDot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x);
    private delegate float QuantizedDot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x);

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q5_1.DequantizeScalar);
        yield return ("dispatch", Q5_1.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_1.DequantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_1.DequantizeAvx512);
    }

    private static IEnumerable<(string Name, FloatDot Run)> FloatDots()
    {
        yield return ("scalar", Q5_1.DotScalar);
        yield return ("dispatch", Q5_1.Dot);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_1.DotAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_1.DotAvx512);
    }

    private static IEnumerable<(string Name, QuantizedDot Run)> QuantizedDots()
    {
        yield return ("scalar", Q5_1.DotQ8Scalar);
        yield return ("dispatch", Q5_1.DotQ8);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_1.DotQ8Avx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_1.DotQ8Avx512);
    }

    private static int Q(byte[] w, int offset, int i) => LegacyQuantTestData.FiveBits(w, offset + 4, offset + 8, i);

    [Fact]
    public void HandBuiltBlockDequantizes()
    {
        // d = 0.5, m = -1.25; nibbles j (low) and 15-j (high), fifth bits from a pattern that differs in every byte
        const uint qh = 0x0FA53CC3;
        var block = new byte[24];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), BitConverter.HalfToUInt16Bits((Half)(-1.25f)));
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), qh);
        for (int j = 0; j < 16; j++)
            block[8 + j] = (byte)(j | ((15 - j) << 4));
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[32];
            run(block, x);
            for (int i = 0; i < 32; i++)
            {
                int q = (i < 16 ? i : 31 - i) + (int)((qh >> i) & 1) * 16;
                Assert.True(q * 0.5f - 1.25f == x[i], $"{name}: element {i} is {x[i]}");
            }
        }
    }

    [Fact]
    public void HandBuiltRowQuantizesLikeTheReference()
    {
        // min -2, max 29 → d = 31 / 31 = 1, id = 1, m = -2; q = trunc((x + 2) + 0.5), no clamp
        float[] x = new float[32];
        float[] values = [-2f, 29f, 0.49f, 0.5f, 13.2f, -1.5f, 28.7f];
        values.CopyTo(x, 0);
        x[16] = 14f;
        x[31] = 13.6f;
        int[] expected = Enumerable.Repeat(2, 32).ToArray(); // zeros: trunc(2.5)
        int[] head = [0, 31, 2, 3, 15, 1, 31];                 // 0.5 → trunc(3.0): the tie rounds up
        head.CopyTo(expected, 0);
        expected[16] = 16; // trunc(16.5): nibble 0 with the fifth bit set
        expected[31] = 16; // trunc(16.1)
        var block = new byte[24];
        Q5_1.Quantize(x, block);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(0xC000, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        for (int i = 0; i < 32; i++)
            Assert.True(expected[i] == Q(block, 0, i), $"element {i}: {Q(block, 0, i)}");
    }

    [Fact]
    public void TheFirstZeroSetsTheSignOfTheMinimum()
    {
        float[] x = new float[32];
        x[0] = -0f;
        x[7] = 6.2f;
        var block = new byte[24];
        Q5_1.Quantize(x, block);
        Assert.Equal(0x8000, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        x[0] = 0f;
        x[1] = -0f;
        Q5_1.Quantize(x, block);
        Assert.Equal(0x0000, BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)(6.2f / 31f)), BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(31, Q(block, 0, 7));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void RoundTripErrorIsWithinHalfAStep(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 3210 + blocks, 3f);
        var q = new byte[blocks * 24];
        Q5_1.Quantize(x, q);
        double[] back = LegacyQuantTestData.DecodeQ5_1(q);
        for (int b = 0; b < blocks; b++)
        {
            float[] xb = x.AsSpan(b * 32, 32).ToArray();
            double min = xb.Min(), d = (xb.Max() - min) / 31;
            for (int j = 0; j < 32; j++)
            {
                // half a step, plus fp16 storage of d (up to 31 steps of it) and of m
                double bound = d * (0.5 + 31.0 / 2048) + Math.Abs(min) / 2048 + 1e-6 * Math.Abs(xb[j]);
                Assert.True(Math.Abs(back[b * 32 + j] - xb[j]) <= bound, $"block {b} element {j}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void DequantizePathsMatchLayoutDecode(int blocks)
    {
        byte[] q = LegacyQuantTestData.Q5_1Blocks(blocks, 3310 + blocks);
        double[] expected = LegacyQuantTestData.DecodeQ5_1(q);
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
        byte[] w = LegacyQuantTestData.Q5_1Blocks(blocks, 3410 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 3411 + blocks);
        double[] wd = LegacyQuantTestData.DecodeQ5_1(w), xd = KernelTestData.Widen(x);
        foreach (var (name, run) in FloatDots())
            KernelTestData.AssertDot(wd, xd, run(w, x), name);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void IntegerDotIsExactOnEveryPath(int blocks)
    {
        // d = 1 on both sides and m = 0: the result is the integer Σ q_w q_x itself
        byte[] w = LegacyQuantTestData.Q5_1Blocks(blocks, 3510 + blocks, unitScale: true);
        byte[] x = LegacyQuantTestData.Q8_1Blocks(blocks, 3511 + blocks, unitScale: true);
        w[8] = 0xFF; w[4] |= 0x01; w[6] |= 0x01; x[4] = 0x80; x[20] = 0x80; // 31 * -128 on elements 0 and 16
        long exact = 0;
        for (int b = 0; b < blocks; b++)
            for (int i = 0; i < 32; i++)
                exact += Q(w, b * 24, i) * (sbyte)x[b * 36 + 4 + i];
        foreach (var (name, run) in QuantizedDots())
            Assert.True(exact == (long)run(w, x), $"{name}: {run(w, x)} vs {exact}");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ScaledIntegerDotPathsMatchGgmlFormula(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q5_1Blocks(blocks, 3610 + blocks);
        byte[] x = LegacyQuantTestData.Q8_1Blocks(blocks, 3611 + blocks);
        (double exact, double magnitude) = LegacyQuantTestData.OffsetDotWithQ8_1(w, 24, Q, x);
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
        byte[] w = LegacyQuantTestData.Q5_1Blocks(blocks, 3710 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 3711 + blocks, 4f);
        var xq = new byte[blocks * 36];
        Q8_1.Quantize(x, xq);
        double[] wd = LegacyQuantTestData.DecodeQ5_1(w);
        double bound = LegacyQuantTestData.Q8_1ActivationBound(wd, xq, w, 24, x, out double magnitude);
        float quantized = Q5_1.DotQ8(w, xq), full = Q5_1.Dot(w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{quantized} vs {full}, bound {bound}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q5_1.Dequantize(new byte[24], new float[16]));
        Assert.Throws<ArgumentException>(() => Q5_1.Quantize(new float[32], new byte[22]));
        Assert.Throws<ArgumentException>(() => Q5_1.Dot(new byte[48], new float[32]));
        Assert.Throws<ArgumentException>(() => Q5_1.DotQ8(new byte[48], new byte[68])); // two Q8_0 blocks, not Q8_1
        Assert.Throws<ArgumentException>(() => Q5_1.DotQ8(new byte[23], new byte[36]));
    }
}
