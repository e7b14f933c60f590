using System.Numerics.Tensors;
using Kiln.Compute;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Models.Gpt2;

/// <summary>
/// The state of one sequence being run through a <see cref="Gpt2Model"/>: its KV cache, its position and the
/// forward pass's scratch, allocated once so that evaluating tokens allocates nothing. The graph is llama.cpp's
/// build_gpt2: x = token + position embedding; per block x += attn_output(attention(attn_qkv(LayerNorm(x)))),
/// x += ffn_down(GELU(ffn_up(LayerNorm(x)))), every product followed by its bias; logits = output(LayerNorm(x)).
/// Attention and the KV cache are the Llama path's (no rotation: positions are in the embedding).
/// </summary>
public sealed unsafe class Gpt2Context : ModelContext
{
    private readonly Gpt2Model _model;
    private readonly Gpt2Config _c;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private readonly MatMul _matmul;
    private readonly Attention _attention;
    private readonly FlashAttention? _flashAttention;
    private readonly KvCache _cache;

    // Activations, row-major [batch, width].
    private readonly float[] _x;
    private readonly float[] _xb;
    private readonly float[] _xb2;
    private readonly float[] _qkv;
    private readonly float[] _q;
    private readonly float[] _att;
    private readonly float[] _hb;
    private readonly float[] _position;

    public Gpt2Context(Gpt2Model model, Gpt2ContextOptions? options = null)
    {
        options ??= new Gpt2ContextOptions();
        _model = model;
        _c = model.Config;
        if (options.ContextLength > _c.ContextLength)
            throw new ArgumentException(
                $"a context of {options.ContextLength} tokens is longer than this GPT-2 model's {_c.ContextLength} learned positions");
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
        _attention = new Attention(_c.HeadCount, _c.HeadCountKv, _c.HeadDim, ctx, _pool.ThreadCount);
        _flashAttention = options.FlashAttention ? new FlashAttention(_c.HeadCount, _c.HeadCountKv, _c.HeadDim, _pool.ThreadCount) : null;
        int b = MaxBatch, dim = _c.EmbeddingLength;
        _x = new float[b * dim];
        _xb = new float[b * dim];
        _xb2 = new float[b * dim];
        _qkv = new float[b * _c.QkvDim];
        _q = new float[b * dim];
        _att = new float[b * dim];
        _hb = new float[b * _c.FeedForwardLength];
        _position = new float[dim];
    }

    public Gpt2Model Model => _model;
    public override int ContextLength { get; }
    public override int MaxBatch { get; }
    public override int ThreadCount => _pool.ThreadCount;
    public override int VocabSize => _c.VocabSize;
    public long KvCacheBytes => _cache.ByteSize;

    /// <summary>
    /// Runs the batch through every layer; as llama.cpp does, the last layer's feed-forward block runs only on the
    /// <paramref name="outputs"/> rows that need logits, which end up in rows [0, outputs).
    /// </summary>
    protected override void EvaluateBatch(ReadOnlySpan<int> tokens, int outputs)
    {
        int n = tokens.Length;
        int dim = _c.EmbeddingLength;
        int kvDim = _c.KvDim;
        int qkvDim = _c.QkvDim;
        int ffn = _c.FeedForwardLength;
        float eps = _c.LayerNormEpsilon;
        int start = Position;

        var embedding = _model.TokenEmbedding;
        var positions = _model.PositionEmbedding;
        for (int t = 0; t < n; t++)
        {
            var x = _x.AsSpan(t * dim, dim);
            RowKernels.Dequantize(embedding.Type, embedding.Row(tokens[t]), x);
            RowKernels.Dequantize(positions.Type, positions.Row(start + t), _position);
            TensorPrimitives.Add(x, _position, x);
        }

        for (int l = 0; l < _c.BlockCount; l++)
        {
            var layer = _model.Layers[l];

            for (int t = 0; t < n; t++)
                LayerNorm.Apply(_x.AsSpan(t * dim, dim), layer.AttentionNormWeight, layer.AttentionNormBias, eps, _xb.AsSpan(t * dim, dim));
            _matmul.Run(layer.Qkv, _xb, n, _qkv);
            for (int t = 0; t < n; t++)
            {
                var qkv = _qkv.AsSpan(t * qkvDim, qkvDim);
                TensorPrimitives.Add(qkv, layer.QkvBias, qkv);
                qkv[..dim].CopyTo(_q.AsSpan(t * dim, dim));
                _cache.Store(l, start + t, qkv.Slice(dim, kvDim), qkv.Slice(dim + kvDim, kvDim));
            }

            fixed (float* pq = _q, patt = _att)
            {
                if (_flashAttention is not null)
                    _flashAttention.Run(_pool, _cache, l, start, n, pq, patt);
                else
                    _attention.Run(_pool, _cache, l, start, n, pq, patt);
            }

            _matmul.Run(layer.Output, _att, n, _xb2);
            AddBias(_xb2, layer.OutputBias, n);

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

            for (int t = 0; t < rows; t++)
                LayerNorm.Apply(_x.AsSpan(t * dim, dim), layer.FeedForwardNormWeight, layer.FeedForwardNormBias, eps, _xb.AsSpan(t * dim, dim));
            _matmul.Run(layer.Up, _xb, rows, _hb);
            AddBias(_hb, layer.UpBias, rows);
            Activations.Gelu(_hb.AsSpan(0, rows * ffn));
            _matmul.Run(layer.Down, _hb, rows, _xb2);
            AddBias(_xb2, layer.DownBias, rows);
            TensorPrimitives.Add(_x.AsSpan(0, rows * dim), _xb2.AsSpan(0, rows * dim), _x.AsSpan(0, rows * dim));
        }
        Position = start + n;
    }

    private static void AddBias(float[] rows, float[] bias, int count)
    {
        for (int t = 0; t < count; t++)
        {
            var row = rows.AsSpan(t * bias.Length, bias.Length);
            TensorPrimitives.Add(row, bias, row);
        }
    }

    /// <summary>Logits of residual rows [0, rows).</summary>
    protected override void ComputeLogits(int rows, Span<float> logits)
    {
        int dim = _c.EmbeddingLength;
        for (int t = 0; t < rows; t++)
            LayerNorm.Apply(_x.AsSpan(t * dim, dim), _model.OutputNormWeight, _model.OutputNormBias, _c.LayerNormEpsilon, _xb.AsSpan(t * dim, dim));
        _matmul.Run(_model.Output, _xb, rows, logits);
    }

    public override void Dispose()
    {
        _cache.Dispose();
        if (_ownsPool)
            _pool.Dispose();
    }
}
