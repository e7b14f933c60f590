using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kiln.Tensors;

namespace Kiln.Models.Llama;

/// <summary>
/// Exact causal attention, in llama.cpp's batch order (<see cref="Attention"/>'s tinyBLAS path), for a tile of
/// query rows that read the same KV head of one sequence: some consecutive tokens × the query heads of one group.
/// What the per-row form did once per (row, position) — converting an F16 key or value to floats, a call per
/// dot — happens here once per (tile, position), and the K·Q entries come four keys × four queries at a time.
/// Every output keeps its bits: each score is <see cref="F32.DotSingleAccumulator"/>'s chain (through
/// <see cref="ScoreTileAvx2"/>), softmax is <see cref="Attention.Softmax"/>, and position p still feeds lane p mod 8
/// of its row's V·P accumulators in increasing p. One instance is one worker's scratch.
/// </summary>
internal sealed unsafe class KvGroupAttention
{
    private const int Lanes = F32.Lanes;

    /// <summary>Positions converted per step: a 64 × headDim tile of keys or values stays in L1/L2.</summary>
    public const int PositionTile = 64;

    // A tile's score rows are materialized (the exact form needs whole rows for its softmax); bounding rows ×
    // context keeps that scratch near 1 MiB per worker whatever the context length.
    private const int ScoreBudgetFloats = 1 << 18;
    private const int MaxTokensPerTile = 16;

    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly int _scoreStride;
    private readonly float[] _queries;
    private readonly float[] _scores;
    private readonly float[] _lanes;
    private readonly float[] _keys;
    private readonly float[] _values;
    private readonly int[] _lengths;

    public KvGroupAttention(int headDim, int groupSize, int contextLength)
    {
        if (headDim % Lanes != 0)
            throw new ArgumentException($"the batch order needs a head size that is a multiple of {Lanes}", nameof(headDim));
        _headDim = headDim;
        _groupSize = groupSize;
        _scoreStride = (contextLength + Lanes - 1) / Lanes * Lanes;
        TokensPerTile = TokensFor(groupSize, contextLength);
        int rows = TokensPerTile * groupSize;
        // Query and score rows come four at a time (the 4 × 4 K·Q tiles); the rows past the last are scratch.
        int paddedRows = (rows + 3) / 4 * 4;
        _queries = new float[paddedRows * headDim];
        _scores = new float[paddedRows * _scoreStride];
        _lanes = new float[rows * Lanes * headDim];
        _keys = new float[PositionTile * headDim];
        _values = new float[PositionTile * headDim];
        _lengths = new int[rows];
    }

    /// <summary>The most tokens one <see cref="Run{TRows}"/> call takes.</summary>
    public int TokensPerTile { get; }

    public static int TokensFor(int groupSize, int contextLength) =>
        Math.Clamp(ScoreBudgetFloats / (groupSize * (contextLength + Lanes)), 1, MaxTokensPerTile);

    /// <summary>
    /// For tokens [0, <paramref name="tokens"/>) and query heads [firstHead, firstHead + groupSize): output =
    /// softmax(q·Kᵀ · scale) · V over positions [0, lengths[t]). Token t's heads start at q + t·stride (and
    /// output + t·stride), head h at h·headDim within. With an F16 cache the query and the probabilities are
    /// rounded to F16, as llama.cpp's F16 products do.
    /// </summary>
    public void Run<TRows>(ref TRows kv, float* q, float* output, int stride, int firstHead, int tokens,
        ReadOnlySpan<int> lengths, bool f16, float scale) where TRows : struct, IKeyValueRows
    {
        if (tokens < 1 || tokens > TokensPerTile || lengths.Length < tokens)
            throw new ArgumentOutOfRangeException(nameof(tokens), $"1..{TokensPerTile} tokens with their lengths are needed");
        int hd = _headDim;
        int rows = tokens * _groupSize;
        int longest = 0;
        foreach (int length in lengths[..tokens])
            longest = Math.Max(longest, length);
        // The first tile's keys and values start on their way from memory while the queries are rounded and the keys
        // converted (a no-op when the caller already asked for them); each later tile is asked for one tile ahead.
        kv.Prefetch(values: false, 0, Math.Min(longest, PositionTile));
        kv.Prefetch(values: true, 0, Math.Min(longest, PositionTile));
        int maxLength = 0;
        for (int r = 0; r < rows; r++)
        {
            int length = lengths[r / _groupSize];
            if (length < 1 || length > _scoreStride)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"length {length} is outside 1..{_scoreStride}");
            _lengths[r] = length;
            maxLength = Math.Max(maxLength, length);
            float* source = q + (long)(r / _groupSize) * stride + (firstHead + r % _groupSize) * hd;
            var query = _queries.AsSpan(r * hd, hd);
            if (f16)
                F16.RoundActivations(new ReadOnlySpan<float>(source, hd), query);
            else
            {
                new ReadOnlySpan<float>(source, hd).CopyTo(query);
            }
        }

        Scores(ref kv, rows, maxLength, scale);

        for (int r = 0; r < rows; r++)
        {
            int length = _lengths[r];
            var scores = _scores.AsSpan(r * _scoreStride, (length + Lanes - 1) / Lanes * Lanes);
            Attention.Softmax(scores, length);
            if (f16)
                F16.RoundActivations(scores[..length], scores[..length]);
        }

        WeightedValues(ref kv, rows, maxLength, output, stride, firstHead);
    }

    private void Scores<TRows>(ref TRows kv, int rows, int maxLength, float scale) where TRows : struct, IKeyValueRows
    {
        int hd = _headDim;
        bool avx2 = CpuPaths.CanAvx2;
        fixed (float* keys = _keys, queries = _queries, scores = _scores)
        {
            for (int p0 = 0; p0 < maxLength; p0 += PositionTile)
            {
                int count = Math.Min(PositionTile, maxLength - p0);
                if (p0 + PositionTile < maxLength)
                    kv.Prefetch(values: false, p0 + PositionTile, Math.Min(PositionTile, maxLength - p0 - PositionTile));
                kv.ReadKeys(p0, count, _keys.AsSpan(0, count * hd));
                for (int r0 = 0; r0 < rows; r0 += 4)
                {
                    int rowsLength = 0;
                    for (int r = r0; r < Math.Min(r0 + 4, rows); r++)
                        rowsLength = Math.Max(rowsLength, _lengths[r]);
                    int end = Math.Min(p0 + count, rowsLength);
                    // Entries past a row's own length — up to the next multiple of four, or as far as a neighbouring
                    // row needs — and whole padding rows are computed from whatever the scratch holds, then masked
                    // by the softmax or never read, as the per-row form never computed them at all.
                    float* query = queries + r0 * hd;
                    float* scoreRows = scores + (long)r0 * _scoreStride;
                    for (int p = p0; p < end; p += 4)
                    {
                        if (avx2)
                            ScoreTileAvx2(keys + (p - p0) * hd, query, hd, scoreRows + p, _scoreStride, scale);
                        else
                            ScoreTileScalar(keys + (p - p0) * hd, query, hd, scoreRows + p, _scoreStride, scale);
                    }
                }
            }
        }
    }

    /// <summary>
    /// scores[t·scoreStride + k] = <see cref="F32.DotSingleAccumulator"/>(key k, query t) · scale for four
    /// consecutive keys and four queries (each <paramref name="hd"/> floats, rows hd apart): sixteen FMA chains side
    /// by side, as <see cref="F32.DotSingleAccumulator4x4"/>, their lane sums taken four at a time by a transpose.
    /// </summary>
    internal static void ScoreTileAvx2(float* keys, float* queries, int hd, float* scores, int scoreStride, float scale)
    {
        Vector256<float> c00 = Vector256<float>.Zero, c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        Vector256<float> c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        for (int i = 0; i < hd; i += Lanes)
        {
            Vector256<float> k0 = Vector256.Load(keys + i), k1 = Vector256.Load(keys + hd + i);
            Vector256<float> k2 = Vector256.Load(keys + 2 * hd + i), k3 = Vector256.Load(keys + 3 * hd + i);
            Vector256<float> x = Vector256.Load(queries + i);
            c00 = Vector256.FusedMultiplyAdd(k0, x, c00); c01 = Vector256.FusedMultiplyAdd(k1, x, c01);
            c02 = Vector256.FusedMultiplyAdd(k2, x, c02); c03 = Vector256.FusedMultiplyAdd(k3, x, c03);
            x = Vector256.Load(queries + hd + i);
            c10 = Vector256.FusedMultiplyAdd(k0, x, c10); c11 = Vector256.FusedMultiplyAdd(k1, x, c11);
            c12 = Vector256.FusedMultiplyAdd(k2, x, c12); c13 = Vector256.FusedMultiplyAdd(k3, x, c13);
            x = Vector256.Load(queries + 2 * hd + i);
            c20 = Vector256.FusedMultiplyAdd(k0, x, c20); c21 = Vector256.FusedMultiplyAdd(k1, x, c21);
            c22 = Vector256.FusedMultiplyAdd(k2, x, c22); c23 = Vector256.FusedMultiplyAdd(k3, x, c23);
            x = Vector256.Load(queries + 3 * hd + i);
            c30 = Vector256.FusedMultiplyAdd(k0, x, c30); c31 = Vector256.FusedMultiplyAdd(k1, x, c31);
            c32 = Vector256.FusedMultiplyAdd(k2, x, c32); c33 = Vector256.FusedMultiplyAdd(k3, x, c33);
        }
        Vector128<float> factor = Vector128.Create(scale);
        (SumLanesHalving4(c00, c01, c02, c03) * factor).Store(scores);
        (SumLanesHalving4(c10, c11, c12, c13) * factor).Store(scores + scoreStride);
        (SumLanesHalving4(c20, c21, c22, c23) * factor).Store(scores + 2 * scoreStride);
        (SumLanesHalving4(c30, c31, c32, c33) * factor).Store(scores + 3 * scoreStride);
    }

    /// <summary>Reference for <see cref="ScoreTileAvx2"/>, one <see cref="F32.DotSingleAccumulatorScalar"/> per entry.</summary>
    internal static void ScoreTileScalar(float* keys, float* queries, int hd, float* scores, int scoreStride, float scale)
    {
        for (int t = 0; t < 4; t++)
        {
            for (int k = 0; k < 4; k++)
                scores[t * scoreStride + k] = F32.DotSingleAccumulatorScalar(new ReadOnlySpan<float>(keys + k * hd, hd),
                    new ReadOnlySpan<float>(queries + t * hd, hd)) * scale;
        }
    }

    /// <summary>
    /// Element k = <see cref="F32.SumLanesHalving(Vector256{float})"/> of the k-th vector: each vector's halves are
    /// added, as there, and the four resulting quadruples transposed so that their last two additions run four wide.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> SumLanesHalving4(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3)
    {
        Vector128<float> s0 = v0.GetLower() + v0.GetUpper(), s1 = v1.GetLower() + v1.GetUpper();
        Vector128<float> s2 = v2.GetLower() + v2.GetUpper(), s3 = v3.GetLower() + v3.GetUpper();
        Vector128<float> low01 = Sse.UnpackLow(s0, s1), high01 = Sse.UnpackHigh(s0, s1);
        Vector128<float> low23 = Sse.UnpackLow(s2, s3), high23 = Sse.UnpackHigh(s2, s3);
        Vector128<float> e0 = Sse.MoveLowToHigh(low01, low23), e1 = Sse.MoveHighToLow(low23, low01);
        Vector128<float> e2 = Sse.MoveLowToHigh(high01, high23), e3 = Sse.MoveHighToLow(high23, high01);
        return (e0 + e2) + (e1 + e3);
    }

    private void WeightedValues<TRows>(ref TRows kv, int rows, int maxLength, float* output, int stride, int firstHead)
        where TRows : struct, IKeyValueRows
    {
        int hd = _headDim;
        fixed (float* lanes = _lanes, values = _values, scores = _scores)
        {
            for (int p0 = 0; p0 < maxLength; p0 += PositionTile)
            {
                int count = Math.Min(PositionTile, maxLength - p0);
                if (p0 + PositionTile < maxLength)
                    kv.Prefetch(values: true, p0 + PositionTile, Math.Min(PositionTile, maxLength - p0 - PositionTile));
                kv.ReadValues(p0, count, _values.AsSpan(0, count * hd));
                for (int r = 0; r < rows; r++)
                {
                    int end = Math.Min(p0 + count, _lengths[r]);
                    if (end <= p0)
                        continue;
                    // A row whose positions end in this tile is reduced straight into the output; only a row that
                    // goes on keeps its lanes in memory until the next tile.
                    float* destination = end == _lengths[r]
                        ? output + (long)(r / _groupSize) * stride + (firstHead + r % _groupSize) * hd
                        : null;
                    float* rowLanes = lanes + (long)r * Lanes * hd;
                    float* probabilities = scores + (long)r * _scoreStride;
                    AccumulateValues(values, p0, end, probabilities, rowLanes, hd, p0 > 0, destination);
                }
            }
        }
    }

    /// <summary>
    /// lanes[p mod 8][d] += probabilities[p] · V[p - first][d] for p in [first, end), in increasing p for each
    /// lane (first is a multiple of 8), the lanes starting from +0 unless <paramref name="resume"/>. With an
    /// <paramref name="output"/>, the lanes are then reduced into it as <see cref="ReduceLanesScalar"/> does (and
    /// <paramref name="lanes"/> is left as scratch); without one they are stored back. Vectorized across d — each d
    /// is its own sum, so the vector width does not change a bit — the eight lanes' accumulators in registers over
    /// all positions.
    /// </summary>
    internal static void AccumulateValues(float* values, int first, int end, float* probabilities, float* lanes, int hd,
        bool resume, float* output)
    {
        if (CpuPaths.PreferAvx512 && hd % Vector512<float>.Count == 0)
            AccumulateValuesAvx512(values, first, end, probabilities, lanes, hd, resume, output);
        else if (CpuPaths.CanAvx2)
            AccumulateValuesAvx2(values, first, end, probabilities, lanes, hd, resume, output);
        else
            AccumulateValuesScalar(values, first, end, probabilities, lanes, hd, resume, output);
    }

    internal static void AccumulateValuesAvx2(float* values, int first, int end, float* probabilities, float* lanes, int hd,
        bool resume, float* output)
    {
        int groups = (end - first) / Lanes;
        int tail = end - first - groups * Lanes;
        // Offsets of the next seven positions' rows, hoisted: the loop is short enough that address arithmetic
        // would otherwise cost as much as the FMAs.
        nint h1 = hd, h2 = 2 * h1, h3 = 3 * h1, h4 = 4 * h1, h5 = 5 * h1, h6 = 6 * h1, h7 = 7 * h1, h8 = 8 * h1;
        for (int c = 0; c < hd; c += Lanes)
        {
            Vector256<float> a0, a1, a2, a3, a4, a5, a6, a7;
            float* l = lanes + c;
            if (resume)
            {
                a0 = Vector256.Load(l); a1 = Vector256.Load(l + h1); a2 = Vector256.Load(l + h2); a3 = Vector256.Load(l + h3);
                a4 = Vector256.Load(l + h4); a5 = Vector256.Load(l + h5); a6 = Vector256.Load(l + h6); a7 = Vector256.Load(l + h7);
            }
            else
            {
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector256<float>.Zero;
            }
            float* v = values + c;
            float* pr = probabilities + first;
            for (int g = 0; g < groups; g++, v += h8, pr += Lanes)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(pr[0]), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h1), Vector256.Create(pr[1]), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h2), Vector256.Create(pr[2]), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h3), Vector256.Create(pr[3]), a3);
                a4 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h4), Vector256.Create(pr[4]), a4);
                a5 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h5), Vector256.Create(pr[5]), a5);
                a6 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h6), Vector256.Create(pr[6]), a6);
                a7 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h7), Vector256.Create(pr[7]), a7);
            }
            // The last partial group feeds lanes 0..tail-1, in the order the full groups did.
            if (tail > 0) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(pr[0]), a0);
            if (tail > 1) a1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h1), Vector256.Create(pr[1]), a1);
            if (tail > 2) a2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h2), Vector256.Create(pr[2]), a2);
            if (tail > 3) a3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h3), Vector256.Create(pr[3]), a3);
            if (tail > 4) a4 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h4), Vector256.Create(pr[4]), a4);
            if (tail > 5) a5 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h5), Vector256.Create(pr[5]), a5);
            if (tail > 6) a6 = Vector256.FusedMultiplyAdd(Vector256.Load(v + h6), Vector256.Create(pr[6]), a6);
            if (output != null)
            {
                (((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))).Store(output + c);
            }
            else
            {
                a0.Store(l); a1.Store(l + h1); a2.Store(l + h2); a3.Store(l + h3);
                a4.Store(l + h4); a5.Store(l + h5); a6.Store(l + h6); a7.Store(l + h7);
            }
        }
    }

    /// <summary><see cref="AccumulateValuesAvx2"/> sixteen elements of d at a time: half the loop for a head of 64.</summary>
    internal static void AccumulateValuesAvx512(float* values, int first, int end, float* probabilities, float* lanes, int hd,
        bool resume, float* output)
    {
        int groups = (end - first) / Lanes;
        int tail = end - first - groups * Lanes;
        nint h1 = hd, h2 = 2 * h1, h3 = 3 * h1, h4 = 4 * h1, h5 = 5 * h1, h6 = 6 * h1, h7 = 7 * h1, h8 = 8 * h1;
        for (int c = 0; c < hd; c += Vector512<float>.Count)
        {
            Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7;
            float* l = lanes + c;
            if (resume)
            {
                a0 = Vector512.Load(l); a1 = Vector512.Load(l + h1); a2 = Vector512.Load(l + h2); a3 = Vector512.Load(l + h3);
                a4 = Vector512.Load(l + h4); a5 = Vector512.Load(l + h5); a6 = Vector512.Load(l + h6); a7 = Vector512.Load(l + h7);
            }
            else
            {
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector512<float>.Zero;
            }
            float* v = values + c;
            float* pr = probabilities + first;
            for (int g = 0; g < groups; g++, v += h8, pr += Lanes)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(v), Vector512.Create(pr[0]), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h1), Vector512.Create(pr[1]), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h2), Vector512.Create(pr[2]), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h3), Vector512.Create(pr[3]), a3);
                a4 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h4), Vector512.Create(pr[4]), a4);
                a5 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h5), Vector512.Create(pr[5]), a5);
                a6 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h6), Vector512.Create(pr[6]), a6);
                a7 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h7), Vector512.Create(pr[7]), a7);
            }
            if (tail > 0) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(v), Vector512.Create(pr[0]), a0);
            if (tail > 1) a1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h1), Vector512.Create(pr[1]), a1);
            if (tail > 2) a2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h2), Vector512.Create(pr[2]), a2);
            if (tail > 3) a3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h3), Vector512.Create(pr[3]), a3);
            if (tail > 4) a4 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h4), Vector512.Create(pr[4]), a4);
            if (tail > 5) a5 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h5), Vector512.Create(pr[5]), a5);
            if (tail > 6) a6 = Vector512.FusedMultiplyAdd(Vector512.Load(v + h6), Vector512.Create(pr[6]), a6);
            if (output != null)
            {
                (((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))).Store(output + c);
            }
            else
            {
                a0.Store(l); a1.Store(l + h1); a2.Store(l + h2); a3.Store(l + h3);
                a4.Store(l + h4); a5.Store(l + h5); a6.Store(l + h6); a7.Store(l + h7);
            }
        }
    }

    /// <summary>Reference for <see cref="AccumulateValues"/>, one element at a time (it always writes the lanes).</summary>
    internal static void AccumulateValuesScalar(float* values, int first, int end, float* probabilities, float* lanes, int hd,
        bool resume, float* output)
    {
        if (!resume)
            new Span<float>(lanes, Lanes * hd).Clear();
        for (int p = first; p < end; p++)
        {
            float* lane = lanes + (p % Lanes) * hd;
            float* v = values + (long)(p - first) * hd;
            for (int d = 0; d < hd; d++)
                lane[d] = MathF.FusedMultiplyAdd(v[d], probabilities[p], lane[d]);
        }
        if (output != null)
            ReduceLanesScalar(lanes, hd, output);
    }

    /// <summary>output[d] = the eight lanes' values at d summed as <see cref="F32.SumLanesHalving(ReadOnlySpan{float})"/> does.</summary>
    internal static void ReduceLanesScalar(float* lanes, int hd, float* output)
    {
        for (int d = 0; d < hd; d++)
        {
            float t0 = lanes[d] + lanes[4 * hd + d], t1 = lanes[hd + d] + lanes[5 * hd + d];
            float t2 = lanes[2 * hd + d] + lanes[6 * hd + d], t3 = lanes[3 * hd + d] + lanes[7 * hd + d];
            output[d] = (t0 + t2) + (t1 + t3);
        }
    }
}
