using System.Numerics.Tensors;
using Kiln.Compute;
using Kiln.Models.Lora;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Llama;

/// <summary>
/// The state of one sequence being run through a <see cref="LlamaModel"/>: its KV cache, its position,
/// and the scratch buffers of the forward pass, all allocated once here so that evaluating tokens
/// allocates nothing. Tokens are evaluated in batches of up to <see cref="MaxBatch"/> (prompt
/// processing) or one at a time (generation) through the same code.
/// </summary>
public sealed unsafe class LlamaContext : ModelContext
{
    private readonly LlamaModel _model;
    private readonly LlamaConfig _c;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private readonly MatMul _matmul;
    private readonly Attention _attention;
    private readonly FlashAttention? _flashAttention;
    private readonly KvCache _cache;
    private readonly LoraAdapterStack? _lora;

    // Activations, row-major [batch, width].
    private readonly float[] _x;
    private readonly float[] _xb;
    private readonly float[] _xb2;
    private readonly float[] _q;
    private readonly float[] _k;
    private readonly float[] _v;
    private readonly float[] _att;
    private readonly float[] _hb;
    private readonly float[] _hb2;
    private readonly RotaryEmbedding _rope;

    public LlamaContext(LlamaModel model, LlamaContextOptions? options = null)
    {
        options ??= new LlamaContextOptions();
        _model = model;
        _c = model.Config;
        int ctx = options.ContextLength > 0 ? options.ContextLength : Math.Min(_c.ContextLength, LlamaContextOptions.DefaultMaxContext);
        if (options.KvCacheType == KvCacheType.Q8_0 && _c.HeadDim % Q8_0.BlockSize != 0)
            throw new ArgumentException($"a Q8_0 KV cache needs a head size that is a multiple of {Q8_0.BlockSize}; this model's is {_c.HeadDim} (use f16 or f32)");
        if (options.MaxBatch < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxBatch, "batch size must be at least 1");
        ContextLength = ctx;
        MaxBatch = Math.Min(options.MaxBatch, ctx);
        if (options.Pool is { } pool)
        {
            _pool = pool;
        }
        else
        {
            _pool = new WorkerPool(options.Threads > 0 ? options.Threads : WorkerPool.DefaultThreadCount());
            _ownsPool = true;
        }

        _cache = new KvCache(_c.BlockCount, ctx, _c.KvDim, options.KvCacheType);
        _matmul = new MatMul(_pool);
        _attention = new Attention(_c, ctx, _pool.ThreadCount);
        _flashAttention = options.FlashAttention ? new FlashAttention(_c, _pool.ThreadCount) : null;
        int b = MaxBatch;
        _x = new float[b * _c.EmbeddingLength];
        _xb = new float[b * Math.Max(_c.EmbeddingLength, _c.QueryDim)];
        _xb2 = new float[b * _c.EmbeddingLength];
        _q = new float[b * _c.QueryDim];
        _k = new float[b * _c.KvDim];
        _v = new float[b * _c.KvDim];
        _att = new float[b * _c.QueryDim];
        _hb = new float[b * _c.FeedForwardLength];
        _hb2 = new float[b * _c.FeedForwardLength];
        _rope = new RotaryEmbedding(_c, b);
        if (options.Adapters.Count > 0)
            _lora = new LoraAdapterStack(_c, options.Adapters, model.File.Path);
    }

    public LlamaModel Model => _model;
    public override int ContextLength { get; }
    public override int MaxBatch { get; }
    public override int ThreadCount => _pool.ThreadCount;
    public override int VocabSize => _c.VocabSize;
    public long KvCacheBytes => _cache.ByteSize;

    /// <summary>Sees every weight product's input when set (calibration); null, the default, costs one test per product.</summary>
    public IMatMulInputObserver? MatMulInputObserver { get; set; }

    /// <summary>
    /// Runs the batch through every layer. Only the last <paramref name="outputs"/> rows need logits, so, as
    /// llama.cpp does, the last layer's feed-forward block runs on those rows alone; they end up in rows
    /// [0, outputs) of the residual stream.
    /// </summary>
    protected override void EvaluateBatch(ReadOnlySpan<int> tokens, int outputs)
    {
        int n = tokens.Length;
        int dim = _c.EmbeddingLength;
        int qDim = _c.QueryDim;
        int kvDim = _c.KvDim;
        int ffn = _c.FeedForwardLength;
        int start = Position;

        for (int t = 0; t < n; t++)
        {
            var e = _model.TokenEmbedding;
            RowKernels.Dequantize(e.Type, e.Row(tokens[t]), _x.AsSpan(t * dim, dim));
        }
        for (int t = 0; t < n; t++)
            _rope.SetPosition(t, start + t);

        for (int l = 0; l < _c.BlockCount; l++)
        {
            var layer = _model.Layers[l];

            RmsNorm.ApplyRows(_x, n, layer.AttentionNorm, _c.RmsEpsilon, _xb);
            Observe(l, layer.Query, _xb, n);
            _matmul.Run(layer.Query, _xb, n, _q);
            _lora?.Apply(l, LoraTarget.Query, _xb, n, _q);
            Observe(l, layer.Key, _xb, n);
            _matmul.Run(layer.Key, _xb, n, _k, inputUnchanged: true);
            _lora?.Apply(l, LoraTarget.Key, _xb, n, _k);
            Observe(l, layer.Value, _xb, n);
            _matmul.Run(layer.Value, _xb, n, _v, inputUnchanged: true);
            _lora?.Apply(l, LoraTarget.Value, _xb, n, _v);
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
                _cache.Store(l, start + t, k, v);
            }

            fixed (float* pq = _q, patt = _att)
            {
                if (_flashAttention is not null)
                    _flashAttention.Run(_pool, _cache, l, start, n, pq, patt);
                else
                    _attention.Run(_pool, _cache, l, start, n, pq, patt);
            }

            Observe(l, layer.Output, _att, n);
            _matmul.Run(layer.Output, _att, n, _xb2);
            _lora?.Apply(l, LoraTarget.Output, _att, n, _xb2);

            int rows = n;
            if (l == _c.BlockCount - 1 && outputs < n)
            {
                // Rows without logits are finished here; keep the trailing output rows and move them to the top.
                int from = (n - outputs) * dim;
                _x.AsSpan(from, outputs * dim).CopyTo(_x);
                _xb2.AsSpan(from, outputs * dim).CopyTo(_xb2);
                rows = outputs;
            }
            TensorPrimitives.Add(_x.AsSpan(0, rows * dim), _xb2.AsSpan(0, rows * dim), _x.AsSpan(0, rows * dim));
            if (rows == 0)
                continue;

            RmsNorm.ApplyRows(_x, rows, layer.FeedForwardNorm, _c.RmsEpsilon, _xb);
            Observe(l, layer.Gate, _xb, rows);
            _matmul.Run(layer.Gate, _xb, rows, _hb);
            _lora?.Apply(l, LoraTarget.Gate, _xb, rows, _hb);
            Observe(l, layer.Up, _xb, rows);
            _matmul.Run(layer.Up, _xb, rows, _hb2, inputUnchanged: true);
            _lora?.Apply(l, LoraTarget.Up, _xb, rows, _hb2);
            for (int t = 0; t < rows; t++)
                SwiGlu.Apply(_hb.AsSpan(t * ffn, ffn), _hb2.AsSpan(t * ffn, ffn));
            Observe(l, layer.Down, _hb, rows);
            _matmul.Run(layer.Down, _hb, rows, _xb2);
            _lora?.Apply(l, LoraTarget.Down, _hb, rows, _xb2);
            TensorPrimitives.Add(_x.AsSpan(0, rows * dim), _xb2.AsSpan(0, rows * dim), _x.AsSpan(0, rows * dim));
        }
        Position = start + n;
    }

    /// <summary>Logits of residual rows [0, rows).</summary>
    protected override void ComputeLogits(int rows, Span<float> logits)
    {
        int dim = _c.EmbeddingLength;
        RmsNorm.ApplyRows(_x, rows, _model.OutputNorm, _c.RmsEpsilon, _xb);
        Observe(-1, _model.Output, _xb, rows);
        _matmul.Run(_model.Output, _xb, rows, logits);
    }

    private void Observe(int layer, WeightMatrix w, float[] input, int rows) =>
        MatMulInputObserver?.Observe(layer, w.Name, input.AsSpan(0, rows * w.Columns), rows);

    public override void Dispose()
    {
        _cache.Dispose();
        if (_ownsPool)
            _pool.Dispose();
    }
}
