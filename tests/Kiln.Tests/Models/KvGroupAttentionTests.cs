using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Models;

/// <summary>
/// The tiled exact attention (<see cref="KvGroupAttention"/>, used by <see cref="Attention"/> for batches and by
/// <see cref="PagedAttention"/>) against the per-(row, head) form it replaced, written out here plainly: each K·Q
/// entry one <see cref="F32.DotSingleAccumulatorScalar"/> chain, <see cref="Attention.Softmax"/>, and V·P with
/// position p in lane p mod 8, reduced by halving. The two must agree bit for bit.
/// </summary>
public unsafe class KvGroupAttentionTests
{
    private const int KvHeads = 2;

    public static TheoryData<int, int, int, int, KvCacheType> Shapes()
    {
        var data = new TheoryData<int, int, int, int, KvCacheType>();
        foreach (var type in new[] { KvCacheType.F16, KvCacheType.F32, KvCacheType.Q8_0 })
        foreach (int headDim in new[] { 64, 40 })
        foreach (int group in new[] { 1, 3, 4 })
        foreach (int start in new[] { 0, 61 })
        foreach (int tokens in new[] { 2, 7, 70 })
        {
            if (type == KvCacheType.Q8_0 && headDim % 32 != 0)
                continue;
            data.Add(tokens, headDim, group, start, type);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BatchAttentionEqualsThePerRowOrderBitForBit(int tokens, int headDim, int group, int start, KvCacheType type)
    {
        var random = new Random(tokens * 31 + headDim + group * 7 + start);
        int heads = KvHeads * group;
        int context = start + tokens + 3;
        using var cache = new KvCache(2, context, KvHeads * headDim, type);
        var k = new float[KvHeads * headDim];
        var v = new float[KvHeads * headDim];
        for (int p = 0; p < start + tokens; p++)
        {
            Fill(random, k, 1);
            Fill(random, v, 1);
            cache.Store(1, p, k, v);
        }
        var queries = new float[tokens * heads * headDim];
        Fill(random, queries, 2);

        var expected = Reference(cache, queries, tokens, heads, headDim, group, start);
        var config = ConfigFor(heads, headDim);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            var attention = new Attention(config, context, threads);
            var actual = new float[queries.Length];
            fixed (float* q = queries, o = actual)
                attention.Run(pool, cache, 1, start, tokens, q, o);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"threads {threads}, element {i}: {actual[i]:R} != {expected[i]:R}");
        }
    }

    public static TheoryData<int, int, int> AccumulationShapes()
    {
        var data = new TheoryData<int, int, int>();
        foreach (int hd in new[] { 8, 40, 64 })
        foreach (int first in new[] { 0, 64 })
        foreach (int count in new[] { 1, 7, 8, 9, 15, 16, 17, 33, 64 })
            data.Add(hd, first, first + count);
        return data;
    }

    [Theory]
    [MemberData(nameof(AccumulationShapes))]
    public void ValueAccumulationMatchesItsScalarForm(int hd, int first, int end)
    {
        var random = new Random(hd + first + end);
        var values = new float[(end - first) * hd];
        var probabilities = new float[end];
        var start = new float[8 * hd];
        Fill(random, values, 1);
        Fill(random, probabilities, 1);
        Fill(random, start, 1);
        var paths = new List<Accumulate> { KvGroupAttention.AccumulateValuesScalar, KvGroupAttention.AccumulateValues };
        if (CpuPaths.CanAvx2)
            paths.Add(KvGroupAttention.AccumulateValuesAvx2);
        if (CpuPaths.CanAvx512 && hd % 16 == 0)
            paths.Add(KvGroupAttention.AccumulateValuesAvx512);
        foreach (bool resume in new[] { false, true })
        {
            // The plain form: lanes cleared (or carried over), position p into lane p mod 8, halving reduction.
            var expectedLanes = resume ? (float[])start.Clone() : new float[8 * hd];
            for (int p = first; p < end; p++)
            for (int d = 0; d < hd; d++)
                expectedLanes[p % 8 * hd + d] = MathF.FusedMultiplyAdd(values[(p - first) * hd + d], probabilities[p], expectedLanes[p % 8 * hd + d]);
            var expectedOutput = new float[hd];
            var eight = new float[8];
            for (int d = 0; d < hd; d++)
            {
                for (int l = 0; l < 8; l++)
                    eight[l] = expectedLanes[l * hd + d];
                expectedOutput[d] = F32.SumLanesHalving(eight);
            }
            foreach (var path in paths)
            {
                var lanes = (float[])start.Clone();
                var output = new float[hd];
                fixed (float* pv = values, pp = probabilities, pl = lanes, po = output)
                {
                    path(pv, first, end, pp, pl, hd, resume, null);
                    Assert.Equal(expectedLanes, lanes);
                    start.CopyTo(lanes, 0);
                    path(pv, first, end, pp, pl, hd, resume, po);
                }
                Assert.Equal(expectedOutput, output);
            }
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(40)]
    [InlineData(64)]
    [InlineData(128)]
    public void ScoreTileMatchesItsScalarForm(int hd)
    {
        var random = new Random(hd);
        var keys = new float[4 * hd];
        var queries = new float[4 * hd];
        const int stride = 24;
        var expected = new float[4 * stride];
        var actual = new float[4 * stride];
        float scale = 1f / MathF.Sqrt(hd);
        for (int trial = 0; trial < 20; trial++)
        {
            Fill(random, keys, 1);
            Fill(random, queries, 3);
            fixed (float* pk = keys, pq = queries, pe = expected, pa = actual)
            {
                KvGroupAttention.ScoreTileScalar(pk, pq, hd, pe + 5, stride, scale);
                if (CpuPaths.CanAvx2)
                    KvGroupAttention.ScoreTileAvx2(pk, pq, hd, pa + 5, stride, scale);
                else
                    KvGroupAttention.ScoreTileScalar(pk, pq, hd, pa + 5, stride, scale);
            }
            for (int t = 0; t < 4; t++)
            for (int k = 0; k < 4; k++)
            {
                float plain = F32.DotSingleAccumulatorScalar(keys.AsSpan(k * hd, hd), queries.AsSpan(t * hd, hd)) * scale;
                Assert.Equal(BitConverter.SingleToInt32Bits(plain), BitConverter.SingleToInt32Bits(expected[t * stride + 5 + k]));
            }
            Assert.Equal(expected, actual);
        }
    }

    public static TheoryData<KvCacheType, int, int, int> PagedShapes()
    {
        var data = new TheoryData<KvCacheType, int, int, int>();
        foreach (var type in new[] { KvCacheType.F16, KvCacheType.F32, KvCacheType.Q8_0 })
        foreach (int group in new[] { 8, 3 })
        {
            foreach (int length in new[] { 1, 7, 8, 9, 15, 16, 17, 33, 64, 65, 130 })
                data.Add(type, group, 1, length - 1);
            data.Add(type, group, 5, 0);
            data.Add(type, group, 6, 60);
        }
        return data;
    }

    /// <summary>
    /// Decode rows (one token, a whole group) and prompt tiles read through a block table, with lengths on both sides
    /// of the 16-position blocks, the 8 lanes and the 64-position tiles, against the per-row order.
    /// </summary>
    [Theory]
    [MemberData(nameof(PagedShapes))]
    public void PagedRunEqualsThePerRowOrderBitForBit(KvCacheType type, int group, int tokens, int start)
    {
        const int hd = 64, blockSize = 16;
        var random = new Random((int)type * 1000 + group * 100 + tokens * 7 + start);
        int heads = KvHeads * group, positions = start + tokens;
        int blocks = (positions + blockSize - 1) / blockSize;
        using var cache = new PagedKvCache(2, KvHeads * hd, blocks + 3, blockSize, type);
        int[] table = Enumerable.Range(0, blocks + 3).OrderBy(_ => random.Next()).Take(blocks).ToArray();
        var k = new float[KvHeads * hd];
        var v = new float[KvHeads * hd];
        for (int p = 0; p < positions; p++)
        {
            Fill(random, k, 1);
            Fill(random, v, 1);
            cache.Store(1, table[p / blockSize] * blockSize + p % blockSize, k, v);
        }
        var queries = new float[tokens * heads * hd];
        Fill(random, queries, 2);
        bool f16 = type == KvCacheType.F16;
        float scale = 1f / MathF.Sqrt(hd);
        var expected = PagedReference(cache, table, queries, tokens, heads, hd, group, start);

        var attention = new KvGroupAttention(hd, group, 256);
        var actual = new float[queries.Length];
        var lengths = new int[tokens];
        for (int t = 0; t < tokens; t++)
            lengths[t] = start + t + 1;
        fixed (float* q = queries, o = actual)
        {
            for (int kvHead = 0; kvHead < KvHeads; kvHead++)
            {
                var rows = new PagedKeyValueRows(cache, 1, table, kvHead, hd);
                attention.Run(ref rows, q, o, heads * hd, kvHead * group, tokens, lengths, f16, scale);
            }
        }
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"element {i}: {actual[i]:R} != {expected[i]:R}");
    }

    private delegate void Accumulate(float* values, int first, int end, float* probabilities, float* lanes, int hd, bool resume, float* output);

    [Fact]
    public void OddHeadSizesAreRefused() =>
        Assert.Throws<ArgumentException>(() => new KvGroupAttention(12, 2, 64));

    private static float[] Reference(KvCache cache, float[] queries, int tokens, int heads, int hd, int group, int start) =>
        Reference(cache.Type == KvCacheType.F16, (p, kvHead, scratch) => cache.ReadKey(1, p, kvHead * hd, hd, scratch).ToArray(),
            (p, kvHead, scratch) => cache.ReadValue(1, p, kvHead * hd, hd, scratch).ToArray(), queries, tokens, heads, hd, group, start);

    private static float[] PagedReference(PagedKvCache cache, int[] table, float[] queries, int tokens, int heads, int hd, int group, int start)
    {
        int Slot(int p) => table[p / cache.BlockSize] * cache.BlockSize + p % cache.BlockSize;
        return Reference(cache.Type == KvCacheType.F16, (p, kvHead, scratch) => cache.ReadKey(1, Slot(p), kvHead * hd, hd, scratch).ToArray(),
            (p, kvHead, scratch) => cache.ReadValue(1, Slot(p), kvHead * hd, hd, scratch).ToArray(), queries, tokens, heads, hd, group, start);
    }

    private static float[] Reference(bool f16, Func<int, int, float[], float[]> readKey, Func<int, int, float[], float[]> readValue,
        float[] queries, int tokens, int heads, int hd, int group, int start)
    {
        float scale = 1f / MathF.Sqrt(hd);
        var output = new float[queries.Length];
        var scratch = new float[hd];
        var query = new float[hd];
        for (int t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++)
        {
            int kvHead = h / group, length = start + t + 1;
            for (int d = 0; d < hd; d++)
            {
                float x = queries[(t * heads + h) * hd + d];
                query[d] = f16 ? (float)(Half)x : x;
            }
            var scores = new float[(length + 7) / 8 * 8];
            for (int p = 0; p < length; p++)
            {
                var key = readKey(p, kvHead, scratch);
                scores[p] = F32.DotSingleAccumulatorScalar(key, query) * scale;
            }
            Attention.Softmax(scores, length);
            var lanes = new float[8, hd];
            for (int p = 0; p < length; p++)
            {
                float probability = f16 ? (float)(Half)scores[p] : scores[p];
                var value = readValue(p, kvHead, scratch);
                for (int d = 0; d < hd; d++)
                    lanes[p % 8, d] = MathF.FusedMultiplyAdd(value[d], probability, lanes[p % 8, d]);
            }
            for (int d = 0; d < hd; d++)
            {
                float t0 = lanes[0, d] + lanes[4, d], t1 = lanes[1, d] + lanes[5, d];
                float t2 = lanes[2, d] + lanes[6, d], t3 = lanes[3, d] + lanes[7, d];
                output[(t * heads + h) * hd + d] = (t0 + t2) + (t1 + t3);
            }
        }
        return output;
    }

    private static LlamaConfig ConfigFor(int heads, int headDim) => new()
    {
        Architecture = "llama",
        VocabSize = 16,
        EmbeddingLength = heads * headDim,
        FeedForwardLength = 32,
        BlockCount = 2,
        HeadCount = heads,
        HeadCountKv = KvHeads,
        HeadDim = headDim,
        ContextLength = 512,
        RmsEpsilon = 1e-5f,
        RopeFreqBase = 10000f,
        RopeFreqScale = 1f,
        RopeDimensions = headDim,
        RopeOrdering = default,
    };

    private static void Fill(Random random, float[] values, float scale)
    {
        for (int i = 0; i < values.Length; i++)
            values[i] = scale * (random.NextSingle() * 2 - 1);
    }
}
