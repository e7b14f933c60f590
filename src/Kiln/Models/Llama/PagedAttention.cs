using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Causal grouped-query attention for the rows of a batched step, each row reading its own sequence's keys and
/// values through that sequence's block table. Every row is summed in one fixed order — llama.cpp's batch order
/// (<see cref="Attention"/>'s tinyBLAS path: one 8-lane accumulator for K·Q, position p into lane p mod 8 for V·P),
/// whatever the number of rows — so a row's result depends only on its own sequence: batch invariance. Softmax and
/// the F16 roundings are <see cref="Attention"/>'s. One work item is a (KV head, tile of a chunk's consecutive rows)
/// pair, run by <see cref="KvGroupAttention"/>, so a prompt chunk converts each key and value once per tile rather
/// than once per (row, head).
/// </summary>
internal sealed unsafe class PagedAttention : IParallelWork
{
    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _groupSize;
    private readonly KvGroupAttention[] _groups;
    private readonly int _tokensPerTile;
    private int[] _tileFirstRow = new int[64];
    private int[] _tileRows = new int[64];
    private int _tiles;

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
        _groups = new KvGroupAttention[threads];
        for (int i = 0; i < threads; i++)
            _groups[i] = new KvGroupAttention(_headDim, _groupSize, contextLength);
        _tokensPerTile = _groups[0].TokensPerTile;
    }

    /// <summary>
    /// out[r] = softmax(q[r]·Kᵀ / √d) · V over positions [0, position(r)] of row r's sequence, for rows [0, rows).
    /// The rows' own keys and values must already be stored; a chunk's rows are consecutive, in position order.
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
        if (_tileFirstRow.Length < rows)
        {
            _tileFirstRow = new int[rows];
            _tileRows = new int[rows];
        }
        _tiles = 0;
        for (int r = 0; r < rows; )
        {
            int first = r++;
            while (r < rows && r - first < _tokensPerTile && rowChunk[r] == rowChunk[first]
                   && rowPosition[r] == rowPosition[r - 1] + 1)
                r++;
            _tileFirstRow[_tiles] = first;
            _tileRows[_tiles++] = r - first;
        }
        pool.ForDynamic(_kvHeads * _tiles, this, chunksPerThread: 4);
        _cache = null;
        _chunks = null;
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        var cache = _cache!;
        var group = _groups[worker];
        bool f16 = cache.Type == KvCacheType.F16;
        float scale = 1f / MathF.Sqrt(_headDim);
        int qDim = _heads * _headDim;
        Span<int> lengths = stackalloc int[_tokensPerTile];
        for (int item = begin; item < end; item++)
        {
            int kvHead = item / _tiles;
            int tile = item % _tiles;
            int first = _tileFirstRow[tile];
            int count = _tileRows[tile];
            for (int t = 0; t < count; t++)
                lengths[t] = _rowPosition![first + t] + 1;
            var rows = new PagedKeyValueRows(cache, _layer, _chunks![_rowChunk![first]].BlockTable, kvHead, _headDim);
            if (item + 1 < end)
                PrefetchItem(cache, item + 1);
            group.Run(ref rows, _q + (long)first * qDim, _out + (long)first * qDim, qDim, kvHead * _groupSize, count,
                lengths[..count], f16, scale);
        }
    }

    /// <summary>
    /// Starts the next item's first keys and values on their way from memory while this one computes: between two
    /// layers the weights stream through the caches, so every item's rows come from memory and would otherwise be
    /// waited for one row after another.
    /// </summary>
    private void PrefetchItem(PagedKvCache cache, int item)
    {
        int tile = item % _tiles;
        int last = _tileFirstRow[tile] + _tileRows[tile] - 1;
        var rows = new PagedKeyValueRows(cache, _layer, _chunks![_rowChunk![last]].BlockTable, item / _tiles, _headDim);
        int count = Math.Min(_rowPosition![last] + 1, KvGroupAttention.PositionTile);
        rows.Prefetch(values: false, 0, count);
        rows.Prefetch(values: true, 0, count);
    }
}
