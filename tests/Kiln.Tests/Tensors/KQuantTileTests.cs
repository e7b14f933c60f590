using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// The K-quant 1 × 4 tiles (one weight row · four Q8_K activation rows) against the scalar one-row dot, bit for bit:
/// every output of a tile must be what <c>DotQ8KScalar</c> gives for that row and token.
/// </summary>
public class KQuantTileTests
{
    private delegate void Tile(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, Span<float> results);
    private delegate float OneRow(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq);

    private static (Tile Tile, OneRow Scalar) For(GgmlType type) => type switch
    {
        GgmlType.Q4_K => (Q4_K.DotQ8KTile1x4, Q4_K.DotQ8KScalar),
        GgmlType.Q5_K => (Q5_K.DotQ8KTile1x4, Q5_K.DotQ8KScalar),
        GgmlType.Q6_K => (Q6_K.DotQ8KTile1x4, Q6_K.DotQ8KScalar),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static TheoryData<GgmlType, int> Cases()
    {
        var data = new TheoryData<GgmlType, int>();
        foreach (var type in new[] { GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
            foreach (int blocks in new[] { 1, 2, 3, 7 })
                data.Add(type, blocks);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryOutputHasTheScalarOneRowBits(GgmlType type, int blocks)
    {
        var (tile, scalar) = For(type);
        int activationBytes = blocks * Q8_K.BlockBytes;
        int stride = activationBytes + 5; // the tokens need not be packed, nor aligned
        for (int seed = 0; seed < 8; seed++)
        {
            byte[] w = KQuantReference.RandomBlocks(type, blocks, 1000 * seed + 10 * blocks + (int)type);
            var x = new byte[4 * stride];
            for (int t = 0; t < 4; t++)
            {
                float[] f = KernelTestData.Floats(blocks * 256, 31 * seed + t + 7 * blocks, t + 0.5f);
                if (t == 1)
                    f.AsSpan(0, 256).Clear(); // an all-zero activation block: d = 0 and zero sums
                Q8_K.Quantize(f, x.AsSpan(t * stride, activationBytes));
            }
            var results = new float[4];
            tile(w, x, stride, results);
            for (int t = 0; t < 4; t++)
            {
                float expected = scalar(w, x.AsSpan(t * stride, activationBytes));
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[t]),
                    $"{type}, {blocks} blocks, seed {seed}, token {t}: tile gives {results[t]:R}, one-row scalar {expected:R}");
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void RejectsShortBuffers(GgmlType type)
    {
        var (tile, _) = For(type);
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        var w = new byte[2 * blockBytes];
        int stride = 2 * Q8_K.BlockBytes;
        Assert.Throws<ArgumentException>(() => tile(w, new byte[4 * stride - 1], stride, new float[4]));
        Assert.Throws<ArgumentException>(() => tile(w, new byte[4 * stride], stride - 1, new float[4]));
        Assert.Throws<ArgumentException>(() => tile(w, new byte[4 * stride], stride, new float[3]));
        Assert.Throws<ArgumentException>(() => tile(w.AsSpan(1), new byte[4 * stride], stride, new float[4]));
    }

    public static TheoryData<int, int> Q6KEightTokenCases()
    {
        var data = new TheoryData<int, int>();
        foreach (int blocks in new[] { 1, 2, 3, 7 })
            foreach (int tokens in new[] { 1, 3, 6, 7, 8 })
                data.Add(blocks, tokens);
        return data;
    }

    /// <summary>Q6_K's 1 × 8 tile, also with fewer tokens than places: each result is the scalar one-row dot's bits, and nothing past the tokens is written.</summary>
    [Theory]
    [MemberData(nameof(Q6KEightTokenCases))]
    public void Q6KEightTokenTileHasTheScalarOneRowBits(int blocks, int tokens)
    {
        int activationBytes = blocks * Q8_K.BlockBytes;
        int stride = activationBytes + 3;
        for (int seed = 0; seed < 6; seed++)
        {
            byte[] w = KQuantReference.RandomBlocks(GgmlType.Q6_K, blocks, 2000 * seed + 10 * blocks + tokens);
            // exactly the bytes the tokens need: the last row ends the buffer
            var x = new byte[(tokens - 1) * stride + activationBytes];
            for (int t = 0; t < tokens; t++)
            {
                float[] f = KernelTestData.Floats(blocks * 256, 37 * seed + t + 11 * blocks, 0.25f + t);
                if (t == 2)
                    f.AsSpan(0, 256).Clear(); // an all-zero activation block
                Q8_K.Quantize(f, x.AsSpan(t * stride, activationBytes));
            }
            var results = new float[9];
            results.AsSpan(tokens).Fill(float.NaN);
            Q6_K.DotQ8KTile1x8(w, x, stride, tokens, results);
            for (int t = 0; t < tokens; t++)
            {
                float expected = Q6_K.DotQ8KScalar(w, x.AsSpan(t * stride, activationBytes));
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[t]),
                    $"{blocks} blocks, {tokens} tokens, seed {seed}, token {t}: tile gives {results[t]:R}, one-row scalar {expected:R}");
            }
            for (int t = tokens; t < results.Length; t++)
                Assert.True(float.IsNaN(results[t]), $"{tokens} tokens: results[{t}] was written");
        }
    }

    [Fact]
    public void Q6KEightTokenTileRejectsBadArguments()
    {
        var w = new byte[2 * Q6_K.BlockBytes];
        int stride = 2 * Q8_K.BlockBytes;
        Assert.Throws<ArgumentOutOfRangeException>(() => Q6_K.DotQ8KTile1x8(w, new byte[8 * stride], stride, 0, new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Q6_K.DotQ8KTile1x8(w, new byte[9 * stride], stride, 9, new float[9]));
        Assert.Throws<ArgumentException>(() => Q6_K.DotQ8KTile1x8(w, new byte[6 * stride - 1], stride, 6, new float[6]));
        Assert.Throws<ArgumentException>(() => Q6_K.DotQ8KTile1x8(w, new byte[8 * stride], stride - 1, 8, new float[8]));
        Assert.Throws<ArgumentException>(() => Q6_K.DotQ8KTile1x8(w, new byte[8 * stride], stride, 8, new float[7]));
        Assert.Throws<ArgumentException>(() => Q6_K.DotQ8KTile1x8(w.AsSpan(1), new byte[8 * stride], stride, 8, new float[8]));
    }
}
