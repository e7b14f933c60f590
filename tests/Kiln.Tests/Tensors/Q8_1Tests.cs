using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q8_1Tests
{
    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);

    private static IEnumerable<(string Name, Quantizer Run)> Quantizers()
    {
        yield return ("scalar", Q8_1.QuantizeScalar);
        yield return ("dispatch", Q8_1.Quantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q8_1.QuantizeAvx2);
        if (KernelTestData.Avx512)
            yield return ("avx512", Q8_1.QuantizeAvx512);
    }

    [Fact]
    public void HandBuiltRowQuantizesLikeTheReference()
    {
        // amax 127 → d = 1; roundf takes halves away from zero (-63.5 → -64, 0.5 → 1); s = d * (127 - 64 + 1)
        float[] x = new float[32];
        x[0] = 127f;
        x[1] = -63.5f;
        x[2] = 0.5f;
        x[20] = -0.49f;
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[36];
            run(x, block);
            Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(block) == 0x3C00, name);
            Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)) == BitConverter.HalfToUInt16Bits((Half)64f), name);
            sbyte[] expected = new sbyte[32];
            expected[0] = 127;
            expected[1] = -64;
            expected[2] = 1;
            for (int j = 0; j < 32; j++)
                Assert.True(expected[j] == (sbyte)block[4 + j], $"{name}: element {j}");
        }
    }

    [Fact]
    public void TheSumUsesTheUnroundedScale()
    {
        // amax 1 → d = 1/127 (fp16 0.0078735 rather than 0.0078740); quants 127 and -110 sum to 17, and
        // fp16(17 * d) = 0.13391 while 17 * fp16(d) would round to 0.13379
        float[] x = new float[32];
        x[0] = 1f;
        x[1] = -110f / 127f;
        float d = 1f / 127f;
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[36];
            run(x, block);
            Assert.True(-110 == (sbyte)block[5], name);
            ushort s = BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2));
            Assert.True(BitConverter.HalfToUInt16Bits((Half)(17 * d)) == s, name);
            Assert.True(BitConverter.HalfToUInt16Bits((Half)(17 * (float)(Half)d)) != s, name);
        }
    }

    [Fact]
    public void ZeroBlockIsAllZero()
    {
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[36];
            block.AsSpan().Fill(0xAB);
            run(new float[32], block);
            Assert.True(block.All(b => b == 0), name);
        }
    }

    /// <summary>Q8_1's scale and quants are Q8_0's (the same reference rounding); s is fp16(d * Σq) with unrounded d.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void QuantsMatchQ8_0AndSumMatchesTheFormula(int blocks)
    {
        foreach (float scale in new[] { 1f, 1e-4f, 500f })
        {
            float[] x = KernelTestData.Floats(blocks * 32, 4110 + blocks, scale);
            var q80 = new byte[blocks * 34];
            Q8_0.QuantizeScalar(x, q80);
            foreach (var (name, run) in Quantizers())
            {
                var q81 = new byte[blocks * 36];
                run(x, q81);
                for (int b = 0; b < blocks; b++)
                {
                    Assert.True(q80.AsSpan(b * 34, 2).SequenceEqual(q81.AsSpan(b * 36, 2)), $"{name}: block {b} d");
                    Assert.True(q80.AsSpan(b * 34 + 2, 32).SequenceEqual(q81.AsSpan(b * 36 + 4, 32)), $"{name}: block {b} quants");
                    float amax = 0;
                    int sum = 0;
                    for (int j = 0; j < 32; j++)
                    {
                        amax = Math.Max(amax, Math.Abs(x[b * 32 + j]));
                        sum += (sbyte)q81[b * 36 + 4 + j];
                    }
                    ushort s = BitConverter.HalfToUInt16Bits((Half)(sum * (amax / 127f)));
                    Assert.True(s == BinaryPrimitives.ReadUInt16LittleEndian(q81.AsSpan(b * 36 + 2)), $"{name}: block {b} s (scale {scale})");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void SimdQuantizeGivesTheScalarBytes(int blocks)
    {
        foreach (float scale in new[] { 1f, 1e-4f, 500f })
        {
            float[] x = KernelTestData.Floats(blocks * 32, 4210 + blocks, scale);
            var expected = new byte[blocks * 36];
            Q8_1.QuantizeScalar(x, expected);
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
    public void DequantizeMatchesLayoutDecode(int blocks)
    {
        byte[] q = LegacyQuantTestData.Q8_1Blocks(blocks, 4310 + blocks);
        double[] expected = LegacyQuantTestData.DecodeQ8_1(q);
        var x = new float[blocks * 32];
        Q8_1.Dequantize(q, x);
        for (int i = 0; i < x.Length; i++)
            Assert.True((float)expected[i] == x[i], $"element {i}");
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q8_1.Dequantize(new byte[36], new float[16]));
        Assert.Throws<ArgumentException>(() => Q8_1.Quantize(new float[32], new byte[34]));
        Assert.Throws<ArgumentException>(() => Q8_1.QuantizeScalar(new float[33], new byte[36]));
    }
}
