using System.Numerics.Tensors;
using Kiln.Compute;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// Runs one serving step through a <see cref="LlamaModel"/>: the tokens of every chunk of the step are stacked into
/// one activation matrix, so each weight matrix is read once per step for all sequences (the quantized types through
/// the matrix-matrix tile kernels); attention is per row, through the row's sequence's block table into a shared
/// <see cref="PagedKvCache"/>. Scratch buffers are allocated once for <see cref="MaxBatchTokens"/> rows.
/// </summary>
/// <remarks>
/// Batch invariance: every row-wise operation (norms, RoPE, matrix products in <see cref="MatMul.BatchInvariant"/>
/// mode, <see cref="PagedAttention"/>'s fixed summation order) gives a row the same bits whatever the other rows of
/// the step are, so a sequence's logits — and hence its greedy tokens — do not depend on how it was batched or how
/// its prompt was chunked, and a prefix-cache hit reads exactly the keys and values a recompute would write. The
/// price is that results differ from <see cref="LlamaContext"/> (llama.cpp's orders) in the last bits.
/// </remarks>
public sealed unsafe class LlamaBatchRunner
{
    private readonly LlamaModel _model;
    private readonly LlamaConfig _c;
    private readonly PagedKvCache _cache;
    private readonly WorkerPool _pool;
    private readonly MatMul _matmul;
    private readonly PagedAttention _attention;
    private readonly RotaryEmbedding _rope;

    private readonly int[] _rowChunk;
    private readonly int[] _rowPosition;
    private readonly int[] _rowSlot;
    private readonly int[] _outputRows;
    private readonly float[] _x;
    private readonly float[] _xb;
    private readonly float[] _xb2;
    private readonly float[] _q;
    private readonly float[] _k;
    private readonly float[] _v;
    private readonly float[] _att;
    private readonly float[] _hb;
    private readonly float[] _hb2;

    public LlamaBatchRunner(LlamaModel model, PagedKvCache cache, WorkerPool pool, int maxBatchTokens, int contextLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatchTokens);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(contextLength);
        _model = model;
        _c = model.Config;
        if (cache.Layers != _c.BlockCount || cache.KvDim != _c.KvDim)
            throw new ArgumentException("the KV cache was not made for this model", nameof(cache));
        if (cache.Type == KvCacheType.Q8_0 && _c.HeadDim % Q8_0.BlockSize != 0)
            throw new ArgumentException($"a Q8_0 KV cache needs a head size that is a multiple of {Q8_0.BlockSize}; this model's is {_c.HeadDim} (use f16 or f32)", nameof(cache));
        _cache = cache;
        _pool = pool;
        MaxBatchTokens = maxBatchTokens;
        ContextLength = contextLength;
        _matmul = new MatMul(pool) { BatchInvariant = true };
        _attention = new PagedAttention(_c, contextLength, pool.ThreadCount);
        int b = maxBatchTokens;
        _rope = new RotaryEmbedding(_c, b);
        _rowChunk = new int[b];
        _rowPosition = new int[b];
        _rowSlot = new int[b];
        _outputRows = new int[b];
        _x = new float[b * _c.EmbeddingLength];
        _xb = new float[b * Math.Max(_c.EmbeddingLength, _c.QueryDim)];
        _xb2 = new float[b * _c.EmbeddingLength];
        _q = new float[b * _c.QueryDim];
        _k = new float[b * _c.KvDim];
        _v = new float[b * _c.KvDim];
        _att = new float[b * _c.QueryDim];
        _hb = new float[b * _c.FeedForwardLength];
        _hb2 = new float[b * _c.FeedForwardLength];
    }

    public LlamaModel Model => _model;
    public PagedKvCache Cache => _cache;
    public int MaxBatchTokens { get; }
    public int ContextLength { get; }

    /// <summary>
    /// Runs the chunks. <paramref name="logits"/> receives one vocabulary-sized row per <see cref="PagedOutput.Logits"/>
    /// chunk, in chunk order; <paramref name="hidden"/> one embedding-sized row (final norm applied) per token of the
    /// <see cref="PagedOutput.Hidden"/> chunks, in chunk order.
    /// </summary>
    public void Run(IReadOnlyList<PagedChunk> chunks, Span<float> logits, Span<float> hidden)
    {
        int dim = _c.EmbeddingLength;
        int vocab = _c.VocabSize;
        int n = 0, logitRows = 0, hiddenRows = 0, outputs = 0;
        int bs = _cache.BlockSize;
        for (int ci = 0; ci < chunks.Count; ci++)
        {
            var chunk = chunks[ci];
            if (chunk.Tokens.Length == 0)
                throw new ArgumentException("a chunk has no tokens", nameof(chunks));
            if (chunk.EndPosition > ContextLength)
                throw new ContextOverflowException(chunk.StartPosition, chunk.Tokens.Length, ContextLength);
            if (n + chunk.Tokens.Length > MaxBatchTokens)
                throw new ArgumentException($"the step has more than {MaxBatchTokens} tokens", nameof(chunks));
            if ((chunk.EndPosition + bs - 1) / bs > chunk.BlockTable.Length)
                throw new ArgumentException($"sequence {chunk.SequenceId} has too few blocks for position {chunk.EndPosition - 1}", nameof(chunks));
            for (int t = 0; t < chunk.Tokens.Length; t++)
            {
                int id = chunk.Tokens[t];
                if ((uint)id >= (uint)vocab)
                    throw new ArgumentOutOfRangeException(nameof(chunks), id, $"token id outside the vocabulary of {vocab}");
                int position = chunk.StartPosition + t;
                _rowChunk[n] = ci;
                _rowPosition[n] = position;
                _rowSlot[n] = chunk.Slot(position, bs);
                bool output = chunk.Output == PagedOutput.Hidden || (chunk.Output == PagedOutput.Logits && t == chunk.Tokens.Length - 1);
                if (output)
                    _outputRows[outputs++] = n;
                n++;
            }
            if (chunk.Output == PagedOutput.Logits) logitRows++;
            if (chunk.Output == PagedOutput.Hidden) hiddenRows += chunk.Tokens.Length;
        }
        if (logits.Length < logitRows * vocab)
            throw new ArgumentException("logits buffer too small", nameof(logits));
        if (hidden.Length < hiddenRows * dim)
            throw new ArgumentException("hidden buffer too small", nameof(hidden));
        if (n == 0)
            return;

        Forward(chunks, n, outputs);

        // Output rows now sit at [0, outputs) in the order of _outputRows, normed in _xb.
        int logitsDone = 0, hiddenDone = 0;
        for (int o = 0; o < outputs; o++)
        {
            var chunk = chunks[_rowChunk[_outputRows[o]]];
            var row = _xb.AsSpan(o * dim, dim);
            if (chunk.Output == PagedOutput.Hidden)
                row.CopyTo(hidden.Slice(hiddenDone++ * dim, dim));
            else
                row.CopyTo(_xb2.AsSpan(logitsDone++ * dim, dim));
        }
        if (logitRows > 0)
            _matmul.Run(_model.Output, _xb2, logitRows, logits[..(logitRows * vocab)]);
    }

    private void Forward(IReadOnlyList<PagedChunk> chunks, int n, int outputs)
    {
        int dim = _c.EmbeddingLength;
        int qDim = _c.QueryDim;
        int kvDim = _c.KvDim;
        int ffn = _c.FeedForwardLength;
        float eps = _c.RmsEpsilon;

        var e = _model.TokenEmbedding;
        for (int r = 0, ci = 0; ci < chunks.Count; ci++)
        {
            foreach (int id in chunks[ci].Tokens)
            {
                RowKernels.Dequantize(e.Type, e.Row(id), _x.AsSpan(r * dim, dim));
                _rope.SetPosition(r, _rowPosition[r]);
                r++;
            }
        }

        for (int l = 0; l < _c.BlockCount; l++)
        {
            var layer = _model.Layers[l];
            RmsNorm.ApplyRows(_x, n, layer.AttentionNorm, eps, _xb);
            _matmul.Run(layer.Query, _xb, n, _q);
            _matmul.Run(layer.Key, _xb, n, _k, inputUnchanged: true);
            _matmul.Run(layer.Value, _xb, n, _v, inputUnchanged: true);
            for (int t = 0; t < n; t++)
            {
                var q = _q.AsSpan(t * qDim, qDim);
                var k = _k.AsSpan(t * kvDim, kvDim);
                var v = _v.AsSpan(t * kvDim, kvDim);
                if (layer.QueryBias is { } qb) TensorPrimitives.Add(q, qb, q);
                if (layer.KeyBias is { } kb) TensorPrimitives.Add(k, kb, k);
                if (layer.ValueBias is { } vb) TensorPrimitives.Add(v, vb, v);
                _rope.Apply(q, _c.HeadCount, t);
                _rope.Apply(k, _c.HeadCountKv, t);
                _cache.Store(l, _rowSlot[t], k, v);
            }

            fixed (float* pq = _q, patt = _att)
                _attention.Run(_pool, _cache, l, chunks, _rowChunk, _rowPosition, n, pq, patt);
            _matmul.Run(layer.Output, _att, n, _xb2);

            int rows = n;
            if (l == _c.BlockCount - 1 && outputs < n)
            {
                // Only output rows go on; gather them (ascending, so moving row o never overwrites a row still needed).
                for (int o = 0; o < outputs; o++)
                {
                    int from = _outputRows[o];
                    if (from == o)
                        continue;
                    _x.AsSpan(from * dim, dim).CopyTo(_x.AsSpan(o * dim, dim));
                    _xb2.AsSpan(from * dim, dim).CopyTo(_xb2.AsSpan(o * dim, dim));
                }
                rows = outputs;
            }
            TensorPrimitives.Add(_x.AsSpan(0, rows * dim), _xb2.AsSpan(0, rows * dim), _x.AsSpan(0, rows * dim));
            if (rows == 0)
                continue;

            RmsNorm.ApplyRows(_x, rows, layer.FeedForwardNorm, eps, _xb);
            _matmul.Run(layer.Gate, _xb, rows, _hb);
            _matmul.Run(layer.Up, _xb, rows, _hb2, inputUnchanged: true);
            for (int t = 0; t < rows; t++)
                SwiGlu.Apply(_hb.AsSpan(t * ffn, ffn), _hb2.AsSpan(t * ffn, ffn));
            _matmul.Run(layer.Down, _hb, rows, _xb2);
            TensorPrimitives.Add(_x.AsSpan(0, rows * dim), _xb2.AsSpan(0, rows * dim), _x.AsSpan(0, rows * dim));
        }

        RmsNorm.ApplyRows(_x, outputs, _model.OutputNorm, eps, _xb);
    }
}
