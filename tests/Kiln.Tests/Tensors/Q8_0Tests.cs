using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q8_0Tests
{
    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);

    private static IEnumerable<(string Name, Quantizer Run)> Quantizers()
    {
        yield return ("scalar", Q8_0.QuantizeScalar);
        yield return ("dispatch", Q8_0.Quantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q8_0.QuantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q8_0.QuantizeAvx512);
    }

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q8_0.DequantizeScalar);
        yield return ("dispatch", Q8_0.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q8_0.DequantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q8_0.DequantizeAvx512);
    }

    [Fact]
    public void HandBuiltBlockDequantizes()
    {
        // d = 0.5 (fp16 0x3800), qs[j] = j - 16  →  x[j] = (j - 16) / 2
        var block = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        for (int j = 0; j < 32; j++)
            block[2 + j] = (byte)(sbyte)(j - 16);
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[32];
            run(block, x);
            for (int j = 0; j < 32; j++)
                Assert.True((j - 16) * 0.5f == x[j], $"{name}: element {j} is {x[j]}");
        }
    }

    [Fact]
    public void HandBuiltRowQuantizesWithRoundHalfAwayFromZero()
    {
        // amax = 127 → d = 1 exactly, id = 1: qs are roundf(x), ties away from zero (not to even)
        float[] x = new float[32];
        float[] head = [127f, -63.5f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49999997f, 100.2f, -126.6f];
        head.CopyTo(x, 0);
        sbyte[] expectedQs = [127, -64, 1, -1, 2, 3, -3, 0, 100, -127];
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[34];
            run(x, block);
            Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
            for (int j = 0; j < 32; j++)
                Assert.True((j < expectedQs.Length ? expectedQs[j] : 0) == (sbyte)block[2 + j], $"{name}: qs[{j}] = {(sbyte)block[2 + j]}");
        }
    }

    /// <summary>
    /// Activations are quantized as llama.cpp's AVX2 quantize_row_q8_0 does: ×127/amax and ties to even, where the
    /// weight quantizer rounds ties away from zero. With amax = 127 the multiplier is exactly 1.
    /// </summary>
    [Fact]
    public void ActivationsRoundHalfToEvenWeightsAwayFromZero()
    {
        var x = new float[32];
        float[] head = [127f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 3.25f];
        head.CopyTo(x, 0);
        var activations = new byte[34];
        var weights = new byte[34];
        Q8_0.QuantizeActivations(x, activations);
        Q8_0.Quantize(x, weights);
        Assert.Equal(new sbyte[] { 127, 0, 2, 2, 0, -2, 3 }, activations.AsSpan(2, 7).ToArray().Select(b => (sbyte)b));
        Assert.Equal(new sbyte[] { 127, 1, 2, 3, -1, -3, 3 }, weights.AsSpan(2, 7).ToArray().Select(b => (sbyte)b));
        Assert.Equal(activations.AsSpan(0, 2).ToArray(), weights.AsSpan(0, 2).ToArray()); // same d
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ActivationQuantizerPathsGiveTheSameBytes(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 70 + blocks, 5f);
        var scalar = new byte[blocks * 34];
        Q8_0.QuantizeActivationsScalar(x, scalar);
        var dispatch = new byte[blocks * 34];
        Q8_0.QuantizeActivations(x, dispatch);
        Assert.Equal(scalar, dispatch);
        if (KernelTestData.Avx2)
        {
            var avx2 = new byte[blocks * 34];
            Q8_0.QuantizeActivationsAvx2(x, avx2);
            Assert.Equal(scalar, avx2);
        }
    }

    [Fact]
    public void ZeroBlockHasZeroScale()
    {
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[34];
            block.AsSpan().Fill(0xAA);
            run(new float[32], block);
            Assert.True(block.All(b => b == 0), name);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void SimdQuantizeGivesTheScalarBytes(int blocks)
    {
        foreach (float scale in new[] { 1f, 1e-3f, 300f, 1e-6f })
        {
            float[] x = KernelTestData.Floats(blocks * 32, 100 + blocks, scale);
            // exact ties at d = 1 in the first block: amax 127 and values k + 0.5
            if (scale == 1f)
            {
                x[0] = 127f;
                for (int j = 1; j < 32; j++)
                    x[j] = j - 15.5f;
            }
            var expected = new byte[blocks * 34];
            Q8_0.QuantizeScalar(x, expected);
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
    public void RoundTripErrorIsWithinHalfAStep(int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 200 + blocks, 3f);
        var q = new byte[blocks * 34];
        Q8_0.Quantize(x, q);
        double[] back = KernelTestData.DecodeQ8(q);
        for (int b = 0; b < blocks; b++)
        {
            double amax = 0;
            for (int j = 0; j < 32; j++)
                amax = Math.Max(amax, Math.Abs(x[b * 32 + j]));
            // rounding to the nearest step of d costs d/2; storing d as fp16 (relative error <= 2^-11) costs up
            // to another |q| * d * 2^-11 <= 127 * d * 2^-11 ≈ 0.062 d
            double d = amax / 127, bound = d * (0.5 + 127.0 / 2048) + 1e-12;
            for (int j = 0; j < 32; j++)
                Assert.True(Math.Abs(back[b * 32 + j] - x[b * 32 + j]) <= bound, $"block {b} element {j}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void DequantizePathsMatchLayoutDecode(int blocks)
    {
        byte[] q = KernelTestData.Q8Blocks(blocks, 300 + blocks);
        double[] expected = KernelTestData.DecodeQ8(q);
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
        byte[] w = KernelTestData.Q8Blocks(blocks, 400 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 401 + blocks);
        double[] wd = KernelTestData.DecodeQ8(w), xd = KernelTestData.Widen(x);
        KernelTestData.AssertDot(wd, xd, Q8_0.DotScalar(w, x), "scalar");
        KernelTestData.AssertDot(wd, xd, Q8_0.Dot(w, x), "dispatch");
        if (KernelTestData.Avx2)
            KernelTestData.AssertDot(wd, xd, Q8_0.DotAvx2(w, x), "avx2");
        if (KernelTestData.Avx512)
            KernelTestData.AssertDot(wd, xd, Q8_0.DotAvx512(w, x), "avx512");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void IntegerDotIsExactOnEveryPath(int blocks)
    {
        // unit scales make every partial sum an integer below 2^24: any summation order is exact
        byte[] w = KernelTestData.Q8Blocks(blocks, 500 + blocks, unitScale: true);
        byte[] x = KernelTestData.Q8Blocks(blocks, 501 + blocks, unitScale: true);
        w[2] = 0x80; x[2] = 0x80; // -128 * -128: the case the maddubs sign trick gets wrong
        long exact = 0;
        for (int b = 0; b < blocks; b++)
            for (int j = 2; j < 34; j++)
                exact += (sbyte)w[b * 34 + j] * (sbyte)x[b * 34 + j];
        Assert.Equal(exact, (long)Q8_0.DotQ8Scalar(w, x));
        Assert.Equal(exact, (long)Q8_0.DotQ8(w, x));
        if (KernelTestData.Avx2)
            Assert.Equal(exact, (long)Q8_0.DotQ8Avx2(w, x));
        if (KernelTestData.Avx512)
            Assert.Equal(exact, (long)Q8_0.DotQ8Avx512(w, x));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void ScaledIntegerDotPathsMatchExactDot(int blocks)
    {
        byte[] w = KernelTestData.Q8Blocks(blocks, 600 + blocks);
        byte[] x = KernelTestData.Q8Blocks(blocks, 601 + blocks);
        double[] wd = KernelTestData.DecodeQ8(w), xd = KernelTestData.DecodeQ8(x);
        KernelTestData.AssertDot(wd, xd, Q8_0.DotQ8Scalar(w, x), "scalar");
        KernelTestData.AssertDot(wd, xd, Q8_0.DotQ8(w, x), "dispatch");
        if (KernelTestData.Avx2)
            KernelTestData.AssertDot(wd, xd, Q8_0.DotQ8Avx2(w, x), "avx2");
        if (KernelTestData.Avx512)
            KernelTestData.AssertDot(wd, xd, Q8_0.DotQ8Avx512(w, x), "avx512");
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void QuantizedActivationDotStaysWithinActivationRounding(int blocks)
    {
        byte[] w = KernelTestData.Q8Blocks(blocks, 700 + blocks);
        float[] x = KernelTestData.Floats(blocks * 32, 701 + blocks, 4f);
        var xq = new byte[blocks * 34];
        Q8_0.Quantize(x, xq);
        double[] wd = KernelTestData.DecodeQ8(w);
        // each activation moves by at most its block's d_x * 0.562 (see the round-trip bound), so the dot moves by
        // at most sum |w_i| * that, plus float rounding of the two dots
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
        float quantized = Q8_0.DotQ8(w, xq), full = Q8_0.Dot(w, x);
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{quantized} vs {full}, bound {bound}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q8_0.Dequantize(new byte[34], new float[31]));
        Assert.Throws<ArgumentException>(() => Q8_0.Dequantize(new byte[33], new float[32]));
        Assert.Throws<ArgumentException>(() => Q8_0.Quantize(new float[64], new byte[34]));
        Assert.Throws<ArgumentException>(() => Q8_0.Dot(new byte[68], new float[32]));
        Assert.Throws<ArgumentException>(() => Q8_0.DotQ8(new byte[68], new byte[34]));
        Assert.Throws<ArgumentException>(() => Q8_0.DotQ8(new byte[35], new byte[35]));
        var e = Assert.Throws<ArgumentException>(() => Q8_0.DotScalar(new byte[34], new float[33]));
        Assert.Contains("32-element blocks", e.Message);
    }

    /// <summary>The 2 × 4 tile gives every (row, token) exactly the bits of the one-row kernel, −128 weights included.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void TileDotGivesTheOneRowBits(int blocks)
    {
        byte[] w = KernelTestData.Q8Blocks(2 * blocks, 60 + blocks);
        w[2] = 0x80; // a -128 weight
        int rowBytes = blocks * Q8_0.BlockBytes;
        int stride = rowBytes + 2;
        var x = new byte[4 * stride];
        for (int t = 0; t < 4; t++)
            Q8_0.QuantizeActivations(KernelTestData.Floats(blocks * 32, 61 + blocks + t, 2f), x.AsSpan(t * stride, rowBytes));
        var tile = new float[8];
        Q8_0.DotQ8Tile2x4(w, x, stride, tile);
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 2; r++)
            {
                var row = w.AsSpan(r * rowBytes, rowBytes);
                var a = x.AsSpan(t * stride, rowBytes);
                Assert.Equal(Q8_0.DotQ8(row, a), tile[t * 2 + r]);
                Assert.Equal(Q8_0.DotQ8Scalar(row, a), tile[t * 2 + r]);
            }
        }
    }

    /// <summary>The 4 × 4 tile gives every (row, token) exactly the bits of the scalar one-row kernel, −128 weights included.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void FourByFourTileGivesTheOneRowBits(int blocks)
    {
        int rowBytes = blocks * Q8_0.BlockBytes;
        byte[] w = KernelTestData.Q8Blocks(4 * blocks, 70 + blocks);
        w[2] = 0x80; // a -128 weight
        w[3 * rowBytes + 2 + 31] = 0x80;
        int stride = rowBytes + 3;
        var x = new byte[4 * stride];
        for (int t = 0; t < 4; t++)
            Q8_0.QuantizeActivations(KernelTestData.Floats(blocks * 32, 71 + blocks + t, 2f), x.AsSpan(t * stride, rowBytes));
        var tile = new float[16];
        Q8_0.DotQ8Tile4x4(w, rowBytes, x, stride, tile);
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 4; r++)
            {
                float expected = Q8_0.DotQ8Scalar(w.AsSpan(r * rowBytes, rowBytes), x.AsSpan(t * stride, rowBytes));
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(tile[t * 4 + r]),
                    $"{blocks} blocks, row {r}, token {t}: tile gives {tile[t * 4 + r]:R}, one-row scalar {expected:R}");
            }
        }
    }

    /// <summary>The four-row kernel gives each row exactly the bits of the scalar one-row kernel, −128 weights included.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void FourRowDotGivesTheOneRowBits(int blocks)
    {
        byte[] w = KernelTestData.Q8Blocks(4 * blocks, 62 + blocks);
        w[2] = 0x80; // a -128 weight
        w[^1] = 0x80;
        int rowBytes = blocks * Q8_0.BlockBytes;
        var x = new byte[rowBytes];
        Q8_0.QuantizeActivations(KernelTestData.Floats(blocks * 32, 63 + blocks, 2f), x);
        var four = new float[4];
        Q8_0.DotQ8Rows4(w, rowBytes, x, four);
        for (int r = 0; r < 4; r++)
            Assert.Equal(Q8_0.DotQ8Scalar(w.AsSpan(r * rowBytes, rowBytes), x), four[r]);
    }
}
