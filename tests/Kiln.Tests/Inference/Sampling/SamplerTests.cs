using Kiln.Inference.Sampling;

namespace Kiln.Tests.Inference.Sampling;

public class SamplerTests
{
    private static readonly SamplerOptions NoTruncation = new() { TopK = 0, TopP = 1f, MinP = 0f, Temperature = 1f, Seed = 11 };

    private static float[] RandomLogits(int seed, int n, double scale = 3.0)
    {
        var random = new Random(seed);
        var logits = new float[n];
        for (int i = 0; i < n; i++)
            logits[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return logits;
    }

    /// <summary>Reference argmax, lowest index on ties.</summary>
    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    /// <summary>Reference softmax in double of logit / T over the ids in <paramref name="keep"/> (all when null).</summary>
    private static double[] Softmax(float[] logits, double temperature, ISet<int>? keep = null)
    {
        double max = double.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            if (keep is null || keep.Contains(i))
                max = Math.Max(max, logits[i]);
        }
        var p = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (keep is null || keep.Contains(i))
            {
                p[i] = Math.Exp((logits[i] - max) / temperature);
                sum += p[i];
            }
        }
        for (int i = 0; i < p.Length; i++)
            p[i] /= sum;
        return p;
    }

    private static int[] Draw(Sampler sampler, float[] logits, int draws)
    {
        var counts = new int[logits.Length];
        var row = new float[logits.Length];
        for (int i = 0; i < draws; i++)
        {
            logits.CopyTo(row, 0);
            counts[sampler.Sample(row)]++;
        }
        return counts;
    }

    /// <summary>
    /// Pearson chi-square of observed counts against expected probabilities, checked against a loose bound
    /// (df + 6·sqrt(2·df), far in the tail) so that only a wrong distribution fails. Seeds are fixed, so it is deterministic.
    /// </summary>
    private static void AssertMatchesDistribution(int[] counts, double[] expected)
    {
        long n = counts.Sum(c => (long)c);
        double chi2 = 0;
        int df = -1;
        for (int i = 0; i < counts.Length; i++)
        {
            if (expected[i] == 0)
            {
                Assert.True(counts[i] == 0, $"token {i} has probability 0 but was drawn {counts[i]} times");
                continue;
            }
            double e = expected[i] * n;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
            df++;
        }
        double bound = df + 6 * Math.Sqrt(2.0 * Math.Max(df, 1));
        Assert.True(chi2 < bound, $"chi-square {chi2:F1} exceeds {bound:F1} (df {df})");
    }

    [Fact]
    public void Greedy_PicksArgmax_LowestIdOnTies()
    {
        var logits = RandomLogits(1, 1000);
        logits[700] = 10f;
        logits[321] = 10f;
        logits[999] = 10f;
        var sampler = new Sampler(new SamplerOptions { Temperature = 0f }, logits.Length);
        Assert.Equal(321, sampler.Sample(logits.ToArray()));

        for (int seed = 2; seed < 22; seed++)
        {
            var row = RandomLogits(seed, 1000);
            Assert.Equal(ArgMax(row), sampler.Sample(row.ToArray()));
        }
    }

    [Fact]
    public void SameSeed_SameSequence_DifferentSeeds_Differ()
    {
        var logits = RandomLogits(3, 2000, scale: 1.0);
        int[] Run(ulong seed)
        {
            var s = new Sampler(new SamplerOptions { Seed = seed }, logits.Length);
            var row = new float[logits.Length];
            var ids = new int[200];
            for (int i = 0; i < ids.Length; i++)
            {
                logits.CopyTo(row, 0);
                ids[i] = s.Sample(row);
            }
            return ids;
        }
        var a = Run(42);
        Assert.Equal(a, Run(42));
        Assert.NotEqual(a, Run(43));
        Assert.NotEqual(Run(43), Run(44));
        // The draws really vary within a sequence (not a constant answer).
        Assert.True(a.Distinct().Count() > 10);
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(1f)]
    [InlineData(5f)]
    [InlineData(1000f)]
    public void TopK1_EqualsGreedy_AtAnyTemperature(float temperature)
    {
        var sampler = new Sampler(new SamplerOptions { TopK = 1, Temperature = temperature, Seed = 5 }, 3000);
        for (int seed = 0; seed < 30; seed++)
        {
            var row = RandomLogits(100 + seed, 3000);
            if (seed % 3 == 0)
                row[2999] = row[17] = row.Max() + 1f; // a tie: the lower id must win, as in greedy
            Assert.Equal(ArgMax(row), sampler.Sample(row.ToArray()));
        }
    }

    [Fact]
    public void TopK_KeepsExactlyTheKBest_TiesBrokenByLowerId()
    {
        float[] logits = [1f, 5f, 3f, 5f, 3f, 0f, -2f];
        // Ranking: id1 (5), id3 (5), id2 (3), id4 (3), ... so the top 3 are {1, 3, 2}.
        // A huge temperature makes the draw nearly uniform over whatever survives truncation.
        var sampler = new Sampler(new SamplerOptions { TopK = 3, TopP = 1f, MinP = 0f, Temperature = 1e6f, Seed = 9 }, logits.Length);
        var counts = Draw(sampler, logits, 3000);
        Assert.Equal(new[] { 0, 1, 1, 1, 0, 0, 0 }, counts.Select(c => c > 0 ? 1 : 0).ToArray());
        Assert.All(new[] { 1, 2, 3 }, id => Assert.InRange(counts[id], 850, 1150));
    }

    /// <summary>Brute-force nucleus: sort by probability (double), take the shortest prefix with mass >= p.</summary>
    private static HashSet<int> ReferenceNucleus(float[] logits, double p, out double marginBelow, out double marginAbove)
    {
        var probs = Softmax(logits, 1.0);
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => probs[i]).ThenBy(i => i).ToArray();
        double cumulative = 0;
        var set = new HashSet<int>();
        foreach (int id in order)
        {
            double before = cumulative;
            cumulative += probs[id];
            set.Add(id);
            if (cumulative >= p)
            {
                marginBelow = p - before;
                marginAbove = cumulative - p;
                return set;
            }
        }
        marginBelow = marginAbove = 1;
        return set;
    }

    [Theory]
    [InlineData(0, 0.5f)]   // top-k disabled: the nucleus comes from the whole vocabulary
    [InlineData(0, 0.9f)]
    [InlineData(30, 0.8f)]  // top-k first, then top-p over the 30 survivors
    public void TopP_RestrictsToSmallestSetReachingP_WithRenormalisedProbabilities(int topK, float topP)
    {
        var logits = RandomLogits(17, 60, scale: 2.5);
        HashSet<int> expected;
        if (topK > 0)
        {
            var topIds = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(topK).ToHashSet();
            var masked = logits.Select((l, i) => topIds.Contains(i) ? l : float.NegativeInfinity).ToArray();
            expected = ReferenceNucleus(masked, topP, out double below, out double above);
            Assert.True(below > 1e-4 && above > 1e-4, "test data too close to the top-p boundary");
        }
        else
        {
            expected = ReferenceNucleus(logits, topP, out double below, out double above);
            Assert.True(below > 1e-4 && above > 1e-4, "test data too close to the top-p boundary");
        }
        Assert.InRange(expected.Count, 3, 40);

        var sampler = new Sampler(new SamplerOptions { TopK = topK, TopP = topP, MinP = 0f, Temperature = 1f, Seed = 123 }, logits.Length);
        var counts = Draw(sampler, logits, 40_000);
        AssertMatchesDistribution(counts, Softmax(logits, 1.0, expected));
        Assert.All(expected, id => Assert.True(counts[id] > 0));
    }

    [Fact]
    public void TopP_OverLargeFlatVocabulary_GrowsTheWindow_AndKeepsExactlyTheNucleus()
    {
        // A flat distribution over 1500 tokens: the nucleus for p = 0.3 holds hundreds of tokens, more than the
        // fallback's first heap window, so that window must grow. A huge temperature then spreads draws evenly over it.
        var logits = RandomLogits(23, 1500, scale: 0.5);
        var expected = ReferenceNucleus(logits, 0.3, out double below, out double above);
        Assert.True(below > 1e-5 && above > 1e-5);
        Assert.InRange(expected.Count, 100, 1000);

        foreach (int? roundLimit in new int?[] { null, 0 })
        {
            // null: the quickselect path; 0: its heap-window fallback.
            var sampler = new Sampler(new SamplerOptions { TopK = 0, TopP = 0.3f, MinP = 0f, Temperature = 1e6f, Seed = 77 }, logits.Length)
            {
                NucleusRoundLimit = roundLimit,
            };
            var counts = Draw(sampler, logits, 25 * expected.Count);
            var drawn = Enumerable.Range(0, logits.Length).Where(i => counts[i] > 0).ToHashSet();
            Assert.True(expected.SetEquals(drawn), $"round limit {roundLimit}: drew {drawn.Count} distinct ids, nucleus has {expected.Count}");
        }
    }

    [Fact]
    public void MinP_KeepsTokensAtLeastMinPTimesTheTopProbability()
    {
        double[] probs = [0.05, 0.4, 0.1, 0.15, 0.2, 0.1];
        var logits = probs.Select(p => (float)Math.Log(p)).ToArray();
        // min_p 0.3: the bar is 0.3 * 0.4 = 0.12, so ids 1 (0.4), 3 (0.15) and 4 (0.2) survive.
        var sampler = new Sampler(new SamplerOptions { TopK = 0, TopP = 1f, MinP = 0.3f, Temperature = 1f, Seed = 4 }, logits.Length);
        var counts = Draw(sampler, logits, 30_000);
        AssertMatchesDistribution(counts, [0, 0.4 / 0.75, 0, 0.15 / 0.75, 0.2 / 0.75, 0]);

        // The same through the ranked path (top-k active but not binding).
        var ranked = new Sampler(new SamplerOptions { TopK = 5, TopP = 1f, MinP = 0.3f, Temperature = 1f, Seed = 4 }, logits.Length);
        AssertMatchesDistribution(Draw(ranked, logits, 30_000), [0, 0.4 / 0.75, 0, 0.15 / 0.75, 0.2 / 0.75, 0]);
    }

    [Theory]
    [InlineData(0.5f)]
    [InlineData(1f)]
    [InlineData(2f)]
    public void Temperature_ScalesLogitsBeforeTheDraw(float temperature)
    {
        float[] logits = [1f, 2f, 3f, 0f, -1f, 2.5f];
        var sampler = new Sampler(NoTruncation with { Temperature = temperature }, logits.Length);
        AssertMatchesDistribution(Draw(sampler, logits, 40_000), Softmax(logits, temperature));
    }

    [Fact]
    public void MaskedLogits_AreNeverDrawn()
    {
        var logits = RandomLogits(8, 50, scale: 0.1);
        for (int i = 0; i < 50; i += 2)
            logits[i] = float.NegativeInfinity;
        var sampler = new Sampler(NoTruncation with { Temperature = 3f }, logits.Length);
        var counts = Draw(sampler, logits, 5000);
        for (int i = 0; i < 50; i += 2)
            Assert.Equal(0, counts[i]);
    }

    [Fact]
    public void Penalties_FollowLlamaCppArithmetic()
    {
        // Hand-computed: repeat 2, frequency 0.5, presence 0.25, window of the last 4 accepted tokens.
        var options = new SamplerOptions { Temperature = 0f, RepeatPenalty = 2f, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f, RepeatLastN = 4 };
        var sampler = new Sampler(options, 6);
        foreach (int token in new[] { 5, 0, 1, 0, 0 })
            sampler.Accept(token);
        // Window = [0, 1, 0, 0]: token 5 has left it; counts 0 -> 3, 1 -> 1.
        float[] logits = [2f, -1f, 0.5f, 3f, 0f, 1f];
        int chosen = sampler.Sample(logits);
        // id 0: 2 > 0 so 2 / 2 = 1, then 1 - (3 * 0.5 + 0.25) = -0.75
        // id 1: -1 <= 0 so -1 * 2 = -2, then -2 - (1 * 0.5 + 0.25) = -2.75
        Assert.Equal(new[] { -0.75f, -2.75f, 0.5f, 3f, 0f, 1f }, logits);
        Assert.Equal(3, chosen);
    }

    [Fact]
    public void RepeatPenalty_ZeroLogitIsMultiplied_AndPenaltyCanChangeTheGreedyChoice()
    {
        var sampler = new Sampler(new SamplerOptions { Temperature = 0f, RepeatPenalty = 1.1f, RepeatLastN = 8 }, 3);
        sampler.Accept(0);
        sampler.Accept(2);
        float[] logits = [3f, 2.9f, 0f];
        Assert.Equal(1, sampler.Sample(logits)); // 3 / 1.1 = 2.727 < 2.9
        Assert.Equal(3f / 1.1f, logits[0]);
        Assert.Equal(0f, logits[2]);              // 0 * 1.1

        float[] negative = [-3f, -4f, -1f];
        sampler.Sample(negative);
        Assert.Equal(-3f * 1.1f, negative[0]);
        Assert.Equal(-1f * 1.1f, negative[2]);
        Assert.Equal(-4f, negative[1]);
    }

    [Fact]
    public void Penalties_Disabled_LeaveLogitsUntouched()
    {
        var sampler = new Sampler(new SamplerOptions { Temperature = 0f, RepeatPenalty = 1.5f, RepeatLastN = 0 }, 3);
        sampler.Accept(0);
        float[] logits = [3f, 2f, 1f];
        Assert.Equal(0, sampler.Sample(logits));
        Assert.Equal(new[] { 3f, 2f, 1f }, logits);
    }

    [Fact]
    public void Reset_ClearsPenaltyWindow_AndReseeds()
    {
        var logits = RandomLogits(31, 500, scale: 1.0);
        var options = new SamplerOptions { Seed = 99, RepeatPenalty = 1.3f, PresencePenalty = 0.5f };
        var fresh = new Sampler(options, logits.Length);
        var reused = new Sampler(options, logits.Length);
        for (int i = 0; i < 50; i++)
            reused.Accept(reused.Sample(logits.ToArray()));
        reused.Reset();
        for (int i = 0; i < 50; i++)
        {
            int a = fresh.Sample(logits.ToArray());
            int b = reused.Sample(logits.ToArray());
            Assert.Equal(a, b);
            fresh.Accept(a);
            reused.Accept(b);
        }
    }

    [Fact]
    public void Sample_RejectsBadLogits()
    {
        var sampler = new Sampler(new SamplerOptions(), 4);
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[3]));
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[5]));
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => sampler.Sample(new[] { 1f, float.NaN, 0f, 0f })).Message);
        Assert.Contains("infinity", Assert.Throws<ArgumentException>(() => sampler.Sample(new[] { 1f, float.PositiveInfinity, 0f, 0f })).Message);
        Assert.Contains("-infinity", Assert.Throws<ArgumentException>(() => sampler.Sample(Enumerable.Repeat(float.NegativeInfinity, 4).ToArray())).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Accept(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Accept(-1));
    }

    public static TheoryData<string, SamplerOptions> AllocationCases => new()
    {
        { "defaults (top-k 40)", new SamplerOptions { Seed = 1 } },
        { "top-p without top-k", new SamplerOptions { TopK = 0, Seed = 1 } },
        { "top-p without top-k, min-p off", new SamplerOptions { TopK = 0, MinP = 0f, TopP = 0.5f, Seed = 1 } },
        { "no truncation", new SamplerOptions { TopK = 0, TopP = 1f, MinP = 0f, Seed = 1 } },
        { "greedy", new SamplerOptions { Temperature = 0f } },
        { "penalties", new SamplerOptions { RepeatPenalty = 1.1f, FrequencyPenalty = 0.2f, PresencePenalty = 0.1f, Seed = 1 } },
    };

    [Theory]
    [MemberData(nameof(AllocationCases))]
    public void Sample_AllocatesNothing(string name, SamplerOptions options)
    {
        const int vocab = 32000;
        var logits = RandomLogits(5, vocab);
        var row = new float[vocab];
        var sampler = new Sampler(options, vocab);
        logits.CopyTo(row, 0);
        // Warm-up past tiered compilation's call-count threshold, and give the background tier-up time,
        // so the runtime's one-time bookkeeping does not land inside the measurement.
        for (int i = 0; i < 200; i++)
        {
            logits.CopyTo(row, 0);
            sampler.Accept(sampler.Sample(row));
        }
        Thread.Sleep(300);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            logits.CopyTo(row, 0);
            sampler.Accept(sampler.Sample(row));
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"{name}: {allocated} bytes allocated over 1000 calls");
    }
}
