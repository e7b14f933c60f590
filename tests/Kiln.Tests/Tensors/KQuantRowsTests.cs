using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// The Q4_K four-row single-token kernel against the scalar one-row dot, bit for bit: every result must be
/// what <c>DotQ8KScalar</c> gives for that row. Random blocks (any 6-bit scales and mins),
/// extreme fp16 scales, activations from the quantizer and raw Q8_K blocks with −128, and row lengths of 1 to 22
/// super-blocks, so the two-rows-per-register AVX-512 path (where the CPU has it) is held to the one-row bits.
/// </summary>
public class KQuantRowsTests
{
    private delegate void Rows4(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq, Span<float> results);
    private delegate float OneRow(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq);

    private static (Rows4 Rows, OneRow Scalar) For(GgmlType type) => type switch
    {
        GgmlType.Q4_K => (Q4_K.DotQ8KRows4, Q4_K.DotQ8KScalar),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static TheoryData<GgmlType, int> Cases()
    {
        var data = new TheoryData<GgmlType, int>();
        foreach (var type in new[] { GgmlType.Q4_K })
            foreach (int blocks in new[] { 1, 3, 8, 22 })
                data.Add(type, blocks);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryResultHasTheScalarOneRowBits(GgmlType type, int blocks)
    {
        var (rows4, scalar) = For(type);
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        int rowBytes = blocks * blockBytes;
        for (int seed = 0; seed < 6; seed++)
        {
            byte[] w = KQuantReference.RandomBlocks(type, 4 * blocks, 100 * seed + blocks + (int)type);
            if (seed == 1)
                SetExtremeScales(type, w, blockBytes);
            byte[] x;
            if (seed % 2 == 0)
            {
                x = new byte[blocks * Q8_K.BlockBytes];
                float[] f = KernelTestData.Floats(blocks * 256, 17 * seed + blocks, seed + 1f);
                if (seed == 2)
                    f.AsSpan(0, 256).Clear(); // an all-zero activation block: d = 0 and zero sums
                Q8_K.Quantize(f, x);
            }
            else
            {
                x = KQuantReference.RandomQ8K(blocks, 31 * seed + blocks);
            }
            var results = new float[4];
            rows4(w, rowBytes, x, results);
            for (int r = 0; r < 4; r++)
            {
                float expected = scalar(w.AsSpan(r * rowBytes, rowBytes), x);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[r]),
                    $"{type}, {blocks} blocks, seed {seed}, row {r}: four-row kernel gives {results[r]:R}, one-row scalar {expected:R}");
            }
        }
    }

    /// <summary>The largest and smallest fp16 magnitudes as d and dmin, alternating over the blocks and rows; every scale and min at 63.</summary>
    private static void SetExtremeScales(GgmlType type, byte[] w, int blockBytes)
    {
        Assert.Equal(GgmlType.Q4_K, type);
        ushort[] halves = [0x7BFF, 0x0001, 0xFBFF, 0x0400, 0x8001];
        for (int b = 0; b < w.Length / blockBytes; b++)
        {
            Span<byte> block = w.AsSpan(b * blockBytes, blockBytes);
            BinaryPrimitives.WriteUInt16LittleEndian(block, halves[b % halves.Length]);
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], halves[(b + 2) % halves.Length]);
            block.Slice(4, 12).Fill(0xFF);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    public void RejectsShortBuffers(GgmlType type)
    {
        var (rows4, _) = For(type);
        int rowBytes = 2 * GgmlTypeTraits.BlockBytes(type);
        var x = new byte[2 * Q8_K.BlockBytes];
        Assert.Throws<ArgumentException>(() => rows4(new byte[4 * rowBytes - 1], rowBytes, x, new float[4]));
        Assert.Throws<ArgumentException>(() => rows4(new byte[4 * rowBytes], rowBytes, x, new float[3]));
        Assert.Throws<ArgumentException>(() => rows4(new byte[4 * rowBytes], rowBytes, x.AsSpan(1), new float[4]));
        Assert.Throws<ArgumentException>(() => rows4(new byte[4 * rowBytes], rowBytes - 1, x, new float[4]));
    }
}
