using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q4_0Tests
{
    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);

    private static IEnumerable<(string Name, Quantizer Run)> Quantizers()
    {
        yield return ("scalar", Q4_0.QuantizeScalar);
        yield return ("dispatch", Q4_0.Quantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q4_0.QuantizeAvx2);
    }

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q4_0.DequantizeScalar);
        yield return ("dispatch", Q4_0.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q4_0.DequantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q4_0.DequantizeAvx512);
    }

    [Fact]
    public void HandBuiltBlockDequantizes()
    {
        // d = 0.5; byte j holds element j in its low nibble (value j) and element j+16 in its high nibble (15-j)
        var block = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        for (int j = 0; j < 16; j++)
            block[2 + j] = (byte)(j | ((15 - j) << 4));
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[32];
            run(block, x);
            for (int j = 0; j < 16; j++)
            {
                Assert.True((j - 8) * 0.5f == x[j], $"{name}: element {j} is {x[j]}");
                Assert.True((7 - j) * 0.5f == x[j + 16], $"{name}: element {j + 16} is {x[j + 16]}");
            }
        }
    }

    [Fact]
    public void HandBuiltRowQuantizesLikeTheReference()
    {
        // the largest magnitude is -8 (element 3) → d = -8 / -8 = 1, id = 1, q = min(15, trunc(x + 8.5))
        float[] x = new float[32];
        float[] values = [7f, 7.6f, 0.49f, -8f, 0.5f, -7.4f, 8f, -0.5f];
        values.CopyTo(x, 0);
        x[16] = 3.2f;
        x[17] = -3.5f;
        int[] expected = new int[32];
        for (int j = 0; j < 32; j++)
            expected[j] = 8;
        int[] head = [15, 15, 8, 0, 9, 1, 15, 8]; // 7.6 and 8 clamp to 15; ties (0.5, -0.5 → 9, 8) round up
        head.CopyTo(expected, 0);
        expected[16] = 11; // trunc(11.7)
        expected[17] = 5;  // trunc(5.0)
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[18];
            run(x, block);
            Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
            for (int j = 0; j < 16; j++)
            {
                Assert.True(expected[j] == (block[2 + j] & 15), $"{name}: element {j}");
                Assert.True(expected[j + 16] == block[2 + j] >> 4, $"{name}: element {j + 16}");
            }
        }
    }

    [Fact]
    public void PositiveMaximumGivesNegativeScaleAndFirstTieWins()
    {
        float[] x = new float[32];
        x[4] = 2f;  // first of two equal magnitudes: the max is +2, so d = -0.25
        x[9] = -2f;
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[18];
            run(x, block);
            Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(block) == BitConverter.HalfToUInt16Bits((Half)(-0.25f)), name);
            Assert.Equal(0, block[2 + 4] & 15);  // +2 / -0.25 = -8 → 0
            Assert.Equal(15, block[2 + 9] & 15); // -2 / -0.25 = +8 → clamps to 15
        }
    }

    [Fact]
    public void ZeroBlockStoresNegativeZeroScaleLikeGgml()
    {
        // ggml computes d = 0 / -8 = -0.0f, which fp16 keeps as 0x8000; every q is trunc(0 + 8.5) = 8
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[18];
            run(new float[32], block);
            Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(block) == 0x8000, name);
            Assert.True(block.AsSpan(2).ToArray().All(b => b == 0x88), name);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void SimdQuantizeGivesTheScalarBytes(int blocks)
    {
        foreach (float scale in new[] { 1f, 1e-4f, 500f })
        {
            float[] x = KernelTestData.Floats(blocks * 32, 110 + blocks, scale);
            var expected = new byte[blocks * 18];
            Q4_0.QuantizeScalar(x, expected);
            foreach (var (name, run) in Quantizers())
            {
                var actual = new byte[expected.Length];
                run(x, actual);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{name} differs from scalar (scale {scale})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void RoundTripErrorIsWithinTheExpectedStep(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 210 + blocks, 3f);
        var q = new byte[blocks * 18];
        Q4_0.Quantize(x, q);
        double[] back = KernelTestData.DecodeQ4(q);
        for (int b = 0; b < blocks; b++)
        {
            double max = 0;
            for (int j = 0; j < 32; j++)
                if (Math.Abs(x[b * 32 + j]) > Math.Abs(max))
                    max = x[b * 32 + j];
            double d = Math.Abs(max / 8);
            for (int j = 0; j < 32; j++)
            {
                // the levels are -8..7 steps of d with the extreme at -8: values on the other side beyond 7.5
                // steps clamp to 7 (error up to one step), the rest round to the nearest step (half a step);
                // fp16 storage of d adds up to 8 * d * 2^-11
                double steps = Math.Abs(x[b * 32 + j]) / d;
                bool clamps = Math.Sign(x[b * 32 + j]) != Math.Sign(max) && steps > 7.5;
                double bound = d * ((clamps ? 1.0 : 0.5) + 8.0 / 2048) + 1e-12;
                Assert.True(Math.Abs(back[b * 32 + j] - x[b * 32 + j]) <= bound, $"block {b} element {j}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void DequantizePathsMatchLayoutDecode(int blocks)
    {
        byte[] q = KernelTestData.Q4Blocks(blocks, 310 + blocks);
        double[] expected = KernelTestData.DecodeQ4(q);
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
        byte[] w = KernelTestData.Q4Blocks(blocks, 410 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 411 + blocks);
        double[] wd = KernelTestData.DecodeQ4(w), xd = KernelTestData.Widen(x);
        KernelTestData.AssertDot(wd, xd, Q4_0.DotScalar(w, x), "scalar");
        KernelTestData.AssertDot(wd, xd, Q4_0.Dot(w, x), "dispatch");
        if (KernelTestData.Avx2)
            KernelTestData.AssertDot(wd, xd, Q4_0.DotAvx2(w, x), "avx2");
        if (KernelTestData.Avx512)
            KernelTestData.AssertDot(wd, xd, Q4_0.DotAvx512(w, x), "avx512");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void IntegerDotIsExactOnEveryPath(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(blocks, 510 + blocks, unitScale: true);
        byte[] x = KernelTestData.Q8Blocks(blocks, 511 + blocks, unitScale: true);
        w[2] = 0x00; x[2] = 0x80; x[18] = 0x80; // -8 * -128 on both nibble halves: the extremes
        long exact = 0;
        for (int b = 0; b < blocks; b++)
            for (int j = 0; j < 16; j++)
            {
                byte q = w[b * 18 + 2 + j];
                exact += ((q & 15) - 8) * (sbyte)x[b * 34 + 2 + j];
                exact += ((q >> 4) - 8) * (sbyte)x[b * 34 + 18 + j];
            }
        Assert.Equal(exact, (long)Q4_0.DotQ8Scalar(w, x));
        Assert.Equal(exact, (long)Q4_0.DotQ8(w, x));
        if (KernelTestData.Avx2)
            Assert.Equal(exact, (long)Q4_0.DotQ8Avx2(w, x));
        if (KernelTestData.Avx512)
            Assert.Equal(exact, (long)Q4_0.DotQ8Avx512(w, x));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ScaledIntegerDotPathsMatchExactDot(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(blocks, 610 + blocks);
        byte[] x = KernelTestData.Q8Blocks(blocks, 611 + blocks);
        double[] wd = KernelTestData.DecodeQ4(w), xd = KernelTestData.DecodeQ8(x);
        KernelTestData.AssertDot(wd, xd, Q4_0.DotQ8Scalar(w, x), "scalar");
        KernelTestData.AssertDot(wd, xd, Q4_0.DotQ8(w, x), "dispatch");
        if (KernelTestData.Avx2)
            KernelTestData.AssertDot(wd, xd, Q4_0.DotQ8Avx2(w, x), "avx2");
        if (KernelTestData.Avx512)
            KernelTestData.AssertDot(wd, xd, Q4_0.DotQ8Avx512(w, x), "avx512");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void QuantizedActivationDotStaysWithinActivationRounding(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(blocks, 710 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 711 + blocks, 4f);
        var xq = new byte[blocks * 34];
        Q8_0.Quantize(x, xq);
        double[] wd = KernelTestData.DecodeQ4(w);
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
        float quantized = Q4_0.DotQ8(w, xq), full = Q4_0.Dot(w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{quantized} vs {full}, bound {bound}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q4_0.Dequantize(new byte[18], new float[16]));
        Assert.Throws<ArgumentException>(() => Q4_0.Quantize(new float[32], new byte[34]));
        Assert.Throws<ArgumentException>(() => Q4_0.Dot(new byte[36], new float[32]));
        Assert.Throws<ArgumentException>(() => Q4_0.DotQ8(new byte[36], new byte[36])); // Q8_0 side needs 68
        Assert.Throws<ArgumentException>(() => Q4_0.DotQ8(new byte[17], new byte[34]));
    }

    /// <summary>
    /// The eight-row kernel gives each row exactly the bits of the scalar one-row kernel, for Q8_0 bytes of any
    /// value (raw random bytes: -128 included, and scales of every sign), which also checks that its 16-bit
    /// partial sums cannot overflow.
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void EightRowDotGivesTheOneRowBits(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(8 * blocks, 97 + blocks);
        byte[] x = KernelTestData.Q4Blocks(blocks * Q8_0.BlockBytes / Q4_0.BlockBytes + 1, 98 + blocks)
            .AsSpan(0, blocks * Q8_0.BlockBytes).ToArray();
        for (int b = 0; b < blocks; b++)
            x[b * Q8_0.BlockBytes + 1] = (byte)(b % 2 == 0 ? 0x2C : 0xAC); // a sane fp16 activation scale, either sign
        if (blocks > 0)
            x.AsSpan(2, 32).Fill(0x80); // every activation value -128 in the first block: the largest partial sums
        var offsets = new int[blocks];
        Q4_0.ActivationOffsets(x, offsets);
        for (int b = 0; b < blocks; b++)
        {
            int sum = 0;
            for (int j = 0; j < 32; j++)
                sum += (sbyte)x[b * Q8_0.BlockBytes + 2 + j];
            Assert.Equal(8 * sum, offsets[b]);
        }
        var eight = new float[8];
        int rowBytes = blocks * Q4_0.BlockBytes;
        Q4_0.DotQ8Rows8(w, rowBytes, x, offsets, eight);
        for (int r = 0; r < 8; r++)
            Assert.Equal(Q4_0.DotQ8Scalar(w.AsSpan(r * rowBytes, rowBytes), x), eight[r]);
    }

    /// <summary>The 8 × 4 tile gives every (row, token) exactly the bits of the scalar one-row kernel.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void EightByFourTileGivesTheOneRowBits(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(8 * blocks, 99 + blocks);
        int activationBytes = blocks * Q8_0.BlockBytes;
        int stride = activationBytes + 6, offsetStride = blocks + 3; // neither activations nor offsets need be packed
        var x = new byte[4 * stride];
        var offsets = new int[4 * offsetStride];
        for (int t = 0; t < 4; t++)
        {
            Q8_0.QuantizeActivations(KernelTestData.Floats(blocks * 32, 100 + blocks + t, 2f), x.AsSpan(t * stride, activationBytes));
            Q4_0.ActivationOffsets(x.AsSpan(t * stride, activationBytes), offsets.AsSpan(t * offsetStride, blocks));
        }
        var tile = new float[32];
        int rowBytes = blocks * Q4_0.BlockBytes;
        Q4_0.DotQ8Tile8x4(w, rowBytes, x, stride, offsets, offsetStride, tile);
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 8; r++)
                Assert.Equal(Q4_0.DotQ8Scalar(w.AsSpan(r * rowBytes, rowBytes), x.AsSpan(t * stride, activationBytes)), tile[t * 8 + r]);
        }
    }

    /// <summary>The 8 × 8 tile gives every (row, token) exactly the bits of the scalar one-row kernel.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void EightByEightTileGivesTheOneRowBits(int blocks)
    {
        byte[] w = KernelTestData.Q4Blocks(8 * blocks, 199 + blocks);
        int activationBytes = blocks * Q8_0.BlockBytes;
        int stride = activationBytes + 10, offsetStride = blocks + 5; // neither activations nor offsets need be packed
        var x = new byte[8 * stride];
        var offsets = new int[8 * offsetStride];
        for (int t = 0; t < 8; t++)
        {
            Q8_0.QuantizeActivations(KernelTestData.Floats(blocks * 32, 200 + blocks + t, 2f), x.AsSpan(t * stride, activationBytes));
            Q4_0.ActivationOffsets(x.AsSpan(t * stride, activationBytes), offsets.AsSpan(t * offsetStride, blocks));
        }
        // One token's first block all -128: the largest 16-bit partial sums.
        x.AsSpan(5 * stride + 2, 32).Fill(0x80);
        Q4_0.ActivationOffsets(x.AsSpan(5 * stride, activationBytes), offsets.AsSpan(5 * offsetStride, blocks));
        var tile = new float[64];
        int rowBytes = blocks * Q4_0.BlockBytes;
        Q4_0.DotQ8Tile8x8(w, rowBytes, x, stride, offsets, offsetStride, tile);
        for (int t = 0; t < 8; t++)
        {
            for (int r = 0; r < 8; r++)
                Assert.Equal(Q4_0.DotQ8Scalar(w.AsSpan(r * rowBytes, rowBytes), x.AsSpan(t * stride, activationBytes)), tile[t * 8 + r]);
        }
    }
}
