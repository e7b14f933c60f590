using System.Numerics.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention of a batch of query rows over the KV cache, one (token, head) pair
/// per work item. With an F16 cache it rounds exactly where llama.cpp's CPU path does (the query to F16
/// for QKᵀ, the probabilities to F16 for ·V), which brings log-probabilities within a median 5e-5 of llama.cpp's
/// (the rest is F16 rounding amplifying float summation-order differences; see docs/architecture.md).
/// The score row is materialized per item (O(context) per worker); the tiled online-softmax form
/// belongs to the kernels work.
/// </summary>
internal sealed unsafe class Attention : IParallelWork
{
    private readonly int _heads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly int _kvDim;
    private readonly float[][] _scores;
    private readonly float[][] _rowScratch;
    private readonly float[][] _queryScratch;

    private KvCache? _cache;
    private int _layer;
    private int _startPosition;
    private float* _q;
    private float* _out;

    public Attention(LlamaConfig config, int contextLength, int threads)
    {
        _heads = config.HeadCount;
        _headDim = config.HeadDim;
        _groupSize = config.GroupSize;
        _kvDim = config.KvDim;
        _scores = new float[threads][];
        _rowScratch = new float[threads][];
        _queryScratch = new float[threads][];
        for (int i = 0; i < threads; i++)
        {
            _scores[i] = new float[contextLength];
            _rowScratch[i] = new float[_headDim];
            _queryScratch[i] = new float[_headDim];
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
        _q = q;
        _out = output;
        pool.For(batch * _heads, this);
        _cache = null;
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        var cache = _cache!;
        bool f16 = cache.Type == KvCacheType.F16;
        float scale = 1f / MathF.Sqrt(_headDim);
        Span<float> scoresAll = _scores[worker];
        Span<float> row = _rowScratch[worker];
        Span<float> query = _queryScratch[worker];
        int qDim = _heads * _headDim;

        for (int item = begin; item < end; item++)
        {
            int t = item / _heads;
            int h = item % _heads;
            int kvHead = h / _groupSize;
            int length = _startPosition + t + 1;
            var q = new ReadOnlySpan<float>(_q + (long)t * qDim + h * _headDim, _headDim);
            var output = new Span<float>(_out + (long)t * qDim + h * _headDim, _headDim);
            var scores = scoresAll[..length];

            if (f16)
            {
                // ggml converts the F32 query to the F16 type of the cache before the dot product.
                for (int d = 0; d < _headDim; d++)
                    query[d] = (float)(Half)q[d];
            }
            else
            {
                q.CopyTo(query);
            }

            for (int p = 0; p < length; p++)
            {
                long offset = (long)p * _kvDim + kvHead * _headDim;
                ReadOnlySpan<float> key = f16 ? Widen(cache.KeysF16(_layer) + offset, row) : new(cache.KeysF32(_layer) + offset, _headDim);
                scores[p] = TensorPrimitives.Dot(query, key) * scale;
            }

            float max = TensorPrimitives.Max(scores);
            double sum = 0;
            for (int p = 0; p < length; p++)
            {
                float e = MathF.Exp(scores[p] - max);
                scores[p] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            TensorPrimitives.Multiply(scores, inv, scores);

            output.Clear();
            for (int p = 0; p < length; p++)
            {
                long offset = (long)p * _kvDim + kvHead * _headDim;
                float weight = f16 ? (float)(Half)scores[p] : scores[p];
                ReadOnlySpan<float> value = f16 ? Widen(cache.ValuesF16(_layer) + offset, row) : new(cache.ValuesF32(_layer) + offset, _headDim);
                TensorPrimitives.MultiplyAdd(value, weight, output, output);
            }
        }
    }

    private ReadOnlySpan<float> Widen(Half* source, Span<float> destination)
    {
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, _headDim), destination);
        return destination;
    }
}
