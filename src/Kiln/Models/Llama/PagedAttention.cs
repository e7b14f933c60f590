using System.Numerics.Tensors;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention for the rows of a batched step, each row reading its own sequence's keys and
/// values through that sequence's block table; one (row, head) pair per work item. Every row is summed in one fixed
/// order — llama.cpp's batch order (<see cref="Attention"/>'s tinyBLAS path: one 8-lane accumulator for K·Q,
/// position p into lane p mod 8 for V·P), whatever the number of rows — so a row's result depends only on its own
/// sequence: batch invariance. Softmax and the F16 roundings are <see cref="Attention"/>'s.
/// </summary>
internal sealed unsafe class PagedAttention : IParallelWork
{
    private const int Lanes = F32.Lanes;

    private readonly int _heads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly float[][] _scores;
    private readonly float[][] _keyScratch;
    private readonly float[][] _queryScratch;
    private readonly float[][] _valueLanes;

    private PagedKvCache? _cache;
    private IReadOnlyList<PagedChunk>? _chunks;
    private int[]? _rowChunk;
    private int[]? _rowPosition;
    private int _layer;
    private float* _q;
    private float* _out;

    public PagedAttention(LlamaConfig config, int contextLength, int threads)
    {
        _heads = config.HeadCount;
        _headDim = config.HeadDim;
        _groupSize = config.GroupSize;
        _scores = new float[threads][];
        _keyScratch = new float[threads][];
        _queryScratch = new float[threads][];
        _valueLanes = new float[threads][];
        for (int i = 0; i < threads; i++)
        {
            _scores[i] = new float[contextLength + Lanes];
            _keyScratch[i] = new float[_headDim];
            _queryScratch[i] = new float[_headDim];
            _valueLanes[i] = new float[Lanes * _headDim];
        }
    }

    /// <summary>
    /// out[r] = softmax(q[r]·Kᵀ / √d) · V over positions [0, position(r)] of row r's sequence, for rows [0, rows).
    /// The rows' own keys and values must already be stored.
    /// </summary>
    public void Run(WorkerPool pool, PagedKvCache cache, int layer, IReadOnlyList<PagedChunk> chunks, int[] rowChunk, int[] rowPosition,
        int rows, float* q, float* output)
    {
        _cache = cache;
        _chunks = chunks;
        _rowChunk = rowChunk;
        _rowPosition = rowPosition;
        _layer = layer;
        _q = q;
        _out = output;
        pool.For(rows * _heads, this);
        _cache = null;
        _chunks = null;
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        var cache = _cache!;
        int bs = cache.BlockSize;
        bool f16 = cache.Type == KvCacheType.F16;
        float scale = 1f / MathF.Sqrt(_headDim);
        Span<float> scoresAll = _scores[worker];
        Span<float> key = _keyScratch[worker];
        Span<float> query = _queryScratch[worker];
        Span<float> lanes = _valueLanes[worker];
        Span<float> eight = stackalloc float[Lanes];
        int qDim = _heads * _headDim;
        int hd = _headDim;

        for (int item = begin; item < end; item++)
        {
            int row = item / _heads;
            int h = item % _heads;
            int kvHead = h / _groupSize;
            int[] table = _chunks![_rowChunk![row]].BlockTable;
            int length = _rowPosition![row] + 1;
            var q = new ReadOnlySpan<float>(_q + (long)row * qDim + h * hd, hd);
            var output = new Span<float>(_out + (long)row * qDim + h * hd, hd);
            var scores = scoresAll[..((length + Lanes - 1) / Lanes * Lanes)];

            if (f16)
            {
                for (int d = 0; d < hd; d++)
                    query[d] = (float)(Half)q[d];
            }
            else
            {
                q.CopyTo(query);
            }

            for (int p = 0; p < length; p++)
            {
                int slot = table[p / bs] * bs + p % bs;
                scores[p] = Attention.KeyDot(cache.ReadKey(_layer, slot, kvHead * hd, hd, key), query, f16, batched: true) * scale;
            }

            Attention.Softmax(scores, length);
            if (f16)
            {
                for (int p = 0; p < length; p++)
                    scores[p] = (float)(Half)scores[p];
            }

            lanes.Clear();
            for (int p = 0; p < length; p++)
            {
                int slot = table[p / bs] * bs + p % bs;
                ReadOnlySpan<float> v = cache.ReadValue(_layer, slot, kvHead * hd, hd, key);
                var lane = lanes.Slice(p % Lanes * hd, hd);
                TensorPrimitives.FusedMultiplyAdd(v, scores[p], lane, lane);
            }
            for (int d = 0; d < hd; d++)
            {
                for (int l = 0; l < Lanes; l++)
                    eight[l] = lanes[l * hd + d];
                output[d] = F32.SumLanesHalving(eight);
            }
        }
    }
}
