using Kiln.Models.Llama;
using Kiln.Tests.Tensors;
using Kiln.Tests.TestSupport;
using Kiln.Threading;

namespace Kiln.Tests.Models;

/// <summary>
/// <see cref="FlashAttention"/> against a plain double-precision attention over the same cached keys and values,
/// its SIMD kernels against their scalar twins, and the whole model with it against llama.cpp's greedy tokens.
/// </summary>
public unsafe class FlashAttentionTests
{
    private const int KvHeads = 2;

    /// <summary>
    /// Worst |flash − exact| allowed, values being in [−1, 1]. Float inputs, float sums: a score is a 64-term FMA chain
    /// of products up to 2 (≤ 64 · 2 · 2⁻²⁴ ≈ 8e-6 absolute even if every rounding went one way, which scales the weights
    /// by e^(8e-6) at worst), the exponentials are within 1.5 ulp, and each output is a convex combination summed over at
    /// most 137 positions plus one rescale per key tile (≤ 140 · 2⁻²⁴ ≈ 8e-6). Measured errors are below 1e-6.
    /// </summary>
    private const double Tolerance = 2e-5;

    public static TheoryData<int, int, int, int, KvCacheType> Shapes()
    {
        var data = new TheoryData<int, int, int, int, KvCacheType>();
        foreach (var type in new[] { KvCacheType.F16, KvCacheType.F32, KvCacheType.Q8_0 })
        foreach (int headDim in new[] { 64, 48 })
        foreach (int group in new[] { 1, 4 })
        foreach (int start in new[] { 0, 37 })
        foreach (int tokens in new[] { 1, 7, 33, 100 })
        {
            // Q8_0 rows are whole 32-blocks per head (LlamaContext refuses other head sizes with it)
            if (type == KvCacheType.Q8_0 && headDim % 32 != 0)
                continue;
            data.Add(tokens, headDim, group, start, type);
        }
        return data;
    }

    /// <summary>Random q, and a cache holding positions [0, start + tokens) of random keys and values.</summary>
    private sealed class Problem : IDisposable
    {
        public readonly KvCache Cache;
        public readonly float[] Queries;
        public readonly int Tokens, HeadDim, Heads, Start;

        public Problem(int tokens, int headDim, int group, int start, KvCacheType type, bool risingScores = false, int seed = 1)
        {
            Tokens = tokens;
            HeadDim = headDim;
            Heads = KvHeads * group;
            Start = start;
            var random = new Random(seed + 7 * tokens + headDim + 13 * group + start);
            Cache = new KvCache(2, start + tokens + 5, KvHeads * headDim, type);
            var k = new float[KvHeads * headDim];
            var v = new float[KvHeads * headDim];
            for (int p = 0; p < start + tokens; p++)
            {
                for (int i = 0; i < k.Length; i++)
                {
                    k[i] = random.NextSingle() * 2 - 1;
                    v[i] = random.NextSingle() * 2 - 1;
                }
                // Scores that grow along the sequence make every key tile raise the running maximum.
                if (risingScores)
                {
                    for (int h = 0; h < KvHeads; h++)
                        k[h * headDim] = p * 0.15f;
                }
                Cache.Store(1, p, k, v);
            }
            Queries = new float[tokens * Heads * headDim];
            for (int i = 0; i < Queries.Length; i++)
                Queries[i] = 2 * (random.NextSingle() * 2 - 1);
            if (risingScores)
            {
                for (int r = 0; r < tokens * Heads; r++)
                    Queries[r * headDim] = 1.5f;
            }
        }

        public float[] Run(FlashAttention attention, WorkerPool pool)
        {
            var output = new float[Queries.Length];
            fixed (float* q = Queries, o = output)
                attention.Run(pool, Cache, 1, Start, Tokens, q, o);
            return output;
        }

        /// <summary>Causal attention in double over the cache's own (widened) keys and values.</summary>
        public double[] Exact()
        {
            int hd = HeadDim, group = Heads / KvHeads, qDim = Heads * hd;
            var output = new double[Queries.Length];
            var scratch = new float[hd];
            for (int t = 0; t < Tokens; t++)
            {
                int length = Start + t + 1;
                for (int h = 0; h < Heads; h++)
                {
                    int kvHead = h / group;
                    var scores = new double[length];
                    for (int p = 0; p < length; p++)
                    {
                        var key = Cache.ReadKey(1, p, kvHead * hd, hd, scratch);
                        double dot = 0;
                        for (int d = 0; d < hd; d++)
                            dot += (double)Queries[t * qDim + h * hd + d] * key[d];
                        scores[p] = dot / Math.Sqrt(hd);
                    }
                    double max = scores.Max();
                    double sum = scores.Sum(s => Math.Exp(s - max));
                    for (int p = 0; p < length; p++)
                    {
                        double weight = Math.Exp(scores[p] - max) / sum;
                        var value = Cache.ReadValue(1, p, kvHead * hd, hd, scratch);
                        for (int d = 0; d < hd; d++)
                            output[t * qDim + h * hd + d] += weight * value[d];
                    }
                }
            }
            return output;
        }

        public void Dispose() => Cache.Dispose();
    }

    private static double WorstError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]), $"element {i} is {actual[i]}");
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }
        return worst;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AgreesWithDoublePrecisionAttention(int tokens, int headDim, int group, int start, KvCacheType type)
    {
        using var problem = new Problem(tokens, headDim, group, start, type);
        using var pool = new WorkerPool(3);
        var exact = problem.Exact();
        var simd = problem.Run(new FlashAttention(problem.Heads, KvHeads, headDim, pool.ThreadCount), pool);
        var scalar = problem.Run(new FlashAttention(problem.Heads, KvHeads, headDim, pool.ThreadCount, scalarReference: true), pool);
        double simdError = WorstError(simd, exact), scalarError = WorstError(scalar, exact);
        Assert.True(simdError <= Tolerance, $"SIMD path: worst error {simdError:E2}");
        Assert.True(scalarError <= Tolerance, $"scalar reference: worst error {scalarError:E2}");
        // The two paths differ only in summation order.
        Assert.True(WorstError(simd, Array.ConvertAll(scalar, x => (double)x)) <= Tolerance);
    }

    /// <summary>Scores rising along the sequence: every key tile raises every row's maximum and rescales its output.</summary>
    [Theory]
    [InlineData(100, 0)]
    [InlineData(20, 150)]
    public void RescalesWhenTheMaximumGrows(int tokens, int start)
    {
        using var problem = new Problem(tokens, 64, 4, start, KvCacheType.F32, risingScores: true);
        using var pool = new WorkerPool(2);
        var exact = problem.Exact();
        double error = WorstError(problem.Run(new FlashAttention(problem.Heads, KvHeads, 64, pool.ThreadCount), pool), exact);
        Assert.True(error <= Tolerance, $"worst error {error:E2}");
    }

    [Fact]
    public void ThreadCountDoesNotChangeTheResult()
    {
        using var problem = new Problem(100, 64, 4, 37, KvCacheType.F16);
        using var one = new WorkerPool(1);
        using var three = new WorkerPool(3);
        Assert.Equal(problem.Run(new FlashAttention(problem.Heads, KvHeads, 64, 1), one),
            problem.Run(new FlashAttention(problem.Heads, KvHeads, 64, 3), three));
    }

    /// <summary>
    /// Per-worker scratch is the tiles and nothing else (no score row as long as the context, no T × T matrix), and a
    /// run over a long batch deep into a long cache allocates nothing.
    /// </summary>
    [Fact]
    public void ScratchIsTileSizedAndRunsAllocateNothing()
    {
        const int headDim = 64, group = 4;
        int rows = FlashAttention.QueryTile * group;
        int expected = rows * headDim            // pre-scaled queries
            + headDim                             // one key row before it is transposed into the tile
            + 2 * FlashAttention.KeyTile * headDim  // widened keys and values
            + rows * FlashAttention.KeyTile        // scores of one key tile
            + 2 * rows                            // running maximum and sum
            + rows * headDim;                     // output accumulator
        var attention = new FlashAttention(KvHeads * group, KvHeads, headDim, 1);
        Assert.Equal(expected, attention.ScratchFloatsPerWorker);

        using var pool = new WorkerPool(1);
        using var small = new Problem(1, headDim, group, 0, KvCacheType.F16);
        using var large = new Problem(300, headDim, group, 1200, KvCacheType.F16);
        small.Run(attention, pool);
        var output = new float[large.Queries.Length];
        fixed (float* q = large.Queries, o = output)
        {
            attention.Run(pool, large.Cache, 1, large.Start, large.Tokens, q, o);
            long before = GC.GetAllocatedBytesForCurrentThread();
            attention.Run(pool, large.Cache, 1, large.Start, large.Tokens, q, o);
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(expected, attention.ScratchFloatsPerWorker);
    }

    public static TheoryData<int, int> KernelShapes()
    {
        var data = new TheoryData<int, int>();
        foreach (int width in new[] { 1, 7, 8, 17, 48, 64, 65, 96, 128 + 5 })
        foreach (int rows in new[] { 1, 9, 64 })
            data.Add(width, rows);
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelShapes))]
    public void ScoreRowPathsAgreeWithTheScalarOne(int width, int count)
    {
        // a transposed key tile: one row of `stride` positions per dimension, the positions past `count` stale
        int stride = (count + 15) / 16 * 16 + 16;
        float[] query = KernelTestData.Floats(width, width + count);
        float[] keys = KernelTestData.Floats(width * stride, 2 * width + count, 2f);
        var scalar = new float[count];
        FlashAttention.ScoreRowScalar(query, keys, stride, scalar);
        for (int j = 0; j < count; j++)
        {
            double exact = 0;
            for (int d = 0; d < width; d++)
                exact += (double)query[d] * keys[d * stride + j];
            Assert.True(Math.Abs(scalar[j] - exact) <= 1e-5 * (1 + width), $"position {j}: {scalar[j]} vs {exact}");
        }

        void Check(Action<float[]> path, string name)
        {
            // one guard element past the end: the kernels must not write beyond the scores they were given
            var scores = new float[count + 1];
            scores[count] = 12345f;
            path(scores);
            Assert.Equal(12345f, scores[count]);
            for (int j = 0; j < count; j++)
                Assert.True(Math.Abs(scores[j] - scalar[j]) <= 1e-5f * (1 + Math.Abs(scalar[j])), $"{name}, position {j}: {scores[j]} vs {scalar[j]}");
        }
        Check(s => FlashAttention.ScoreRow(query, keys, stride, s.AsSpan(0, count)), "dispatch");
        if (KernelTestData.Avx2)
            Check(s => FlashAttention.ScoreRowAvx2(query, keys, stride, s.AsSpan(0, count)), "AVX2");
        if (KernelTestData.Avx512)
            Check(s => FlashAttention.ScoreRowAvx512(query, keys, stride, s.AsSpan(0, count)), "AVX-512");
    }

    [Theory]
    [MemberData(nameof(KernelShapes))]
    public void AccumulateValuesPathsAgreeWithTheScalarOne(int width, int rows)
    {
        float[] start = KernelTestData.Floats(width, 3 * width + rows);
        float[] weights = KernelTestData.Floats(rows, 4 * width + rows);
        float[] values = KernelTestData.Floats(width * rows, 5 * width + rows);
        const float correction = 0.375f;
        var scalar = (float[])start.Clone();
        FlashAttention.AccumulateValuesScalar(scalar, correction, weights, values);
        for (int d = 0; d < width; d++)
        {
            double exact = start[d] * (double)correction;
            for (int j = 0; j < rows; j++)
                exact += (double)weights[j] * values[j * width + d];
            Assert.True(Math.Abs(scalar[d] - exact) <= 1e-5 * (1 + rows), $"column {d}: {scalar[d]} vs {exact}");
        }

        void Check(Action<float[]> path, string name)
        {
            var output = (float[])start.Clone();
            path(output);
            for (int d = 0; d < width; d++)
                Assert.True(Math.Abs(output[d] - scalar[d]) <= 1e-5f * (1 + rows), $"{name}, column {d}: {output[d]} vs {scalar[d]}");
        }
        Check(o => FlashAttention.AccumulateValues(o, correction, weights, values), "dispatch");
        if (KernelTestData.Avx2)
            Check(o => FlashAttention.AccumulateValuesAvx2(o, correction, weights, values), "AVX2");
        if (KernelTestData.Avx512)
            Check(o => FlashAttention.AccumulateValuesAvx512(o, correction, weights, values), "AVX-512");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(33)]
    [InlineData(64)]
    public void ExpRowGivesTheScalarExponentials(int n)
    {
        float[] scores = KernelTestData.Floats(n, 40 + n, 20f);
        float max = scores.Max();
        var simd = (float[])scores.Clone();
        var scalar = (float[])scores.Clone();
        float simdSum = FlashAttention.ExpRow(simd, max);
        float scalarSum = FlashAttention.ExpRowScalar(scalar, max);
        Assert.Equal(scalar, simd);
        double exactSum = 0;
        for (int j = 0; j < n; j++)
        {
            // the kernel's argument is the float difference; the rest is PolynomialExp's 1.5 ulp
            double exact = Math.Exp(scores[j] - max);
            Assert.True(Math.Abs(scalar[j] - exact) <= 3e-7 * exact + 1e-30, $"{j}: {scalar[j]} vs {exact}");
            exactSum += exact;
        }
        Assert.True(Math.Abs(simdSum - exactSum) <= 1e-6 * exactSum * n);
        Assert.True(Math.Abs(scalarSum - exactSum) <= 1e-6 * exactSum * n);
    }

    private static List<double[]> GreedyLogProbs(LlamaModel model, StoriesReferences.Case c, KvCacheType type, bool flash, out int[] tokens)
    {
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2, KvCacheType = type, FlashAttention = flash });
        var logProbs = new List<double[]>();
        tokens = StoriesReferenceTests.Greedy(context, c.PromptIds, c.GeneratedIds.Length, logProbs);
        return logProbs;
    }

    private static double WorstDifference(List<double[]> a, List<double[]> b)
    {
        double worst = 0;
        for (int pos = 0; pos < a.Count; pos++)
        {
            for (int id = 0; id < a[pos].Length; id++)
                worst = Math.Max(worst, Math.Abs(a[pos][id] - b[pos][id]));
        }
        return worst;
    }

    /// <summary>
    /// The whole model with flash attention (default F16 cache): stories260K's greedy tokens stay llama.cpp's.
    /// With an F32 cache, where the default path rounds nothing to F16 and the two differ only in summation order,
    /// every log-probability along the way is within 1e-4 of the default's (measured 1.2e-5).
    /// </summary>
    [SharedFact]
    public void StoriesGreedyTokensStayLlamaCppsAndLogProbabilitiesStayClose()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        double worst = 0;
        foreach (var c in StoriesReferences.Cases)
        {
            GreedyLogProbs(model, c, KvCacheType.F16, flash: true, out int[] tokens);
            Assert.Equal(c.GeneratedIds, tokens);
            var exact = GreedyLogProbs(model, c, KvCacheType.F32, flash: false, out _);
            var flash = GreedyLogProbs(model, c, KvCacheType.F32, flash: true, out _);
            worst = Math.Max(worst, WorstDifference(flash, exact));
        }
        Assert.True(worst <= 1e-4, $"worst |Δ log-prob| {worst:E2}");
        // Not the same code twice: flash sums in another order.
        Assert.True(worst > 0);
    }

    /// <summary>
    /// With an F16 cache the default path rounds queries and probabilities to F16 as llama.cpp's graph does, and on
    /// this tiny model those roundings alone move log-probabilities by about 2e-2 (as much as the F16 cache itself: the
    /// default path with F16 and with F32 caches differ by 1.97e-2). Flash attention does not round them, so it differs
    /// from the default by that much too (measured 1.9e-2) — but not by more than the F16 cache's own effect.
    /// </summary>
    [SharedFact]
    public void WithAnF16CacheFlashDiffersFromTheDefaultNoMoreThanF16RoundingDoes()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        var c = StoriesReferences.Cases[1];
        var exact16 = GreedyLogProbs(model, c, KvCacheType.F16, flash: false, out _);
        var exact32 = GreedyLogProbs(model, c, KvCacheType.F32, flash: false, out _);
        var flash16 = GreedyLogProbs(model, c, KvCacheType.F16, flash: true, out _);
        double roundingEffect = WorstDifference(exact16, exact32);
        double flashEffect = WorstDifference(flash16, exact16);
        Assert.True(flashEffect <= 1.5 * roundingEffect, $"flash vs default {flashEffect:E2}, F16 vs F32 cache {roundingEffect:E2}");
        Assert.True(flashEffect <= 0.05, $"flash vs default {flashEffect:E2}");
    }
}
