using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>The interleaved Q8_0 layout and its kernels against the plain one-row scalar kernel.</summary>
public sealed class Q8_0x4Tests
{
    /// <summary>Activations as the product quantizes them (bytes in [−127, 127], which the AVX2 kernels need).</summary>
    private static byte[] Activations(int blocks, int seed)
    {
        var x = new byte[blocks * Q8_0.BlockBytes];
        Q8_0.QuantizeActivationsScalar(KernelTestData.Floats(blocks * 32, seed, 3f), x);
        return x;
    }

    private static byte[] Interleaved(byte[] plain, int rowBytes)
    {
        var group = new byte[plain.Length];
        Q8_0x4.Interleave(plain, rowBytes, group);
        return group;
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void LayoutIsBlockBOfTheFourRowsThenBlockBPlusOne(int blocks)
    {
        byte[] plain = KernelTestData.Q8Blocks(4 * blocks, 41 + blocks);
        int rowBytes = blocks * Q8_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        for (int b = 0; b < blocks; b++)
        {
            for (int r = 0; r < 4; r++)
            {
                for (int i = 0; i < 34; i++)
                    Assert.Equal(plain[r * rowBytes + b * 34 + i], group[b * 136 + r * 34 + i]);
            }
        }
        var row = new byte[rowBytes];
        for (int r = 0; r < 4; r++)
        {
            Q8_0x4.ExtractRow(group, rowBytes, r, row);
            Assert.Equal(plain.AsSpan(r * rowBytes, rowBytes).ToArray(), row);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public unsafe void GroupDotGivesTheOneRowBitsOnEveryPath(int blocks)
    {
        byte[] plain = KernelTestData.Q8Blocks(4 * blocks, 51 + blocks);
        int rowBytes = blocks * Q8_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        byte[] x = Activations(blocks, 52 + blocks);
        var expected = new float[4];
        for (int r = 0; r < 4; r++)
            expected[r] = Q8_0.DotQ8Scalar(plain.AsSpan(r * rowBytes, rowBytes), x);

        var scalar = new float[4];
        Q8_0x4.DotQ8Scalar(group, x, scalar);
        Assert.Equal(expected, scalar);
        var dispatched = new float[4];
        Q8_0x4.DotQ8(group, x, dispatched);
        Assert.Equal(expected, dispatched);
        if (KernelTestData.Avx2)
        {
            var avx2 = new float[4];
            fixed (byte* pw = group)
            fixed (byte* px = x)
            fixed (float* pr = avx2)
                Q8_0x4.DotQ8Avx2(pw, px, blocks, pr);
            Assert.Equal(expected, avx2);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public unsafe void PairTileGivesTheOneRowBitsOnEveryPath(int blocks)
    {
        byte[] plain = KernelTestData.Q8Blocks(4 * blocks, 61 + blocks);
        int rowBytes = blocks * Q8_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        int stride = rowBytes + 5; // activation rows need not be packed
        var x = new byte[4 * stride];
        for (int t = 0; t < 4; t++)
            Activations(blocks, 62 + blocks + t).CopyTo(x, t * stride);
        for (int pair = 0; pair < 2; pair++)
        {
            var expected = new float[8];
            for (int t = 0; t < 4; t++)
            {
                for (int i = 0; i < 2; i++)
                    expected[t * 2 + i] = Q8_0.DotQ8Scalar(plain.AsSpan((2 * pair + i) * rowBytes, rowBytes), x.AsSpan(t * stride, rowBytes));
            }
            var scalar = new float[8];
            Q8_0x4.DotQ8Tile2x4Scalar(group, pair, x, stride, scalar);
            Assert.Equal(expected, scalar);
            var dispatched = new float[8];
            Q8_0x4.DotQ8Tile2x4(group, pair, x, stride, dispatched);
            Assert.Equal(expected, dispatched);
            if (KernelTestData.Avx2)
            {
                var avx2 = new float[8];
                fixed (byte* pw = group)
                fixed (byte* px = x)
                fixed (float* pr = avx2)
                    Q8_0x4.DotQ8Tile2x4Avx2(pw + 2 * pair * Q8_0.BlockBytes, px, stride, blocks, pr);
                Assert.Equal(expected, avx2);
            }
        }
    }

    [Fact]
    public void KernelsRefuseShortBuffersAndBadPairs()
    {
        byte[] group = new byte[2 * Q8_0x4.RecordBytes];
        byte[] x = new byte[4 * 2 * Q8_0.BlockBytes];
        Assert.Throws<ArgumentException>(() => Q8_0x4.DotQ8(group, x.AsSpan(0, Q8_0.BlockBytes), new float[4]));
        Assert.Throws<ArgumentException>(() => Q8_0x4.DotQ8(group.AsSpan(1), x, new float[4]));
        Assert.Throws<ArgumentException>(() => Q8_0x4.DotQ8(group, x, new float[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Q8_0x4.DotQ8Tile2x4(group, 2, x, 2 * Q8_0.BlockBytes, new float[8]));
        Assert.Throws<ArgumentException>(() => Q8_0x4.DotQ8Tile2x4(group, 0, x, 3 * Q8_0.BlockBytes, new float[8]));
    }
}
