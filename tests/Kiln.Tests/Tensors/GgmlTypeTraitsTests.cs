using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class GgmlTypeTraitsTests
{
    // Sizes from ggml's type_traits table (ggml.c): independent of how Kiln derives them.
    [Theory]
    [InlineData(GgmlType.F32, 1, 4)]
    [InlineData(GgmlType.F16, 1, 2)]
    [InlineData(GgmlType.BF16, 1, 2)]
    [InlineData(GgmlType.Q4_0, 32, 18)]
    [InlineData(GgmlType.Q4_1, 32, 20)]
    [InlineData(GgmlType.Q5_0, 32, 22)]
    [InlineData(GgmlType.Q5_1, 32, 24)]
    [InlineData(GgmlType.Q8_0, 32, 34)]
    [InlineData(GgmlType.Q2_K, 256, 84)]
    [InlineData(GgmlType.Q3_K, 256, 110)]
    [InlineData(GgmlType.Q4_K, 256, 144)]
    [InlineData(GgmlType.Q5_K, 256, 176)]
    [InlineData(GgmlType.Q6_K, 256, 210)]
    [InlineData(GgmlType.Q8_K, 256, 292)]
    [InlineData(GgmlType.IQ4_XS, 256, 136)]
    public void BlockGeometryMatchesGgml(GgmlType type, int blockSize, int blockBytes)
    {
        Assert.Equal(blockSize, GgmlTypeTraits.BlockSize(type));
        Assert.Equal(blockBytes, GgmlTypeTraits.BlockBytes(type));
    }

    [Fact]
    public void RowBytesRejectsPartialBlocks()
    {
        Assert.Equal(18 * 4, GgmlTypeTraits.RowBytes(GgmlType.Q4_0, 128));
        Assert.Throws<ArgumentException>(() => GgmlTypeTraits.RowBytes(GgmlType.Q4_0, 100));
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(36u)]
    [InlineData(0xFFFFFFFFu)]
    public void RemovedAndFutureIdsAreUnknown(uint id) => Assert.False(GgmlTypeTraits.IsKnown(id));
}
