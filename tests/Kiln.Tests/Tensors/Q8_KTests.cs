using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class Q8_KTests
{
    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);
    private delegate void Dequantizer(ReadOnlySpan<byte> src, Span<float> dst);

    private static IEnumerable<(string Name, Quantizer Run)> Quantizers()
    {
        yield return ("scalar", Q8_K.QuantizeScalar);
        yield return ("dispatch", Q8_K.Quantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q8_K.QuantizeAvx2);
    }

    private static IEnumerable<(string Name, Dequantizer Run)> Dequantizers()
    {
        yield return ("scalar", Q8_K.DequantizeScalar);
        yield return ("dispatch", Q8_K.Dequantize);
        if (KernelTestData.Avx2)
            yield return ("avx2", Q8_K.DequantizeAvx2);
    }

    /// <summary>ggml's quantize_row_q8_K_ref written out, one block.</summary>
    private static byte[] Reference(ReadOnlySpan<float> x)
    {
        var y = new byte[292];
        float max = 0, amax = 0;
        for (int j = 0; j < 256; ++j)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0)
            return y;
        float iscale = -127f / max;
        for (int j = 0; j < 256; ++j)
        {
            // nearest_int: the float sum with 1.5 * 2^23 rounds to an integer (half to even) in its low mantissa bits
            float val = iscale * x[j] + 12582912f;
            int v = (BitConverter.SingleToInt32Bits(val) & 0x007fffff) - 0x00400000;
            y[4 + j] = (byte)(sbyte)Math.Min(127, v);
        }
        KQuantReference.WriteBsums(y);
        BinaryPrimitives.WriteSingleLittleEndian(y, 1 / iscale);
        return y;
    }

    [Fact]
    public void HandBuiltBlockQuantizesWithTiesToEven()
    {
        // the first largest magnitude is x[5] = -127/64 (x[6] only ties it), so iscale = -127 / max = 64 and
        // d = 1/64 exactly: k/64 quantizes to k, (k + 0.5)/64 to the even neighbour
        float[] x = new float[256];
        x[0] = 1.25f / 64; x[1] = 0.5f / 64; x[2] = 1.5f / 64; x[3] = 2.5f / 64; x[4] = -2.5f / 64;
        x[5] = -127f / 64; x[6] = 127f / 64; x[20] = -3.5f / 64; x[255] = 100f / 64;
        var expectedQs = new sbyte[256];
        expectedQs[0] = 1; expectedQs[1] = 0; expectedQs[2] = 2; expectedQs[3] = 2; expectedQs[4] = -2;
        expectedQs[5] = -127; expectedQs[6] = 127; expectedQs[20] = -4; expectedQs[255] = 100;
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[292];
            run(x, block);
            Assert.True(BinaryPrimitives.ReadSingleLittleEndian(block) == 1f / 64, $"{name}: d");
            for (int j = 0; j < 256; j++)
                Assert.True(expectedQs[j] == (sbyte)block[4 + j], $"{name}: qs[{j}] = {(sbyte)block[4 + j]}");
            short[] bsums = Enumerable.Range(0, 16).Select(k => BinaryPrimitives.ReadInt16LittleEndian(block.AsSpan(260 + 2 * k))).ToArray();
            Assert.Equal([3, -4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100], bsums);
        }
    }

    [Fact]
    public void PositiveFirstMaximumFlipsTheSign()
    {
        float[] x = new float[256];
        x[3] = 2f;
        x[9] = -2f;
        x[10] = 1f;
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[292];
            run(x, block);
            Assert.True(BinaryPrimitives.ReadSingleLittleEndian(block) == 1f / (-127f / 2f), name);
            Assert.Equal(-127, (sbyte)block[4 + 3]);
            Assert.Equal(127, (sbyte)block[4 + 9]);
            Assert.Equal(-64, (sbyte)block[4 + 10]); // -63.5 → -64 (even)
        }
    }

    [Fact]
    public void ZeroBlockIsAllZero()
    {
        foreach (var (name, run) in Quantizers())
        {
            var block = new byte[292];
            block.AsSpan().Fill(0xAA);
            run(new float[256], block);
            Assert.True(block.All(b => b == 0), name);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(16)]
    public void EveryPathGivesGgmlReferenceBytes(int blocks)
    {
        foreach (float scale in new[] { 1f, 1e-3f, 300f, 1e-6f })
        {
            float[] x = KernelTestData.Floats(blocks * 256, 100 + blocks, scale);
            // a tie for the largest magnitude late in the last block, and exact halves after scaling
            x[^7] = 4 * scale;
            x[^3] = -4 * scale;
            var expected = new byte[blocks * 292];
            for (int b = 0; b < blocks; b++)
                Reference(x.AsSpan(b * 256, 256)).CopyTo(expected, b * 292);
            foreach (var (name, run) in Quantizers())
            {
                var actual = new byte[expected.Length];
                run(x, actual);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{name} differs from ggml (scale {scale}, {blocks} blocks)");
            }
        }
    }

    [Fact]
    public void RoundTripErrorIsWithinHalfAStep()
    {
        float[] x = KernelTestData.Floats(16 * 256, 5, 3f);
        var q = new byte[16 * 292];
        Q8_K.Quantize(x, q);
        var back = new float[x.Length];
        Q8_K.Dequantize(q, back);
        for (int b = 0; b < 16; b++)
        {
            double d = Math.Abs(BitConverter.ToSingle(q, b * 292));
            for (int j = 0; j < 256; j++)
                Assert.True(Math.Abs(back[b * 256 + j] - x[b * 256 + j]) <= d * (0.5 + 1e-5), $"block {b} element {j}");
        }
    }

    [Fact]
    public void DequantizePathsGiveDTimesQ()
    {
        byte[] q = KQuantReference.RandomQ8K(5, 9);
        double[] expected = KQuantReference.DecodeQ8K(q).Values;
        foreach (var (name, run) in Dequantizers())
        {
            var x = new float[5 * 256];
            run(q, x);
            for (int i = 0; i < x.Length; i++)
                Assert.True((float)expected[i] == x[i], $"{name}: element {i}");
        }
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => Q8_K.Quantize(new float[256], new byte[291]));
        Assert.Throws<ArgumentException>(() => Q8_K.Quantize(new float[128], new byte[146]));
        Assert.Throws<ArgumentException>(() => Q8_K.Dequantize(new byte[292], new float[255]));
    }
}
