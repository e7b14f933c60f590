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

    private sealed record Kernel(int BlockBytes, int Halves, int ActivationBlockBytes, Quantizer Quantize, Dot Scalar, Dot Simd);

    private delegate void Quantizer(ReadOnlySpan<float> x, Span<byte> dst);

    private static Kernel For(string type) => type switch
    {
        "Q8_0" => new(Q8_0.BlockBytes, 1, Q8_0.BlockBytes, Q8_0.QuantizeActivations, Q8_0.DotQ8Scalar, Q8_0.DotQ8),
        "Q4_0" => new(Q4_0.BlockBytes, 1, Q8_0.BlockBytes, Q8_0.QuantizeActivations, Q4_0.DotQ8Scalar, Q4_0.DotQ8),
        "Q5_0" => new(Q5_0.BlockBytes, 1, Q8_0.BlockBytes, Q8_0.QuantizeActivations, Q5_0.DotQ8Scalar, Q5_0.DotQ8),
        "Q4_1" => new(Q4_1.BlockBytes, 2, Q8_1.BlockBytes, Q8_1.Quantize, Q4_1.DotQ8Scalar, Q4_1.DotQ8),
        _ => new(Q5_1.BlockBytes, 2, Q8_1.BlockBytes, Q8_1.Quantize, Q5_1.DotQ8Scalar, Q5_1.DotQ8),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScalarAndSimdDotsGiveTheSameBits(string type, int blocks)
    {
        Kernel k = For(type);
        byte[] w = Blocks(blocks, k.BlockBytes, k.Halves, blocks);
        var xq = new byte[blocks * k.ActivationBlockBytes];
        k.Quantize(KernelTestData.Floats(blocks * 32, 7 + blocks, 3f), xq);
        Assert.Equal(k.Scalar(w, xq), k.Simd(w, xq));
    }
}
