using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>The interleaved Q4_0 layout and its kernels against the plain one-row scalar kernel.</summary>
public sealed class Q4_0x8Tests
{
    /// <summary>Q8_0 activations of any byte value (-128 included), with sane scales of either sign.</summary>
    private static byte[] Activations(int blocks, int seed)
    {
        byte[] x = KernelTestData.Q4Blocks(blocks * Q8_0.BlockBytes / Q4_0.BlockBytes + 1, seed).AsSpan(0, blocks * Q8_0.BlockBytes).ToArray();
        for (int b = 0; b < blocks; b++)
            x[b * Q8_0.BlockBytes + 1] = (byte)(b % 2 == 0 ? 0x2C : 0xAC);
        x.AsSpan(2, 32).Fill(0x80); // the largest partial sums
        return x;
    }

    private static byte[] Interleaved(byte[] plain, int rowBytes)
    {
        var group = new byte[plain.Length];
        Q4_0x8.Interleave(plain, rowBytes, group);
        return group;
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public void LayoutIsScalesThenDwordColumnsOfTheEightRows(int blocks)
    {
        byte[] plain = KernelTestData.Q4Blocks(8 * blocks, 11 + blocks);
        int rowBytes = blocks * Q4_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        for (int b = 0; b < blocks; b++)
        {
            for (int r = 0; r < 8; r++)
            {
                int block = r * rowBytes + b * 18;
                // record b: 8 scales of 2 bytes, then for dword j = 0..3 the rows' 4 bytes in row order
                Assert.Equal(plain[block], group[b * 144 + 2 * r]);
                Assert.Equal(plain[block + 1], group[b * 144 + 2 * r + 1]);
                for (int i = 0; i < 16; i++)
                    Assert.Equal(plain[block + 2 + i], group[b * 144 + 16 + (i / 4) * 32 + r * 4 + i % 4]);
            }
        }
        var row = new byte[rowBytes];
        for (int r = 0; r < 8; r++)
        {
            Q4_0x8.ExtractRow(group, rowBytes, r, row);
            Assert.Equal(plain.AsSpan(r * rowBytes, rowBytes).ToArray(), row);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public unsafe void GroupDotGivesTheOneRowBitsOnEveryPath(int blocks)
    {
        byte[] plain = KernelTestData.Q4Blocks(8 * blocks, 21 + blocks);
        int rowBytes = blocks * Q4_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        byte[] x = Activations(blocks, 22 + blocks);
        var offsets = new int[blocks];
        Q4_0.ActivationOffsets(x, offsets);
        var expected = new float[8];
        for (int r = 0; r < 8; r++)
            expected[r] = Q4_0.DotQ8Scalar(plain.AsSpan(r * rowBytes, rowBytes), x);

        var scalar = new float[8];
        Q4_0x8.DotQ8Scalar(group, x, offsets, scalar);
        Assert.Equal(expected, scalar);
        var dispatched = new float[8];
        Q4_0x8.DotQ8(group, x, offsets, dispatched);
        Assert.Equal(expected, dispatched);
        if (KernelTestData.Avx2)
        {
            var avx2 = new float[8];
            fixed (byte* pw = group)
            fixed (byte* px = x)
            fixed (int* po = offsets)
            fixed (float* pr = avx2)
                Q4_0x8.DotQ8Avx2(pw, px, po, blocks, pr);
            Assert.Equal(expected, avx2);
        }
    }

    [Theory]
    [MemberData(nameof(KernelTestData.BlockCountData), MemberType = typeof(KernelTestData))]
    public unsafe void TileGivesTheOneRowBitsOnEveryPath(int blocks)
    {
        byte[] plain = KernelTestData.Q4Blocks(8 * blocks, 31 + blocks);
        int rowBytes = blocks * Q4_0.BlockBytes;
        byte[] group = Interleaved(plain, rowBytes);
        int activationBytes = blocks * Q8_0.BlockBytes;
        int stride = activationBytes + 6, offsetStride = blocks + 3; // neither activations nor offsets need be packed
        var x = new byte[4 * stride];
        var offsets = new int[4 * offsetStride];
        for (int t = 0; t < 4; t++)
        {
            Activations(blocks, 32 + blocks + t).CopyTo(x, t * stride);
            Q4_0.ActivationOffsets(x.AsSpan(t * stride, activationBytes), offsets.AsSpan(t * offsetStride, blocks));
        }
        var expected = new float[32];
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 8; r++)
                expected[t * 8 + r] = Q4_0.DotQ8Scalar(plain.AsSpan(r * rowBytes, rowBytes), x.AsSpan(t * stride, activationBytes));
        }

        var scalar = new float[32];
        Q4_0x8.DotQ8Tile4Scalar(group, x, stride, offsets, offsetStride, scalar);
        Assert.Equal(expected, scalar);
        var dispatched = new float[32];
        Q4_0x8.DotQ8Tile4(group, x, stride, offsets, offsetStride, dispatched);
        Assert.Equal(expected, dispatched);
        if (KernelTestData.Avx2)
        {
            var avx2 = new float[32];
            fixed (byte* pw = group)
            fixed (byte* px = x)
            fixed (int* po = offsets)
            fixed (float* pr = avx2)
                Q4_0x8.DotQ8Tile4Avx2(pw, px, stride, po, offsetStride, blocks, pr);
            Assert.Equal(expected, avx2);
        }
    }

    public static TheoryData<int, int> PairData()
    {
        var data = new TheoryData<int, int>();
        foreach (int tokens in new[] { 1, 2, 3, 4, 5, 6, 7, 8 })
        {
            foreach (int blocks in new[] { 1, 3, 64, 176 })
                data.Add(tokens, blocks);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(PairData))]
    public unsafe void PairTileGivesTheOneRowBitsOnEveryPath(int tokens, int blocks)
    {
        byte[] plain = KernelTestData.Q4Blocks(16 * blocks, 41 + blocks + tokens);
        int rowBytes = blocks * Q4_0.BlockBytes;
        byte[] groups = new byte[plain.Length];
        for (int g = 0; g < 2; g++)
            Q4_0x8.Interleave(plain.AsSpan(g * 8 * rowBytes, 8 * rowBytes), rowBytes, groups.AsSpan(g * 8 * rowBytes, 8 * rowBytes));
        int activationBytes = blocks * Q8_0.BlockBytes;
        int stride = activationBytes + 10, offsetStride = blocks + 1;
        var x = new byte[tokens * stride];
        var offsets = new int[tokens * offsetStride];
        for (int t = 0; t < tokens; t++)
        {
            Activations(blocks, 42 + blocks + t).CopyTo(x, t * stride);
            Q4_0.ActivationOffsets(x.AsSpan(t * stride, activationBytes), offsets.AsSpan(t * offsetStride, blocks));
        }
        var expected = new float[tokens * 16];
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < 16; r++)
                expected[t * 16 + r] = Q4_0.DotQ8Scalar(plain.AsSpan(r * rowBytes, rowBytes), x.AsSpan(t * stride, activationBytes));
        }

        var scalar = new float[tokens * 16];
        Q4_0x8.DotQ8PairScalar(groups, x, stride, offsets, offsetStride, tokens, scalar);
        Assert.Equal(expected, scalar);
        var dispatched = new float[tokens * 16];
        Q4_0x8.DotQ8Pair(groups, x, stride, offsets, offsetStride, tokens, dispatched);
        Assert.Equal(expected, dispatched);
        if (KernelTestData.Avx512)
        {
            // A wider result stride, as MatMul passes (its output rows), and an offset start: token t's sixteen at 3 + 21·t.
            var wide = new float[3 + tokens * 21];
            fixed (byte* pw = groups)
            fixed (byte* px = x)
            fixed (int* po = offsets)
            fixed (float* pr = wide)
            {
                Q4_0x8.DotQ8PairAvx512(pw, 8 * rowBytes, px, stride, po, offsetStride, blocks, tokens, pr + 3, 16 + 5);
            }
            var avx512 = new float[tokens * 16];
            for (int t = 0; t < tokens; t++)
                wide.AsSpan(3 + t * 21, 16).CopyTo(avx512.AsSpan(t * 16, 16));
            Assert.Equal(expected, avx512);
        }
    }

    [Fact]
    public void KernelsRefuseMissingOffsetsAndShortBuffers()
    {
        byte[] group = new byte[2 * Q4_0x8.RecordBytes];
        byte[] x = new byte[2 * Q8_0.BlockBytes];
        var results = new float[32];
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8(group, x, [], results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8(group, x.AsSpan(0, Q8_0.BlockBytes), new int[2], results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8(group.AsSpan(1), x, new int[2], results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8(group, x, new int[2], new float[7]));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8Tile4(group, x, x.Length, new int[8], 2, results));
        byte[] pair = new byte[4 * Q4_0x8.RecordBytes];
        Assert.Throws<ArgumentOutOfRangeException>(() => Q4_0x8.DotQ8Pair(pair, x, x.Length, new int[2], 2, 9, results));
        Assert.Throws<ArgumentOutOfRangeException>(() => Q4_0x8.DotQ8Pair(pair, x, x.Length, new int[2], 2, 0, results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8Pair(pair.AsSpan(1), x, x.Length, new int[2], 2, 1, results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8Pair(pair, x, x.Length, new int[8], 2, 4, results));
        Assert.Throws<ArgumentException>(() => Q4_0x8.DotQ8Pair(pair, x, x.Length, new int[2], 2, 1, new float[15]));
    }
}
