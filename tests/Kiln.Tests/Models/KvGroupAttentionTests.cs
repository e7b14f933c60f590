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

    [Theory]
    [InlineData(8, 0, 8)]
    [InlineData(64, 0, 70)]
    [InlineData(40, 64, 131)]
    [InlineData(16, 128, 133)]
    public void ValueAccumulationAndLaneReductionMatchTheirScalarForms(int hd, int first, int end)
    {
        var random = new Random(hd + first + end);
        var values = new float[(end - first) * hd];
        var probabilities = new float[end];
        var lanes = new float[8 * hd];
        Fill(random, values, 1);
        Fill(random, probabilities, 1);
        Fill(random, lanes, 1);
        var scalarLanes = (float[])lanes.Clone();
        var output = new float[hd];
        fixed (float* pv = values, pp = probabilities, pl = lanes, ps = scalarLanes, po = output)
        {
            KvGroupAttention.AccumulateValues(pv, first, end, pp, pl, hd);
            KvGroupAttention.AccumulateValuesScalar(pv, first, end, pp, ps, hd);
            Assert.Equal(scalarLanes, lanes);
            KvGroupAttention.ReduceLanes(pl, hd, po);
        }
        var eight = new float[8];
        for (int d = 0; d < hd; d++)
        {
            for (int l = 0; l < 8; l++)
                eight[l] = lanes[l * hd + d];
            Assert.Equal(F32.SumLanesHalving(eight), output[d]);
        }
    }

    [Fact]
    public void OddHeadSizesAreRefused() =>
        Assert.Throws<ArgumentException>(() => new KvGroupAttention(12, 2, 64));

    private static float[] Reference(KvCache cache, float[] queries, int tokens, int heads, int hd, int group, int start)
    {
        bool f16 = cache.Type == KvCacheType.F16;
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
                var key = cache.ReadKey(1, p, kvHead * hd, hd, scratch).ToArray();
                scores[p] = F32.DotSingleAccumulatorScalar(key, query) * scale;
            }
            Attention.Softmax(scores, length);
            var lanes = new float[8, hd];
            for (int p = 0; p < length; p++)
            {
                float probability = f16 ? (float)(Half)scores[p] : scores[p];
                var value = cache.ReadValue(1, p, kvHead * hd, hd, scratch);
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
