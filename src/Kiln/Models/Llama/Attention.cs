using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention of a batch of query rows over the KV cache, one (token, head) pair per work
/// item. It computes what llama.cpp's CPU graph computes (K·Q, scale, masked softmax, V·P) in the same
/// summation orders and with the same roundings, so that log-probabilities agree to about 1e-6:
/// <list type="bullet">
/// <item>with an F16 cache the query is rounded to F16 for K·Q and the probabilities to F16 for V·P;</item>
/// <item>a batch of two or more tokens sums like tinyBLAS (one 8-lane accumulator per output), a single token
/// like ggml_vec_dot (four 8-lane accumulators over steps of 32, then the remainder in double for F16);</item>
/// <item>softmax exponentials are <see cref="PolynomialExp"/> in groups of eight, summed per group and then in double.</item>
/// </list>
/// Masked positions count as zeros in those groups, exactly as llama.cpp's −∞ mask makes them. Score rows are
/// materialized (O(context) per row); <see cref="FlashAttention"/> is the online-softmax form. Batches of two or more
/// tokens go through <see cref="KvGroupAttention"/>, one work item per (KV head, tile of tokens), so that a key or
/// value is converted once for all the query heads and tokens that read it; single tokens (decode) keep the
/// per-(token, head) items of ggml_vec_dot's order.
/// </summary>
internal sealed unsafe class Attention : IParallelWork
{
    private const int Lanes = F32.Lanes;
    private const int VecDotLanes = F32.DotStep;

    private readonly int _heads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly float[][] _scores;
    private readonly float[][] _keyScratch;
    private readonly float[][] _queryScratch;
    private readonly float[][] _valueLanes;
    private readonly int _kvHeads;
    private readonly KvGroupAttention[]? _groups;
    private int _tilesPerHead;
    private int _tokensPerTile;

    private KvCache? _cache;
    private int _layer;
    private int _startPosition;
    private int _batch;
    private float* _q;
    private float* _out;

    public Attention(LlamaConfig config, int contextLength, int threads)
        : this(config.HeadCount, config.HeadCountKv, config.HeadDim, contextLength, threads)
    {
    }

    public Attention(int heads, int kvHeads, int headDim, int contextLength, int threads)
    {
        _heads = heads;
        _headDim = headDim;
        _groupSize = heads / kvHeads;
        _scores = new float[threads][];
        _keyScratch = new float[threads][];
        _queryScratch = new float[threads][];
        _valueLanes = new float[threads][];
        for (int i = 0; i < threads; i++)
        {
            // room for whole groups of eight past the last position
            _scores[i] = new float[contextLength + Lanes];
            _keyScratch[i] = new float[_headDim];
            _queryScratch[i] = new float[_headDim];
            _valueLanes[i] = new float[VecDotLanes * _headDim];
        }
        _kvHeads = kvHeads;
        if (_headDim % Lanes == 0)
        {
            _groups = new KvGroupAttention[threads];
            for (int i = 0; i < threads; i++)
                _groups[i] = new KvGroupAttention(_headDim, _groupSize, contextLength);
        }
    }

    /// <summary>
    /// out[t, h·d] = softmax(q[t,h]·K[0..pos]ᵀ / √d) · V[0..pos] for pos = start + t; q and out are
    /// (batch × heads·headDim). The batch's keys and values must already be in the cache.
    /// </summary>
    public void Run(WorkerPool pool, KvCache cache, int layer, int startPosition, int batch, float* q, float* output)
    {
        _cache = cache;
        _layer = layer;
        _startPosition = startPosition;
        _batch = batch;
        _q = q;
        _out = output;
        if (batch >= 2 && _groups is not null)
        {
            // Enough tiles for every worker, but as many tokens per tile as the scratch allows.
            int tokens = _groups[0].TokensPerTile;
            int wanted = (2 * pool.ThreadCount + _kvHeads - 1) / _kvHeads;
            tokens = Math.Clamp((batch + wanted - 1) / wanted, 1, tokens);
            _tokensPerTile = tokens;
            _tilesPerHead = (batch + tokens - 1) / tokens;
            pool.For(_kvHeads * _tilesPerHead, this);
        }
        else
        {
            _tilesPerHead = 0;
            pool.For(batch * _heads, this);
        }
        _cache = null;
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        if (_tilesPerHead > 0)
            ExecuteTiles(begin, end, worker);
        else
            ExecuteRows(begin, end, worker);
    }

    private void ExecuteTiles(int begin, int end, int worker)
    {
        var cache = _cache!;
        var group = _groups![worker];
        bool f16 = cache.Type == KvCacheType.F16;
        float scale = 1f / MathF.Sqrt(_headDim);
        int qDim = _heads * _headDim;
        Span<int> lengths = stackalloc int[_tokensPerTile];
        for (int item = begin; item < end; item++)
        {
            int kvHead = item / _tilesPerHead;
            // Later tiles see longer prefixes; alternating first and last tiles gives each worker's contiguous
            // share of items a like amount of work.
            int k = item % _tilesPerHead;
            int tile = k % 2 == 0 ? k / 2 : _tilesPerHead - 1 - k / 2;
            int t0 = tile * _tokensPerTile;
            int tokens = Math.Min(_tokensPerTile, _batch - t0);
            for (int t = 0; t < tokens; t++)
                lengths[t] = _startPosition + t0 + t + 1;
            var rows = new ContiguousKeyValueRows(cache, _layer, kvHead, _headDim);
            group.Run(ref rows, _q + (long)t0 * qDim, _out + (long)t0 * qDim, qDim, kvHead * _groupSize, tokens,
                lengths[..tokens], f16, scale);
        }
    }

    private void ExecuteRows(int begin, int end, int worker)
    {
        var cache = _cache!;
        bool f16 = cache.Type == KvCacheType.F16;
        // llama.cpp hands products of two or more rows to tinyBLAS when the inner length allows it.
        bool batched = _batch >= 2;
        float scale = 1f / MathF.Sqrt(_headDim);
        Span<float> scoresAll = _scores[worker];
        Span<float> key = _keyScratch[worker];
        Span<float> query = _queryScratch[worker];
        Span<float> lanes = _valueLanes[worker];
        int qDim = _heads * _headDim;

        for (int item = begin; item < end; item++)
        {
            int t = item / _heads;
            int h = item % _heads;
            int kvHead = h / _groupSize;
            int length = _startPosition + t + 1;
            var q = new ReadOnlySpan<float>(_q + (long)t * qDim + h * _headDim, _headDim);
            var output = new Span<float>(_out + (long)t * qDim + h * _headDim, _headDim);
            int groups = (length + Lanes - 1) / Lanes * Lanes;
            var scores = scoresAll[..groups];

            if (f16)
                F16.RoundActivations(q, query[.._headDim]);
            else
            {
                q.CopyTo(query);
            }

            for (int p = 0; p < length; p++)
            {
                ReadOnlySpan<float> k = cache.ReadKey(_layer, p, kvHead * _headDim, _headDim, key);
                scores[p] = KeyDot(k, query, f16, batched) * scale;
            }

            Softmax(scores, length);
            if (f16)
                F16.RoundActivations(scores[..length], scores[..length]);

            WeightedValues(cache, kvHead, scores[..length], f16, batched, lanes, key, output);
        }
    }

    /// <summary>One K·Q entry in the order llama.cpp's matmul would use for it.</summary>
    /// <remarks>Inlined by request: compiled without profile data (kiln compiles loops fully optimized at their
    /// first call) the per-position loop otherwise calls this dispatcher and then the dot.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float KeyDot(ReadOnlySpan<float> k, ReadOnlySpan<float> q, bool f16, bool batched)
    {
        int headDim = k.Length;
        if (batched && headDim % Lanes == 0)
            return F32.DotSingleAccumulator(k, q);
        if (!f16)
            return F32.Dot(k, q);
        // ggml_vec_dot_f16: whole steps of 32 in float lanes, the rest in double. Products of two F16 values are
        // exact in float, so the float lanes round only when adding.
        int blocked = headDim - headDim % VecDotLanes;
        double sum = F32.Dot(k[..blocked], q[..blocked]);
        for (int d = blocked; d < headDim; d++)
            sum += k[d] * q[d];
        return (float)sum;
    }

    /// <summary>
    /// ggml_soft_max_f32 over positions [0, length) with everything after masked: exponentials in groups of eight
    /// from position 0, each group summed as a register is (lanes halved), the group sums added in double.
    /// </summary>
    internal static void Softmax(Span<float> scores, int length)
    {
        float max = TensorPrimitives.Max(scores[..length]);
        scores[length..].Fill(float.NegativeInfinity);
        double sum = 0;
        for (int g = 0; g < scores.Length; g += Lanes)
        {
            var group = scores.Slice(g, Lanes);
            Vector256<float> e = PolynomialExp.Exp(Vector256.Create((ReadOnlySpan<float>)group) - Vector256.Create(max));
            e.CopyTo(group);
            sum += F32.SumLanesHalving(e);
        }
        float inverse = (float)(1.0 / sum);
        TensorPrimitives.Multiply(scores[..length], inverse, scores[..length]);
    }

    /// <summary>
    /// output[d] = Σ_p probabilities[p]·V[p, d], summed per d in the order of llama.cpp's V·P product: position p
    /// feeds lane p mod 8 of one accumulator (a batch, tinyBLAS) or lane p mod 32 of four (one token,
    /// ggml_vec_dot_f16, whose padded cache length is a whole number of 32-steps). Vectorized across d by keeping
    /// every lane as a row of head-size accumulators.
    /// </summary>
    private void WeightedValues(KvCache cache, int kvHead, ReadOnlySpan<float> probabilities, bool f16, bool batched,
        Span<float> lanes, Span<float> scratch, Span<float> output)
    {
        int laneCount = batched ? Lanes : VecDotLanes;
        int hd = _headDim;
        lanes = lanes[..(laneCount * hd)];
        lanes.Clear();
        for (int p = 0; p < probabilities.Length; p++)
        {
            ReadOnlySpan<float> v = cache.ReadValue(_layer, p, kvHead * hd, hd, scratch);
            var lane = lanes.Slice(p % laneCount * hd, hd);
            TensorPrimitives.FusedMultiplyAdd(v, probabilities[p], lane, lane);
        }

        Span<float> eight = stackalloc float[Lanes];
        for (int d = 0; d < hd; d++)
        {
            if (batched)
            {
                for (int l = 0; l < Lanes; l++)
                    eight[l] = lanes[l * hd + d];
                output[d] = F32.SumLanesHalving(eight);
            }
            else
            {
                // accumulators (a0 + a2) + (a1 + a3), then the lanes pairwise, as F32.Dot
                for (int l = 0; l < Lanes; l++)
                {
                    float a0 = lanes[l * hd + d], a1 = lanes[(Lanes + l) * hd + d];
                    float a2 = lanes[(2 * Lanes + l) * hd + d], a3 = lanes[(3 * Lanes + l) * hd + d];
                    eight[l] = (a0 + a2) + (a1 + a3);
                }
                output[d] = F32.SumLanesPairwise(eight);
            }
        }
    }
}
