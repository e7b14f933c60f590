using System.Runtime.Intrinsics;
using Kiln.Tensors;

namespace Kiln.Models.Llama;

/// <summary>
/// Exact causal attention, in llama.cpp's batch order (<see cref="Attention"/>'s tinyBLAS path), for a tile of
/// query rows that read the same KV head of one sequence: some consecutive tokens × the query heads of one group.
/// What the per-row form did once per (row, position) — converting an F16 key or value to floats, a call per
/// dot — happens here once per (tile, position), and the K·Q entries come four keys × four queries at a time.
/// Every output keeps its bits: each score is <see cref="F32.DotSingleAccumulator"/>'s chain (through
/// <see cref="F32.DotSingleAccumulator4x4"/>), softmax is <see cref="Attention.Softmax"/>, and position p still
/// feeds lane p mod 8 of its row's V·P accumulators in increasing p. One instance is one worker's scratch.
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
        _queries = new float[rows * headDim];
        _scores = new float[rows * _scoreStride];
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

        WeightedValues(ref kv, rows, maxLength);

        fixed (float* lanes = _lanes)
        {
            for (int r = 0; r < rows; r++)
            {
                float* destination = output + (long)(r / _groupSize) * stride + (firstHead + r % _groupSize) * hd;
                ReduceLanes(lanes + (long)r * Lanes * hd, hd, destination);
            }
        }
    }

    private void Scores<TRows>(ref TRows kv, int rows, int maxLength, float scale) where TRows : struct, IKeyValueRows
    {
        int hd = _headDim;
        Span<float> tile = stackalloc float[16];
        for (int p0 = 0; p0 < maxLength; p0 += PositionTile)
        {
            int count = Math.Min(PositionTile, maxLength - p0);
            kv.ReadKeys(p0, count, _keys.AsSpan(0, count * hd));
            for (int r0 = 0; r0 < rows; r0 += 4)
            {
                int rn = Math.Min(4, rows - r0);
                int rowsLength = 0;
                for (int i = 0; i < rn; i++)
                    rowsLength = Math.Max(rowsLength, _lengths[r0 + i]);
                int end = Math.Min(p0 + count, rowsLength);
                // Entries past a row's own length are computed when its neighbours need them and then masked by
                // the softmax, as the per-row form never computed them at all; their values do not matter.
                for (int p = p0; p < end; p += 4)
                {
                    int pn = Math.Min(4, end - p);
                    var keys = _keys.AsSpan((p - p0) * hd);
                    if (rn == 4 && pn == 4)
                    {
                        F32.DotSingleAccumulator4x4(keys, hd, hd, _queries.AsSpan(r0 * hd), hd, tile);
                        for (int t = 0; t < 4; t++)
                        {
                            var row = _scores.AsSpan((r0 + t) * _scoreStride + p, 4);
                            for (int k = 0; k < 4; k++)
                                row[k] = tile[t * 4 + k] * scale;
                        }
                    }
                    else
                    {
                        for (int t = 0; t < rn; t++)
                        {
                            var query = _queries.AsSpan((r0 + t) * hd, hd);
                            for (int k = 0; k < pn; k++)
                                _scores[(r0 + t) * _scoreStride + p + k] = F32.DotSingleAccumulator(keys.Slice(k * hd, hd), query) * scale;
                        }
                    }
                }
            }
        }
    }

    private void WeightedValues<TRows>(ref TRows kv, int rows, int maxLength) where TRows : struct, IKeyValueRows
    {
        int hd = _headDim;
        _lanes.AsSpan(0, rows * Lanes * hd).Clear();
        fixed (float* lanes = _lanes, values = _values, scores = _scores)
        {
            for (int p0 = 0; p0 < maxLength; p0 += PositionTile)
            {
                int count = Math.Min(PositionTile, maxLength - p0);
                kv.ReadValues(p0, count, _values.AsSpan(0, count * hd));
                for (int r = 0; r < rows; r++)
                {
                    int end = Math.Min(p0 + count, _lengths[r]);
                    if (end > p0)
                        AccumulateValues(values, p0, end, scores + (long)r * _scoreStride, lanes + (long)r * Lanes * hd, hd);
                }
            }
        }
    }

    /// <summary>
    /// lanes[p mod 8][d] += probabilities[p] · V[p - first][d] for p in [first, end), in increasing p for each
    /// lane (first is a multiple of 8). Vectorized across d, with the eight lanes' accumulators in registers.
    /// </summary>
    internal static void AccumulateValues(float* values, int first, int end, float* probabilities, float* lanes, int hd)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            AccumulateValuesScalar(values, first, end, probabilities, lanes, hd);
            return;
        }
        for (int c = 0; c < hd; c += Lanes)
        {
            Vector256<float> a0 = Vector256.Load(lanes + c), a1 = Vector256.Load(lanes + hd + c);
            Vector256<float> a2 = Vector256.Load(lanes + 2 * hd + c), a3 = Vector256.Load(lanes + 3 * hd + c);
            Vector256<float> a4 = Vector256.Load(lanes + 4 * hd + c), a5 = Vector256.Load(lanes + 5 * hd + c);
            Vector256<float> a6 = Vector256.Load(lanes + 6 * hd + c), a7 = Vector256.Load(lanes + 7 * hd + c);
            int p = first;
            for (; p + Lanes <= end; p += Lanes)
            {
                float* v = values + (long)(p - first) * hd + c;
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(probabilities[p]), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + hd), Vector256.Create(probabilities[p + 1]), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 2 * hd), Vector256.Create(probabilities[p + 2]), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 3 * hd), Vector256.Create(probabilities[p + 3]), a3);
                a4 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 4 * hd), Vector256.Create(probabilities[p + 4]), a4);
                a5 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 5 * hd), Vector256.Create(probabilities[p + 5]), a5);
                a6 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 6 * hd), Vector256.Create(probabilities[p + 6]), a6);
                a7 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 7 * hd), Vector256.Create(probabilities[p + 7]), a7);
            }
            a0.Store(lanes + c); a1.Store(lanes + hd + c); a2.Store(lanes + 2 * hd + c); a3.Store(lanes + 3 * hd + c);
            a4.Store(lanes + 4 * hd + c); a5.Store(lanes + 5 * hd + c); a6.Store(lanes + 6 * hd + c); a7.Store(lanes + 7 * hd + c);
            for (; p < end; p++)
            {
                float* lane = lanes + (p % Lanes) * hd + c;
                Vector256.FusedMultiplyAdd(Vector256.Load(values + (long)(p - first) * hd + c), Vector256.Create(probabilities[p]), Vector256.Load(lane)).Store(lane);
            }
        }
    }

    /// <summary>Reference for <see cref="AccumulateValues"/>, one element at a time.</summary>
    internal static void AccumulateValuesScalar(float* values, int first, int end, float* probabilities, float* lanes, int hd)
    {
        for (int p = first; p < end; p++)
        {
            float* lane = lanes + (p % Lanes) * hd;
            float* v = values + (long)(p - first) * hd;
            for (int d = 0; d < hd; d++)
                lane[d] = MathF.FusedMultiplyAdd(v[d], probabilities[p], lane[d]);
        }
    }

    /// <summary>output[d] = the eight lanes' values at d summed as <see cref="F32.SumLanesHalving(ReadOnlySpan{float})"/> does.</summary>
    internal static void ReduceLanes(float* lanes, int hd, float* output)
    {
        int d = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; d + Lanes <= hd; d += Lanes)
            {
                Vector256<float> t0 = Vector256.Load(lanes + d) + Vector256.Load(lanes + 4 * hd + d);
                Vector256<float> t1 = Vector256.Load(lanes + hd + d) + Vector256.Load(lanes + 5 * hd + d);
                Vector256<float> t2 = Vector256.Load(lanes + 2 * hd + d) + Vector256.Load(lanes + 6 * hd + d);
                Vector256<float> t3 = Vector256.Load(lanes + 3 * hd + d) + Vector256.Load(lanes + 7 * hd + d);
                ((t0 + t2) + (t1 + t3)).Store(output + d);
            }
        }
        for (; d < hd; d++)
        {
            float t0 = lanes[d] + lanes[4 * hd + d], t1 = lanes[hd + d] + lanes[5 * hd + d];
            float t2 = lanes[2 * hd + d] + lanes[6 * hd + d], t3 = lanes[3 * hd + d] + lanes[7 * hd + d];
            output[d] = (t0 + t2) + (t1 + t3);
        }
    }
}
