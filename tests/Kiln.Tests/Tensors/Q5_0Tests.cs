using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q5_0Tests
{
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);
    private delegate float FloatDot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x);
    private delegate float QuantizedDot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x);

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q5_0.DequantizeScalar);
        yield return ("dispatch", Q5_0.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_0.DequantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_0.DequantizeAvx512);
    }

    private static IEnumerable<(string Name, FloatDot Run)> FloatDots()
    {
        yield return ("scalar", Q5_0.DotScalar);
        yield return ("dispatch", Q5_0.Dot);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_0.DotAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_0.DotAvx512);
    }

    private static IEnumerable<(string Name, QuantizedDot Run)> QuantizedDots()
    {
        yield return ("scalar", Q5_0.DotQ8Scalar);
        yield return ("dispatch", Q5_0.DotQ8);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q5_0.DotQ8Avx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q5_0.DotQ8Avx512);
    }

    private static int Q(ReadOnlySpan<byte> block, int i) => LegacyQuantTestData.FiveBits(block, 2, 6, i);

    [Fact]
    public void HandBuiltBlockDequantizes()
    {
        // d = 0.5; byte j holds nibble j (low) and 15-j (high); the fifth bits follow a pattern that differs in
        // every byte of qh, so a misplaced bit shows
        const uint qh = 0xF0C3A55A;
        var block = new byte[22];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2), qh);
        for (int j = 0; j < 16; j++)
            block[6 + j] = (byte)(j | ((15 - j) << 4));
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[32];
            run(block, x);
            for (int i = 0; i < 32; i++)
            {
                int nibble = i < 16 ? i : 31 - i;
                int q = nibble + (int)((qh >> i) & 1) * 16;
                Assert.True((q - 16) * 0.5f == x[i], $"{name}: element {i} is {x[i]}");
            }
        }
    }

    [Fact]
    public void HandBuiltRowQuantizesLikeTheReference()
    {
        // the largest magnitude is -16 (element 3) → d = -16 / -16 = 1, id = 1, q = min(31, trunc(x + 16.5))
        float[] x = new float[32];
        float[] values = [15f, 15.6f, 0.49f, -16f, 0.5f, -15.4f, 16f, -0.5f];
        values.CopyTo(x, 0);
        x[16] = 3.2f;
        x[17] = -3.5f;
        int[] expected = Enumerable.Repeat(16, 32).ToArray();
        int[] head = [31, 31, 16, 0, 17, 1, 31, 16]; // 15.6 and 16 clamp to 31; ties (0.5, -0.5 → 17, 16) round up
        head.CopyTo(expected, 0);
        expected[16] = 19; // trunc(19.7)
        expected[17] = 13; // trunc(13.0)
        var block = new byte[22];
        Q5_0.Quantize(x, block);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        for (int i = 0; i < 32; i++)
            Assert.True(expected[i] == Q(block, i), $"element {i}: {Q(block, i)}");
    }

    [Fact]
    public void PositiveMaximumGivesNegativeScaleAndFirstTieWins()
    {
        float[] x = new float[32];
        x[4] = 2f;  // first of two equal magnitudes: the max is +2, so d = -0.125
        x[25] = -2f;
        var block = new byte[22];
        Q5_0.Quantize(x, block);
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)(-0.125f)), BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(0, Q(block, 4));   // +2 / -0.125 = -16 → 0
        Assert.Equal(31, Q(block, 25)); // -2 / -0.125 = +16 → clamps to 31
    }

    [Fact]
    public void ZeroBlockStoresNegativeZeroScaleLikeGgml()
    {
        // d = 0 / -16 = -0.0f (fp16 0x8000); every q is trunc(0 + 16.5) = 16: nibble 0 with the fifth bit set
        var block = new byte[22];
        Q5_0.Quantize(new float[32], block);
        Assert.Equal(0x8000, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(0xFFFFFFFFu, BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(2)));
        Assert.True(block.AsSpan(6).ToArray().All(b => b == 0));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void RoundTripErrorIsWithinTheExpectedStep(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 2210 + blocks, 3f);
        var q = new byte[blocks * 22];
        Q5_0.Quantize(x, q);
        double[] back = LegacyQuantTestData.DecodeQ5_0(q);
        for (int b = 0; b < blocks; b++)
        {
            double max = 0;
            for (int j = 0; j < 32; j++)
                if (Math.Abs(x[b * 32 + j]) > Math.Abs(max))
                    max = x[b * 32 + j];
            double d = Math.Abs(max / 16);
            for (int j = 0; j < 32; j++)
            {
                // levels -16..15 steps of d with the extreme at -16: the other side beyond 15.5 steps clamps to 15
                // (up to one step off), the rest round to the nearest step; fp16 storage of d adds 16 * d * 2^-11
                double steps = Math.Abs(x[b * 32 + j]) / d;
                bool clamps = Math.Sign(x[b * 32 + j]) != Math.Sign(max) && steps > 15.5;
                double bound = d * ((clamps ? 1.0 : 0.5) + 16.0 / 2048) + 1e-12;
                Assert.True(Math.Abs(back[b * 32 + j] - x[b * 32 + j]) <= bound, $"block {b} element {j}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void DequantizePathsMatchLayoutDecode(int blocks)
    {
        byte[] q = LegacyQuantTestData.Q5_0Blocks(blocks, 2310 + blocks);
        double[] expected = LegacyQuantTestData.DecodeQ5_0(q);
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
        byte[] w = LegacyQuantTestData.Q5_0Blocks(blocks, 2410 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 2411 + blocks);
        double[] wd = LegacyQuantTestData.DecodeQ5_0(w), xd = KernelTestData.Widen(x);
        foreach (var (name, run) in FloatDots())
            KernelTestData.AssertDot(wd, xd, run(w, x), name);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void IntegerDotIsExactOnEveryPath(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q5_0Blocks(blocks, 2510 + blocks, unitScale: true);
        byte[] x = KernelTestData.Q8Blocks(blocks, 2511 + blocks, unitScale: true);
        // element 0 at -16 (nibble 0, bit clear) and element 16 at +15 (nibble 15, bit set), both times -128
        w[6] = 0xF0;
        w[2] &= 0xFE;
        w[4] |= 0x01;
        x[2] = 0x80; x[18] = 0x80;
        long exact = 0;
        for (int b = 0; b < blocks; b++)
            for (int i = 0; i < 32; i++)
                exact += (Q(w.AsSpan(b * 22), i) - 16) * (sbyte)x[b * 34 + 2 + i];
        foreach (var (name, run) in QuantizedDots())
            Assert.True(exact == (long)run(w, x), $"{name}: {run(w, x)} vs {exact}");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ScaledIntegerDotPathsMatchExactDot(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q5_0Blocks(blocks, 2610 + blocks);
        byte[] x = KernelTestData.Q8Blocks(blocks, 2611 + blocks);
        double[] wd = LegacyQuantTestData.DecodeQ5_0(w), xd = KernelTestData.DecodeQ8(x);
        foreach (var (name, run) in QuantizedDots())
            KernelTestData.AssertDot(wd, xd, run(w, x), name);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void QuantizedActivationDotStaysWithinActivationRounding(int blocks)
    {
        byte[] w = LegacyQuantTestData.Q5_0Blocks(blocks, 2710 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 2711 + blocks, 4f);
        var xq = new byte[blocks * 34];
        Q8_0.Quantize(x, xq);
        double[] wd = LegacyQuantTestData.DecodeQ5_0(w);
        double bound = 0, magnitude = 0;
        for (int b = 0; b < blocks; b++)
        {
            double dx = KernelTestData.HalfAt(xq.AsSpan(b * 34)) * (1 + 1.0 / 1024);
            for (int j = 0; j < 32; j++)
            {
                bound += Math.Abs(wd[b * 32 + j]) * dx * (0.5 + 127.0 / 2048);
                magnitude += Math.Abs(wd[b * 32 + j] * x[b * 32 + j]);
            }
        }
        float quantized = Q5_0.DotQ8(w, xq), full = Q5_0.Dot(w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{quantized} vs {full}, bound {bound}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q5_0.Dequantize(new byte[22], new float[16]));
        Assert.Throws<ArgumentException>(() => Q5_0.Quantize(new float[32], new byte[24]));
        Assert.Throws<ArgumentException>(() => Q5_0.Dot(new byte[44], new float[32]));
        Assert.Throws<ArgumentException>(() => Q5_0.DotQ8(new byte[44], new byte[72])); // two Q8_1 blocks, not Q8_0
        Assert.Throws<ArgumentException>(() => Q5_0.DotQ8(new byte[21], new byte[34]));
    }
}
