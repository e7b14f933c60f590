using System.Numerics.Tensors;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention for the rows of a batched step, each row reading its own sequence's keys and
/// values through that sequence's block table; one (row, KV head) pair per work item, the query heads of that
/// group taken together so that each cached key and value row is read (and widened from F16) once for all of
/// them rather than once per query head. Every (row, head) is summed in one fixed order — llama.cpp's batch order
/// (<see cref="Attention"/>'s tinyBLAS path: one 8-lane accumulator for K·Q, position p into lane p mod 8 for V·P),
/// whatever the number of rows — so a row's result depends only on its own sequence: batch invariance. Softmax
/// and the F16 roundings are <see cref="Attention"/>'s.
/// </summary>
internal sealed unsafe class PagedAttention : IParallelWork
{
    private const int Lanes = F32.Lanes;

    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly int _scoreStride;
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
        _kvHeads = config.HeadCountKv;
        _headDim = config.HeadDim;
        _groupSize = config.GroupSize;
        _scoreStride = contextLength + Lanes;
        _scores = new float[threads][];
        _keyScratch = new float[threads][];
        _queryScratch = new float[threads][];
        _valueLanes = new float[threads][];
        for (int i = 0; i < threads; i++)
        {
            _scores[i] = new float[_groupSize * _scoreStride];
            _keyScratch[i] = new float[_headDim];
            _queryScratch[i] = new float[_groupSize * _headDim];
            _valueLanes[i] = new float[_groupSize * Lanes * _headDim];
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
        pool.For(rows * _kvHeads, this);
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
        Span<float> queries = _queryScratch[worker];
        Span<float> lanesAll = _valueLanes[worker];
        Span<float> eight = stackalloc float[Lanes];
        int qDim = _heads * _headDim;
        int hd = _headDim;
        int group = _groupSize;

        for (int item = begin; item < end; item++)
        {
            int row = item / _kvHeads;
            int kvHead = item % _kvHeads;
            int[] table = _chunks![_rowChunk![row]].BlockTable;
            int length = _rowPosition![row] + 1;
            int padded = (length + Lanes - 1) / Lanes * Lanes;
            // Query heads kvHead·group … kvHead·group + group − 1 are contiguous in the row.
            var q = new ReadOnlySpan<float>(_q + (long)row * qDim + kvHead * group * hd, group * hd);
            var output = new Span<float>(_out + (long)row * qDim + kvHead * group * hd, group * hd);

            if (f16)
            {
                for (int d = 0; d < group * hd; d++)
                    queries[d] = (float)(Half)q[d];
            }
            else
            {
                q.CopyTo(queries);
            }

            for (int p = 0; p < length; p++)
            {
                int slot = table[p / bs] * bs + p % bs;
                var k = cache.ReadKey(_layer, slot, kvHead * hd, hd, key);
                for (int g = 0; g < group; g++)
                    scoresAll[g * _scoreStride + p] = Attention.KeyDot(k, queries.Slice(g * hd, hd), f16, batched: true) * scale;
            }

            for (int g = 0; g < group; g++)
            {
                var scores = scoresAll.Slice(g * _scoreStride, padded);
                Attention.Softmax(scores, length);
                if (f16)
                {
                    for (int p = 0; p < length; p++)
                        scores[p] = (float)(Half)scores[p];
                }
            }

            var lanes = lanesAll[..(group * Lanes * hd)];
            lanes.Clear();
            for (int p = 0; p < length; p++)
            {
                int slot = table[p / bs] * bs + p % bs;
                ReadOnlySpan<float> v = cache.ReadValue(_layer, slot, kvHead * hd, hd, key);
                for (int g = 0; g < group; g++)
                {
                    var lane = lanes.Slice((g * Lanes + p % Lanes) * hd, hd);
                    TensorPrimitives.FusedMultiplyAdd(v, scoresAll[g * _scoreStride + p], lane, lane);
                }
            }
            for (int g = 0; g < group; g++)
            {
                var headLanes = lanes.Slice(g * Lanes * hd, Lanes * hd);
                for (int d = 0; d < hd; d++)
                {
                    for (int l = 0; l < Lanes; l++)
                        eight[l] = headLanes[l * hd + d];
                    output[g * hd + d] = F32.SumLanesHalving(eight);
                }
            }
        }
    }
}
