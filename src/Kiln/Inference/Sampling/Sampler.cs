using System.Numerics;
using System.Numerics.Tensors;

namespace Kiln.Inference.Sampling;

/// <summary>
/// Picks the next token from a row of logits with llama.cpp's default sampler chain (b4748, <c>common/sampling.cpp</c>):
/// penalties → top-k → top-p → min-p → temperature → dist. The disabled links of that chain (DRY, typical-p, XTC,
/// mirostat) are not implemented; with them at their defaults llama.cpp skips them too.
/// </summary>
/// <remarks>
/// <para>Semantics of each link, as in llama.cpp's <c>llama-sampling.cpp</c>:</para>
/// <list type="bullet">
/// <item>penalties: over the last <see cref="SamplerOptions.RepeatLastN"/> accepted tokens, each distinct token's logit
/// becomes <c>l &lt;= 0 ? l * repeat : l / repeat</c>, then <c>-= count * frequency + presence</c>.</item>
/// <item>top-k: keep the k highest logits (no softmax); the survivors are ranked best first.</item>
/// <item>top-p: softmax over the current candidates, keep the shortest best-first prefix whose cumulative
/// probability reaches p (at least one token, llama.cpp's <c>min_keep</c>).</item>
/// <item>min-p: keep the candidates whose logit is at least <c>max + ln(min_p)</c>, i.e. whose probability at
/// temperature 1 is at least <c>min_p</c> times the top one's.</item>
/// <item>temperature: only reshapes the final draw (<c>logit / T</c>); it runs after the truncations, so they
/// see temperature-1 probabilities.</item>
/// <item>dist: one uniform draw from xoshiro256** over the softmax of the survivors, walked in candidate order.</item>
/// </list>
/// <para>Greedy (<see cref="SamplerOptions.Temperature"/> &lt;= 0) returns the argmax after the penalties, lowest id
/// on ties; it consumes no random numbers. Rankings break logit ties by lower id.</para>
/// <para>Top-k is a bounded heap selection (O(V log k)), never a full sort of the vocabulary. With top-k disabled
/// but top-p active, the nucleus is isolated by a mass-tracking quickselect (expected O(V)), also without a sort.</para>
/// <para><see cref="Sample"/> allocates nothing: every buffer is sized to the vocabulary in the constructor.
/// A sampler is not thread-safe; use one per sequence.</para>
/// </remarks>
public sealed class Sampler
{
    private const int FirstNucleusWindow = 64;
    private const int NucleusWindowGrowth = 8;

    private readonly SamplerOptions _options;
    private readonly int _vocabSize;
    private readonly TokenCandidate[] _candidates;
    private readonly float[] _scratch;
    private readonly PenaltyHistory _history;
    private Xoshiro256StarStar _rng;

    public Sampler(SamplerOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        _options = options;
        _vocabSize = vocabSize;
        _candidates = new TokenCandidate[vocabSize];
        _scratch = new float[vocabSize];
        _history = new PenaltyHistory(options.RepeatLastN, vocabSize);
        _rng = new Xoshiro256StarStar(options.Seed);
    }

    public SamplerOptions Options => _options;

    /// <summary>Test hook: overrides the quickselect round limit of the top-p-without-top-k path (0 forces the fallback).</summary>
    internal int? NucleusRoundLimit { get; set; }

    public int VocabSize => _vocabSize;

    /// <summary>
    /// Chooses a token id. <paramref name="logits"/> must hold one value per vocabulary entry; the penalties are
    /// applied to it in place. Throws <see cref="ArgumentException"/> for a wrong length, a NaN or +∞ logit, or
    /// logits that are all −∞ (no token possible).
    /// </summary>
    public int Sample(Span<float> logits)
    {
        if (logits.Length != _vocabSize)
            throw new ArgumentException($"Expected {_vocabSize} logits (the vocabulary size), got {logits.Length}.", nameof(logits));

        SamplerOptions o = _options;
        if (o.PenaltiesEnabled && _history.Length > 0)
            _history.Apply(logits, o.RepeatPenalty, o.FrequencyPenalty, o.PresencePenalty);

        // Max propagates NaN and +inf, so this one vectorised pass also validates the row.
        float max = TensorPrimitives.Max((ReadOnlySpan<float>)logits);
        if (!float.IsFinite(max))
            throw new ArgumentException(float.IsNaN(max) ? "Logits contain NaN."
                : float.IsPositiveInfinity(max) ? "Logits contain +infinity."
                : "All logits are -infinity: no token can be sampled.", nameof(logits));

        if (o.IsGreedy)
            return FirstIndexOf(logits, max);

        int count = Truncate(logits, max, out bool ranked);
        if (o.MinP > 0f)
            count = ApplyMinP(count, max + MathF.Log(o.MinP), ranked);
        return Draw(count, max, o.Temperature);
    }

    /// <summary>Records a token (prompt or generated) for the penalties' window.</summary>
    public void Accept(int token)
    {
        if ((uint)token >= (uint)_vocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"Token id must be in [0, {_vocabSize}).");
        _history.Accept(token);
    }

    /// <summary>Back to the freshly constructed state: empty penalty window, PRNG reseeded with <see cref="SamplerOptions.Seed"/>.</summary>
    public void Reset()
    {
        _history.Clear();
        _rng = new Xoshiro256StarStar(_options.Seed);
    }

    private static int FirstIndexOf(ReadOnlySpan<float> logits, float value)
    {
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] == value)
                return i;
        }
        throw new InvalidOperationException("unreachable: the maximum is always present");
    }

    /// <summary>Top-k then top-p. Returns the candidate count; <paramref name="ranked"/> tells whether they are best first.</summary>
    private int Truncate(ReadOnlySpan<float> logits, float max, out bool ranked)
    {
        int n = _vocabSize;
        int k = _options.TopK;
        float p = _options.TopP;
        bool topP = p < 1f;

        if (k > 0 && k < n)
        {
            SelectTop(logits, k);
            ranked = true;
            return topP ? NucleusOfRanked(k, p) : k;
        }
        if (topP)
            return NucleusOfAll(logits, max, p, out ranked);

        // Nothing truncates: every token stays, in id order (the draw does not need a ranking).
        for (int i = 0; i < n; i++)
            _candidates[i] = new TokenCandidate(i, logits[i]);
        ranked = false;
        return n;
    }

    /// <summary>
    /// Leaves the <paramref name="m"/> best tokens in <c>_candidates[0..m)</c>, best first: a bounded min-heap
    /// (worst kept token at the root) over one pass of the logits, then an in-place heapsort of the heap.
    /// </summary>
    private void SelectTop(ReadOnlySpan<float> logits, int m)
    {
        Span<TokenCandidate> heap = _candidates.AsSpan(0, m);
        for (int i = 0; i < m; i++)
            heap[i] = new TokenCandidate(i, logits[i]);
        for (int i = m / 2 - 1; i >= 0; i--)
            SiftDown(heap, i, m);

        // Ids arrive in increasing order, so a newcomer tying the root's logit ranks below it: strict > suffices.
        for (int i = m; i < logits.Length; i++)
        {
            float logit = logits[i];
            if (logit > heap[0].Logit)
            {
                heap[0] = new TokenCandidate(i, logit);
                SiftDown(heap, 0, m);
            }
        }

        // Repeatedly moving the worst to the back leaves the array best first.
        for (int end = m - 1; end > 0; end--)
        {
            (heap[0], heap[end]) = (heap[end], heap[0]);
            SiftDown(heap, 0, end);
        }
    }

    private static void SiftDown(Span<TokenCandidate> heap, int i, int size)
    {
        while (true)
        {
            int worst = i;
            int left = 2 * i + 1;
            int right = left + 1;
            if (left < size && TokenCandidate.RanksBelow(heap[left], heap[worst]))
                worst = left;
            if (right < size && TokenCandidate.RanksBelow(heap[right], heap[worst]))
                worst = right;
            if (worst == i)
                return;
            (heap[i], heap[worst]) = (heap[worst], heap[i]);
            i = worst;
        }
    }

    /// <summary>
    /// Top-p over ranked candidates, in float and in the same order of operations as llama.cpp's softmax and
    /// top-p (exp relative to the first logit, sum, normalise, running sum), so the cut falls where llama.cpp's does.
    /// </summary>
    private int NucleusOfRanked(int count, float p)
    {
        Span<float> probs = _scratch.AsSpan(0, count);
        float top = _candidates[0].Logit;
        float sum = 0f;
        for (int i = 0; i < count; i++)
        {
            float e = MathF.Exp(_candidates[i].Logit - top);
            probs[i] = e;
            sum += e;
        }
        float cumulative = 0f;
        for (int i = 0; i < count; i++)
        {
            cumulative += probs[i] / sum;
            if (cumulative >= p)
                return i + 1;
        }
        return count;
    }

    /// <summary>
    /// Top-p over the whole vocabulary without sorting it. The softmax normaliser comes from one vectorised pass;
    /// then a quickselect partitions the candidates around pivots (by the ranking), keeping track of the probability
    /// mass ranked above the undecided range, until the shortest best-first set reaching p is isolated in
    /// <c>_candidates[0..m)</c> (unranked). Expected O(V); a bounded number of rounds guards against adversarial
    /// inputs, after which a growing best-first heap window finishes the job in O(V log V).
    /// </summary>
    private int NucleusOfAll(ReadOnlySpan<float> logits, float max, float p, out bool ranked)
    {
        int n = _vocabSize;
        Span<float> exps = _scratch;
        TensorPrimitives.Subtract(logits, max, exps);
        TensorPrimitives.Exp(exps, exps);
        double target = p * (double)TensorPrimitives.Sum((ReadOnlySpan<float>)exps);

        Span<TokenCandidate> c = _candidates;
        for (int i = 0; i < n; i++)
            c[i] = new TokenCandidate(i, logits[i]);

        // Invariant: [0, lo) ranks above [lo, hi), which ranks above [hi, n); the mass of [0, lo) is below target
        // and the mass of [0, hi) reaches it.
        int lo = 0, hi = n;
        double massBefore = 0;
        int maxRounds = NucleusRoundLimit ?? 2 * (BitOperations.Log2((uint)n) + 8);
        for (int round = 0; lo < hi; round++)
        {
            if (round == maxRounds)
            {
                ranked = true;
                return NucleusByGrowingWindow(logits, exps, target);
            }

            // Median-of-three pivot, parked at hi - 1 during the partition.
            int mid = lo + (hi - lo) / 2;
            int pivotAt = MedianOfThree(c, lo, mid, hi - 1);
            (c[pivotAt], c[hi - 1]) = (c[hi - 1], c[pivotAt]);
            TokenCandidate pivot = c[hi - 1];

            int store = lo;
            double mass = 0;
            for (int i = lo; i < hi - 1; i++)
            {
                if (TokenCandidate.RanksBelow(pivot, c[i]))
                {
                    (c[i], c[store]) = (c[store], c[i]);
                    mass += exps[c[store].Id];
                    store++;
                }
            }
            (c[store], c[hi - 1]) = (c[hi - 1], c[store]);

            if (massBefore + mass >= target)
            {
                hi = store;         // the cut lies among the candidates ranked above the pivot
                continue;
            }
            massBefore += mass + exps[c[store].Id];
            if (massBefore >= target)
            {
                ranked = false;
                return store + 1;   // the pivot is the last token needed
            }
            lo = store + 1;
        }
        // Only reachable through rounding (p within an ulp of 1): keep what was decided, at least one token.
        ranked = false;
        return Math.Max(lo, 1);
    }

    private static int MedianOfThree(ReadOnlySpan<TokenCandidate> c, int a, int b, int d)
    {
        if (TokenCandidate.RanksBelow(c[b], c[a]))
            (a, b) = (b, a);
        if (TokenCandidate.RanksBelow(c[d], c[b]))
        {
            b = d;
            if (TokenCandidate.RanksBelow(c[b], c[a]))
                b = a;
        }
        return b;
    }

    /// <summary>Fallback nucleus: best-first heap windows of growing size until their mass reaches the target.</summary>
    private int NucleusByGrowingWindow(ReadOnlySpan<float> logits, ReadOnlySpan<float> exps, double target)
    {
        int n = _vocabSize;
        int window = Math.Min(n, FirstNucleusWindow);
        while (true)
        {
            SelectTop(logits, window);
            double cumulative = 0;
            for (int i = 0; i < window; i++)
            {
                cumulative += exps[_candidates[i].Id];
                if (cumulative >= target)
                    return i + 1;
            }
            if (window == n)
                return n;
            window = (int)Math.Min(n, (long)window * NucleusWindowGrowth);
        }
    }

    /// <summary>Keeps candidates with logit &gt;= threshold. The top token always passes (ln(min_p) &lt;= 0).</summary>
    private int ApplyMinP(int count, float threshold, bool ranked)
    {
        Span<TokenCandidate> candidates = _candidates.AsSpan(0, count);
        if (ranked)
        {
            int i = 1;
            while (i < count && candidates[i].Logit >= threshold)
                i++;
            return i;
        }
        int kept = 0;
        for (int i = 0; i < count; i++)
        {
            if (candidates[i].Logit >= threshold)
                candidates[kept++] = candidates[i];
        }
        return kept;
    }

    /// <summary>Softmax of <c>logit / T</c> over the survivors and one draw, walking them in candidate order.</summary>
    private int Draw(int count, float max, float temperature)
    {
        Span<TokenCandidate> candidates = _candidates.AsSpan(0, count);
        Span<float> weights = _scratch.AsSpan(0, count);
        double total = 0;
        for (int i = 0; i < count; i++)
        {
            float w = MathF.Exp((candidates[i].Logit - max) / temperature);
            weights[i] = w;
            total += w;
        }

        double target = _rng.NextDouble() * total;
        double running = 0;
        int lastPositive = 0;
        for (int i = 0; i < count; i++)
        {
            if (weights[i] <= 0f)
                continue;
            running += weights[i];
            lastPositive = i;
            if (target < running)
                return candidates[i].Id;
        }
        // Only reachable through rounding at the very top of [0, total).
        return candidates[lastPositive].Id;
    }
}
