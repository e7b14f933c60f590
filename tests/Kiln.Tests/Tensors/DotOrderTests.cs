using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// The scalar twins of the quantized dots sum in exactly the SIMD kernels' (llama.cpp's) order, so a machine
/// without AVX2 gets the same bits, and the same agreement with llama.cpp, as one with it.
/// </summary>
public class DotOrderTests
{
    private delegate float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x);

    /// <summary>Random blocks with every half-precision field (d, and m where present) set to a sane value.</summary>
    private static byte[] Blocks(int blocks, int blockBytes, int halves, int seed)
    {
        var rng = new Random(seed);
        var data = new byte[blocks * blockBytes];
        rng.NextBytes(data);
        for (int b = 0; b < blocks; b++)
        {
            for (int h = 0; h < halves; h++)
            {
                float v = MathF.Pow(2f, -8f + 6f * rng.NextSingle()) * (rng.Next(2) == 0 ? 1f : -1f);
                BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(b * blockBytes + 2 * h), BitConverter.HalfToUInt16Bits((Half)v));
            }
        }
        return data;
    }

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string type in new[] { "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1" })
        {
            foreach (int blocks in KernelTestData.BlockCounts)
                data.Add(type, blocks);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScalarAndSimdDotsGiveTheSameBits(string type, int blocks)
    {
        float[] x = KernelTestData.Floats(blocks * 32, 7 + blocks, 3f);
        byte[] w;
        byte[] xq;
        Dot scalar, simd;
        switch (type)
        {
            case "Q8_0":
                w = Blocks(blocks, Q8_0.BlockBytes, 1, blocks);
                xq = new byte[blocks * Q8_0.BlockBytes];
                Q8_0.QuantizeActivations(x, xq);
                (scalar, simd) = (Q8_0.DotQ8Scalar, Q8_0.DotQ8);
                break;
            case "Q4_0":
                w = Blocks(blocks, Q4_0.BlockBytes, 1, blocks);
                xq = new byte[blocks * Q8_0.BlockBytes];
                Q8_0.QuantizeActivations(x, xq);
                (scalar, simd) = (Q4_0.DotQ8Scalar, Q4_0.DotQ8);
                break;
            case "Q5_0":
                w = Blocks(blocks, Q5_0.BlockBytes, 1, blocks);
                xq = new byte[blocks * Q8_0.BlockBytes];
                Q8_0.QuantizeActivations(x, xq);
                (scalar, simd) = (Q5_0.DotQ8Scalar, Q5_0.DotQ8);
                break;
            case "Q4_1":
                w = Blocks(blocks, Q4_1.BlockBytes, 2, blocks);
                xq = new byte[blocks * Q8_1.BlockBytes];
                Q8_1.Quantize(x, xq);
                (scalar, simd) = (Q4_1.DotQ8Scalar, Q4_1.DotQ8);
                break;
            default:
                w = Blocks(blocks, Q5_1.BlockBytes, 2, blocks);
                xq = new byte[blocks * Q8_1.BlockBytes];
                Q8_1.Quantize(x, xq);
                (scalar, simd) = (Q5_1.DotQ8Scalar, Q5_1.DotQ8);
                break;
        }
        Assert.Equal(scalar(w, xq), simd(w, xq));
    }
}
