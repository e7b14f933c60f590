using System.Buffers.Binary;
using Kiln.Benchmarking;
using Kiln.Tensors;

namespace Kiln.Tests.Benchmarking;

public class RandomWeightGeneratorTests
{
    /// <summary>ggml's block layouts: byte offsets of each block's fp16 scale/min fields, and the 2^e the scale sits in.</summary>
    public static TheoryData<GgmlType, int[], int> Blocks() => new()
    {
        { GgmlType.Q4_0, [0], -10 },
        { GgmlType.Q4_1, [0, 2], -10 },
        { GgmlType.Q5_0, [0], -10 },
        { GgmlType.Q5_1, [0, 2], -10 },
        { GgmlType.Q8_0, [0], -10 },
        { GgmlType.Q2_K, [80, 82], -13 },   // scales[16], qs[64], d, dmin
        { GgmlType.Q3_K, [108], -13 },      // hmask[32], qs[64], scales[12], d
        { GgmlType.Q4_K, [0, 2], -13 },
        { GgmlType.Q5_K, [0, 2], -13 },
        { GgmlType.Q6_K, [208], -13 },      // ql[128], qh[64], scales[16], d
    };

    [Theory]
    [MemberData(nameof(Blocks))]
    public void BlockScalesAreSmallNormalHalves(GgmlType type, int[] halfOffsets, int exponent)
    {
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        var data = new byte[blockBytes * 37];
        new RandomWeightGenerator(7).Fill(type, data);
        for (int b = 0; b < 37; b++)
        {
            foreach (int offset in halfOffsets)
            {
                double d = Math.Abs((double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(b * blockBytes + offset))));
                Assert.InRange(d, Math.Pow(2, exponent), Math.Pow(2, exponent + 1));
            }
        }
        // The quant bytes stay random: not all equal.
        Assert.True(data.Distinct().Count() > 200);
        if (RowKernels.Supports(type))
            AssertModestWeights(type, data);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void FloatWeightsLieBetweenTwoToTheMinusSevenAndMinusFive(GgmlType type)
    {
        int size = GgmlTypeTraits.BlockBytes(type);
        var data = new byte[size * 1001];
        new RandomWeightGenerator(3).Fill(type, data);
        var values = new double[1001];
        for (int i = 0; i < values.Length; i++)
        {
            var bytes = data.AsSpan(i * size, size);
            values[i] = type switch
            {
                GgmlType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes),
                GgmlType.F16 => (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes)),
                _ => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes) << 16),
            };
            Assert.InRange(Math.Abs(values[i]), 1.0 / 128, 1.0 / 32);
        }
        // Both signs and both exponents occur.
        Assert.Contains(values, v => v < 0);
        Assert.Contains(values, v => v > 0);
        Assert.Contains(values, v => Math.Abs(v) < 1.0 / 64);
        Assert.Contains(values, v => Math.Abs(v) > 1.0 / 64);
    }

    [Fact]
    public void SameSeedSameBytes()
    {
        var a = new byte[34 * 10];
        var b = new byte[34 * 10];
        new RandomWeightGenerator(5).Fill(GgmlType.Q8_0, a);
        new RandomWeightGenerator(5).Fill(GgmlType.Q8_0, b);
        Assert.Equal(a, b);
        new RandomWeightGenerator(6).Fill(GgmlType.Q8_0, b);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void RejectsPartialBlocksAndTypesWithoutARecipe()
    {
        var g = new RandomWeightGenerator(1);
        Assert.Throws<ArgumentException>(() => g.Fill(GgmlType.Q8_0, new byte[35]));
        Assert.False(RandomWeightGenerator.CanGenerate(GgmlType.IQ2_XXS));
        Assert.Throws<NotSupportedException>(() => g.Fill(GgmlType.IQ2_XXS, new byte[GgmlTypeTraits.BlockBytes(GgmlType.IQ2_XXS)]));
    }

    private static void AssertModestWeights(GgmlType type, byte[] data)
    {
        var values = new float[data.Length / GgmlTypeTraits.BlockBytes(type) * GgmlTypeTraits.BlockSize(type)];
        RowKernels.Dequantize(type, data, values);
        Assert.All(values, v => Assert.True(float.IsFinite(v) && MathF.Abs(v) < 1f, $"{type}: weight {v}"));
        Assert.Contains(values, v => v != 0);
    }
}
