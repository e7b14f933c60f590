using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention computed FlashAttention-2 style (llama.cpp's <c>-fa</c>): a work item is a tile
/// of up to <see cref="QueryTile"/> consecutive tokens × one KV head, and all query heads of that KV group attend
/// together. Keys and values are widened to float once per <see cref="KeyTile"/> positions and reused by every
/// (token, head) row of the item, so the cache is read once per query tile rather than once per query row. The
/// softmax is online: each row keeps its running maximum m and sum l, and its output accumulator is rescaled by
/// e^(m_old − m_new) when a tile raises the maximum, so no score row longer than a key tile ever exists. Per worker
/// the extra memory is O(tile) and fixed at construction: it does not depend on the batch or the context length.
/// <para>
/// Causal masking costs nothing: key tiles beyond the item's last token are never loaded, and on the diagonal tile
/// each row simply stops at its own position. Exponentials are <see cref="PolynomialExp"/> (ggml's, about 1.5 ulp)
/// on every path, so the scalar reference gives the SIMD path's exponentials bit for bit and the paths differ only
/// in summation order. The results are not llama.cpp's non-flash bits (that is <see cref="Attention"/>, the default);
/// they agree with it to float rounding (log-probabilities within about 1e-4).
/// </para>
/// </summary>
internal sealed unsafe class FlashAttention : IParallelWork
{
    /// <summary>Tokens per work item: enough rows to amortize widening a key tile, few enough to spread over workers.</summary>
    public const int QueryTile = 16;

    /// <summary>Key (and value) positions widened at a time; 64 × head size floats stay in L1 beside the score tile.</summary>
    public const int KeyTile = 64;

    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly bool _scalarReference;
    private readonly Scratch[] _scratch;

    private KvCache? _cache;
    private int _layer;
    private int _startPosition;
    private int _batch;
    private int _queryTiles;
    private float* _q;
    private float* _out;

    /// <param name="scalarReference">Use the scalar kernels (the reference the SIMD path is tested against).</param>
    public FlashAttention(int heads, int kvHeads, int headDim, int threads, bool scalarReference = false)
    {
        if (heads < 1 || kvHeads < 1 || heads % kvHeads != 0)
            throw new ArgumentException($"{heads} query heads cannot be grouped over {kvHeads} KV heads");
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _heads = heads;
        _kvHeads = kvHeads;
        _headDim = headDim;
        _groupSize = heads / kvHeads;
        _scalarReference = scalarReference;
        _scratch = new Scratch[threads];
        for (int i = 0; i < threads; i++)
            _scratch[i] = new Scratch(QueryTile * _groupSize, headDim);
    }

    public FlashAttention(LlamaConfig config, int threads)
        : this(config.HeadCount, config.HeadCountKv, config.HeadDim, threads)
    {
    }

    /// <summary>Floats of scratch one worker holds (the same for every worker, batch and context length).</summary>
    internal int ScratchFloatsPerWorker => _scratch[0].FloatCount;

    /// <summary>
    /// out[t, h·d] = softmax(q[t,h]·K[0..pos]ᵀ / √d) · V[0..pos] for pos = start + t; q and out are
    /// (batch × heads·headDim). The batch's keys and values must already be in the cache.
    /// </summary>
    public void Run(WorkerPool pool, KvCache cache, int layer, int startPosition, int batch, float* q, float* output)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (startPosition < 0 || startPosition + batch > cache.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(startPosition), "the batch lies outside the cache");
        if (cache.KvDim != _kvHeads * _headDim)
            throw new ArgumentException($"the cache holds rows of {cache.KvDim}, not {_kvHeads} × {_headDim}", nameof(cache));
        _cache = cache;
        _layer = layer;
        _startPosition = startPosition;
        _batch = batch;
        _queryTiles = (batch + QueryTile - 1) / QueryTile;
        _q = q;
        _out = output;
        pool.For(_queryTiles * _kvHeads, this);
        _cache = null;
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        for (int item = begin; item < end; item++)
        {
            // Later tiles see more keys; alternating first and last tiles evens out the contiguous ranges the pool
            // hands each worker.
            int order = item / _kvHeads;
            int tile = (order & 1) == 0 ? order >> 1 : _queryTiles - 1 - (order >> 1);
            Attend(tile, item % _kvHeads, _scratch[worker]);
        }
    }

    private void Attend(int tile, int kvHead, Scratch s)
    {
        var cache = _cache!;
        int hd = _headDim, group = _groupSize, qDim = _heads * hd;
        int firstToken = tile * QueryTile;
        int tokens = Math.Min(QueryTile, _batch - firstToken);
        int rows = tokens * group;
        float scale = 1f / MathF.Sqrt(hd);

        // Row r = token·group + g is query head kvHead·group + g of token firstToken + token, pre-scaled by 1/√d.
        for (int t = 0; t < tokens; t++)
        {
            for (int g = 0; g < group; g++)
            {
                var q = new ReadOnlySpan<float>(_q + (long)(firstToken + t) * qDim + (kvHead * group + g) * hd, hd);
                Scale(q, scale, s.Queries.AsSpan((t * group + g) * hd, hd));
            }
        }
        s.Max.AsSpan(0, rows).Fill(float.NegativeInfinity);
        s.Sum.AsSpan(0, rows).Clear();
        s.Output.AsSpan(0, rows * hd).Clear();

        int firstPosition = _startPosition + firstToken;
        int keyEnd = firstPosition + tokens; // the last token sees keys [0, keyEnd); tiles past it are never touched
        for (int keyStart = 0; keyStart < keyEnd; keyStart += KeyTile)
        {
            int keyCount = Math.Min(KeyTile, keyEnd - keyStart);
            for (int j = 0; j < keyCount; j++)
            {
                // Keys are stored transposed (dimension-major) so that a score kernel fills a vector of positions
                // with plain FMAs and never needs a horizontal sum.
                ReadOnlySpan<float> key = cache.ReadKey(_layer, keyStart + j, kvHead * hd, hd, s.KeyRow);
                for (int d = 0; d < hd; d++)
                    s.Keys[d * KeyTile + j] = key[d];
                Widen(cache.ReadValue(_layer, keyStart + j, kvHead * hd, hd, s.Values.AsSpan(j * hd, hd)), s.Values.AsSpan(j * hd, hd));
            }

            for (int t = 0; t < tokens; t++)
            {
                // Causal mask: token t sees positions up to its own; on the diagonal tile that cuts the row short.
                int visible = Math.Min(keyCount, firstPosition + t + 1 - keyStart);
                if (visible <= 0)
                    continue;
                for (int g = 0; g < group; g++)
                {
                    int r = t * group + g;
                    var scores = s.Scores.AsSpan(r * KeyTile, visible);
                    var values = s.Values.AsSpan(0, visible * hd);
                    var query = s.Queries.AsSpan(r * hd, hd);
                    var output = s.Output.AsSpan(r * hd, hd);
                    if (_scalarReference)
                        ScoreRowScalar(query, s.Keys, KeyTile, scores);
                    else
                        ScoreRow(query, s.Keys, KeyTile, scores);

                    float previous = s.Max[r];
                    float max = Math.Max(previous, MaxOf(scores));
                    // e^(−∞) is exactly 0 but PolynomialExp would compute −∞ − (−∞); the first tile needs no rescale.
                    float correction = float.IsNegativeInfinity(previous) ? 0f : PolynomialExp.ExpScalar(previous - max);
                    float tileSum = _scalarReference ? ExpRowScalar(scores, max) : ExpRow(scores, max);
                    s.Max[r] = max;
                    s.Sum[r] = s.Sum[r] * correction + tileSum;
                    if (_scalarReference)
                        AccumulateValuesScalar(output, correction, scores, values);
                    else
                        AccumulateValues(output, correction, scores, values);
                }
            }
        }

        for (int t = 0; t < tokens; t++)
        {
            for (int g = 0; g < group; g++)
            {
                int r = t * group + g;
                var output = new Span<float>(_out + (long)(firstToken + t) * qDim + (kvHead * group + g) * hd, hd);
                // every row saw at least its own position, whose exponential is e^0 = 1, so the sum is ≥ 1
                Scale(s.Output.AsSpan(r * hd, hd), 1f / s.Sum[r], output);
            }
        }
    }

    /// <summary>An F32 cache hands out its own memory instead of filling the scratch row; copy it into the tile.</summary>
    private static void Widen(ReadOnlySpan<float> read, Span<float> tileRow)
    {
        if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(read), ref MemoryMarshal.GetReference(tileRow)))
            read.CopyTo(tileRow);
    }

    private static void Scale(ReadOnlySpan<float> x, float factor, Span<float> y) =>
        System.Numerics.Tensors.TensorPrimitives.Multiply(x, factor, y);

    private static float MaxOf(ReadOnlySpan<float> x) => System.Numerics.Tensors.TensorPrimitives.Max(x);

    /// <summary>
    /// scores[j] = Σ_d query[d]·keys[d·stride + j] for j &lt; scores.Length: keys hold one row per dimension (a
    /// transposed key tile). <paramref name="stride"/> is a multiple of 16 and at least scores.Length; the SIMD paths
    /// read whole vectors of positions up to the next multiple of 8 or 16, whose scores they discard.
    /// </summary>
    public static void ScoreRow(ReadOnlySpan<float> query, ReadOnlySpan<float> keys, int stride, Span<float> scores)
    {
        CheckTransposed(query.Length, keys.Length, stride, scores.Length);
        if (CpuPaths.PreferAvx512)
            ScoreRowAvx512(query, keys, stride, scores);
        else if (CpuPaths.CanAvx2)
            ScoreRowAvx2(query, keys, stride, scores);
        else
            ScoreRowScalar(query, keys, stride, scores);
    }

    /// <summary>Reference for <see cref="ScoreRow"/>: one product at a time, summed in order of d.</summary>
    public static void ScoreRowScalar(ReadOnlySpan<float> query, ReadOnlySpan<float> keys, int stride, Span<float> scores)
    {
        CheckTransposed(query.Length, keys.Length, stride, scores.Length);
        for (int j = 0; j < scores.Length; j++)
        {
            float sum = 0;
            for (int d = 0; d < query.Length; d++)
                sum = MathF.FusedMultiplyAdd(query[d], keys[d * stride + j], sum);
            scores[j] = sum;
        }
    }

    internal static void ScoreRowAvx2(ReadOnlySpan<float> query, ReadOnlySpan<float> keys, int stride, Span<float> scores)
    {
        ref float q = ref MemoryMarshal.GetReference(query);
        ref float k = ref MemoryMarshal.GetReference(keys);
        int hd = query.Length, n = scores.Length;
        Span<float> tail = stackalloc float[8];
        for (int j = 0; j < n; j += 8)
        {
            // Two chains over alternate dimensions halve the FMA latency the sum waits on.
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0;
            int d = 0;
            for (; d + 2 <= hd; d += 2)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Create(Unsafe.Add(ref q, d)), Vector256.LoadUnsafe(ref k, (nuint)(d * stride + j)), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Create(Unsafe.Add(ref q, d + 1)), Vector256.LoadUnsafe(ref k, (nuint)((d + 1) * stride + j)), a1);
            }
            if (d < hd)
                a0 = Vector256.FusedMultiplyAdd(Vector256.Create(Unsafe.Add(ref q, d)), Vector256.LoadUnsafe(ref k, (nuint)(d * stride + j)), a0);
            Vector256<float> sum = a0 + a1;
            if (j + 8 <= n)
            {
                sum.StoreUnsafe(ref MemoryMarshal.GetReference(scores), (nuint)j);
            }
            else
            {
                sum.CopyTo(tail);
                tail[..(n - j)].CopyTo(scores[j..]);
            }
        }
    }

    internal static void ScoreRowAvx512(ReadOnlySpan<float> query, ReadOnlySpan<float> keys, int stride, Span<float> scores)
    {
        ref float q = ref MemoryMarshal.GetReference(query);
        ref float k = ref MemoryMarshal.GetReference(keys);
        int hd = query.Length, n = scores.Length;
        Span<float> tail = stackalloc float[16];
        for (int j = 0; j < n; j += 16)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0;
            int d = 0;
            for (; d + 2 <= hd; d += 2)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref q, d)), Vector512.LoadUnsafe(ref k, (nuint)(d * stride + j)), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref q, d + 1)), Vector512.LoadUnsafe(ref k, (nuint)((d + 1) * stride + j)), a1);
            }
            if (d < hd)
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(Unsafe.Add(ref q, d)), Vector512.LoadUnsafe(ref k, (nuint)(d * stride + j)), a0);
            Vector512<float> sum = a0 + a1;
            if (j + 16 <= n)
            {
                sum.StoreUnsafe(ref MemoryMarshal.GetReference(scores), (nuint)j);
            }
            else
            {
                sum.CopyTo(tail);
                tail[..(n - j)].CopyTo(scores[j..]);
            }
        }
    }

    /// <summary>scores[j] = e^(scores[j] − max) in place; returns their sum.</summary>
    public static float ExpRow(Span<float> scores, float max)
    {
        if (!CpuPaths.CanAvx2)
            return ExpRowScalar(scores, max);
        ref float s = ref MemoryMarshal.GetReference(scores);
        int n = scores.Length, j = 0;
        Vector256<float> m = Vector256.Create(max), acc = Vector256<float>.Zero;
        for (; j + 8 <= n; j += 8)
        {
            Vector256<float> e = PolynomialExp.Exp(Vector256.LoadUnsafe(ref s, (nuint)j) - m);
            e.StoreUnsafe(ref s, (nuint)j);
            acc += e;
        }
        float sum = Vector256.Sum(acc);
        for (; j < n; j++)
        {
            float e = PolynomialExp.ExpScalar(Unsafe.Add(ref s, j) - max);
            Unsafe.Add(ref s, j) = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>Reference for <see cref="ExpRow"/>: the same exponentials (bit for bit), summed in order.</summary>
    public static float ExpRowScalar(Span<float> scores, float max)
    {
        float sum = 0;
        for (int j = 0; j < scores.Length; j++)
        {
            scores[j] = PolynomialExp.ExpScalar(scores[j] - max);
            sum += scores[j];
        }
        return sum;
    }

    /// <summary>output = output·correction + Σ_j weights[j]·values[j], values being weights.Length rows of output.Length.</summary>
    public static void AccumulateValues(Span<float> output, float correction, ReadOnlySpan<float> weights, ReadOnlySpan<float> values)
    {
        CheckRows(output.Length, values.Length, weights.Length);
        if (CpuPaths.PreferAvx512)
            AccumulateValuesAvx512(output, correction, weights, values);
        else if (CpuPaths.CanAvx2)
            AccumulateValuesAvx2(output, correction, weights, values);
        else
            AccumulateValuesScalar(output, correction, weights, values);
    }

    /// <summary>Reference for <see cref="AccumulateValues"/>, one element at a time.</summary>
    public static void AccumulateValuesScalar(Span<float> output, float correction, ReadOnlySpan<float> weights, ReadOnlySpan<float> values)
    {
        CheckRows(output.Length, values.Length, weights.Length);
        int hd = output.Length;
        for (int d = 0; d < hd; d++)
        {
            float acc = output[d] * correction;
            for (int j = 0; j < weights.Length; j++)
                acc = MathF.FusedMultiplyAdd(weights[j], values[j * hd + d], acc);
            output[d] = acc;
        }
    }

    internal static void AccumulateValuesAvx2(Span<float> output, float correction, ReadOnlySpan<float> weights, ReadOnlySpan<float> values)
    {
        ref float o = ref MemoryMarshal.GetReference(output);
        ref float v = ref MemoryMarshal.GetReference(values);
        int hd = output.Length, n = weights.Length, d = 0;
        // Four accumulators of eight columns stay in registers over all the tile's positions.
        for (; d + 32 <= hd; d += 32)
        {
            Vector256<float> c = Vector256.Create(correction);
            Vector256<float> a0 = Vector256.LoadUnsafe(ref o, (nuint)d) * c, a1 = Vector256.LoadUnsafe(ref o, (nuint)d + 8) * c;
            Vector256<float> a2 = Vector256.LoadUnsafe(ref o, (nuint)d + 16) * c, a3 = Vector256.LoadUnsafe(ref o, (nuint)d + 24) * c;
            for (int j = 0; j < n; j++)
            {
                Vector256<float> w = Vector256.Create(weights[j]);
                ref float row = ref Unsafe.Add(ref v, j * hd + d);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref row), a0);
                a1 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref row, 8), a1);
                a2 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref row, 16), a2);
                a3 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref row, 24), a3);
            }
            a0.StoreUnsafe(ref o, (nuint)d);
            a1.StoreUnsafe(ref o, (nuint)d + 8);
            a2.StoreUnsafe(ref o, (nuint)d + 16);
            a3.StoreUnsafe(ref o, (nuint)d + 24);
        }
        for (; d + 8 <= hd; d += 8)
        {
            Vector256<float> a = Vector256.LoadUnsafe(ref o, (nuint)d) * Vector256.Create(correction);
            for (int j = 0; j < n; j++)
                a = Vector256.FusedMultiplyAdd(Vector256.Create(weights[j]), Vector256.LoadUnsafe(ref Unsafe.Add(ref v, j * hd + d)), a);
            a.StoreUnsafe(ref o, (nuint)d);
        }
        AccumulateColumnsScalar(output, correction, weights, values, d);
    }

    internal static void AccumulateValuesAvx512(Span<float> output, float correction, ReadOnlySpan<float> weights, ReadOnlySpan<float> values)
    {
        ref float o = ref MemoryMarshal.GetReference(output);
        ref float v = ref MemoryMarshal.GetReference(values);
        int hd = output.Length, n = weights.Length, d = 0;
        for (; d + 64 <= hd; d += 64)
        {
            Vector512<float> c = Vector512.Create(correction);
            Vector512<float> a0 = Vector512.LoadUnsafe(ref o, (nuint)d) * c, a1 = Vector512.LoadUnsafe(ref o, (nuint)d + 16) * c;
            Vector512<float> a2 = Vector512.LoadUnsafe(ref o, (nuint)d + 32) * c, a3 = Vector512.LoadUnsafe(ref o, (nuint)d + 48) * c;
            for (int j = 0; j < n; j++)
            {
                Vector512<float> w = Vector512.Create(weights[j]);
                ref float row = ref Unsafe.Add(ref v, j * hd + d);
                a0 = Vector512.FusedMultiplyAdd(w, Vector512.LoadUnsafe(ref row), a0);
                a1 = Vector512.FusedMultiplyAdd(w, Vector512.LoadUnsafe(ref row, 16), a1);
                a2 = Vector512.FusedMultiplyAdd(w, Vector512.LoadUnsafe(ref row, 32), a2);
                a3 = Vector512.FusedMultiplyAdd(w, Vector512.LoadUnsafe(ref row, 48), a3);
            }
            a0.StoreUnsafe(ref o, (nuint)d);
            a1.StoreUnsafe(ref o, (nuint)d + 16);
            a2.StoreUnsafe(ref o, (nuint)d + 32);
            a3.StoreUnsafe(ref o, (nuint)d + 48);
        }
        for (; d + 16 <= hd; d += 16)
        {
            Vector512<float> a = Vector512.LoadUnsafe(ref o, (nuint)d) * Vector512.Create(correction);
            for (int j = 0; j < n; j++)
                a = Vector512.FusedMultiplyAdd(Vector512.Create(weights[j]), Vector512.LoadUnsafe(ref Unsafe.Add(ref v, j * hd + d)), a);
            a.StoreUnsafe(ref o, (nuint)d);
        }
        AccumulateColumnsScalar(output, correction, weights, values, d);
    }

    /// <summary>Columns [from, output.Length) that do not fill a vector.</summary>
    private static void AccumulateColumnsScalar(Span<float> output, float correction, ReadOnlySpan<float> weights, ReadOnlySpan<float> values, int from)
    {
        int hd = output.Length;
        for (int d = from; d < hd; d++)
        {
            float acc = output[d] * correction;
            for (int j = 0; j < weights.Length; j++)
                acc = MathF.FusedMultiplyAdd(weights[j], values[j * hd + d], acc);
            output[d] = acc;
        }
    }

    private static void CheckTransposed(int width, int matrixLength, int stride, int count)
    {
        if (width < 1 || stride % 16 != 0 || count > stride || (long)width * stride != matrixLength)
            throw new ArgumentException($"expected {width} rows of a stride of {stride} (a multiple of 16, at least {count}), got {matrixLength} floats");
    }

    private static void CheckRows(int width, int matrixLength, int rows)
    {
        if (width < 1 || (long)width * rows != matrixLength)
            throw new ArgumentException($"expected {rows} rows of {width} floats, got {matrixLength} floats");
    }

    /// <summary>One worker's tiles: sized by the tile constants and the head shape alone.</summary>
    private sealed class Scratch
    {
        public readonly float[] Queries;
        public readonly float[] KeyRow;
        public readonly float[] Keys;
        public readonly float[] Values;
        public readonly float[] Scores;
        public readonly float[] Max;
        public readonly float[] Sum;
        public readonly float[] Output;

        public Scratch(int rows, int headDim)
        {
            Queries = new float[rows * headDim];
            KeyRow = new float[headDim];
            Keys = new float[KeyTile * headDim];
            Values = new float[KeyTile * headDim];
            Scores = new float[rows * KeyTile];
            Max = new float[rows];
            Sum = new float[rows];
            Output = new float[rows * headDim];
        }

        public int FloatCount => Queries.Length + KeyRow.Length + Keys.Length + Values.Length + Scores.Length + Max.Length + Sum.Length + Output.Length;
    }
}
