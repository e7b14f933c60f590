using Kiln.Compute;
using Kiln.Models;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Tensors;
using Kiln.Threading;
using Kiln.Training.Ops;

namespace Kiln.Training.Lora;

/// <summary>
/// A GGUF Llama model with trainable LoRA adapters: the base weights stay memory-mapped in their stored type and
/// frozen (<see cref="FrozenLoraLinear{T}"/> dequantizes tiles on the fly), the adapters' A and B are the only
/// parameters. Forward and backward follow <see cref="Models.LlamaTrainModel{T}"/> (the same RMSNorm, RoPE,
/// attention, SwiGLU and cross-entropy ops) with the projections written into its fused Q/K/V and gate/up layout.
/// Gradients flow to the activations through W but are kept only for A and B.
/// </summary>
public sealed class LoraLlamaModel
{
    private readonly LlamaModel _base;
    private readonly LlamaConfig _c;
    private readonly LoraAdapter _adapter;
    private readonly FrozenLoraLinear<float> _linear;
    private readonly Ops.RmsNorm<float> _norm;
    private readonly Ops.SwiGlu<float> _swiglu;
    private readonly CausalAttention<float> _attention;
    private readonly Residual<float> _residual;
    private readonly SoftmaxCrossEntropy<float> _loss;
    private readonly (ParameterTensor A, ParameterTensor B, float Scale)?[] _terms;
    private Rope<float>? _rope;
    private int _batch, _seq;
    private int[] _tokens = [], _targets = [];
    private bool _haveTargets;
    private float[][] _stream = [];
    private Activations[] _acts = [];
    private float[] _final = [], _finalRstd = [], _logits = [], _losses = [];
    private float[] _dStream = [], _dFinal = [], _dSw = [], _dGu = [], _dN2 = [], _dAtt = [], _dQkv = [], _dN1 = [], _du = [], _normSink = [];

    private sealed class Activations(int rows, int dim, int qDim, int qkvDim, int ffn, int heads, int batch, int seq, int rank)
    {
        public readonly float[] N1 = new float[rows * dim], R1 = new float[rows];
        public readonly float[] Qkv = new float[rows * qkvDim];
        public readonly float[] Probs = new float[batch * heads * seq * seq], Lse = new float[batch * heads * seq];
        public readonly float[] Att = new float[rows * qDim], Proj = new float[rows * dim], Mid = new float[rows * dim];
        public readonly float[] N2 = new float[rows * dim], R2 = new float[rows];
        public readonly float[] GateUp = new float[rows * 2 * ffn], Sw = new float[rows * ffn], Down = new float[rows * dim];
        public readonly float[][] U = Enumerable.Range(0, LoraTargetNames.Count).Select(_ => new float[rows * rank]).ToArray();
    }

    public LoraLlamaModel(LlamaModel baseModel, LoraAdapter adapter, WorkerPool? pool)
    {
        _base = baseModel;
        _c = baseModel.Config;
        string name = baseModel.File.Path;
        if (_c.RopeOrdering != RopeOrdering.Normal || _c.RopeDimensions != _c.HeadDim || _c.RopeFreqScale != 1f)
            throw new ModelFormatException($"{name}: finetuning supports Llama-style RoPE over whole heads without scaling ({_c.Architecture} uses another)");
        if (baseModel.Layers.Any(l => l.QueryBias is not null || l.KeyBias is not null || l.ValueBias is not null))
            throw new ModelFormatException($"{name}: finetuning models with Q/K/V biases is not supported");
        adapter.Validate(_c, name);
        _adapter = adapter;
        _linear = new FrozenLoraLinear<float>(pool);
        _norm = new Ops.RmsNorm<float>(pool);
        _swiglu = new Ops.SwiGlu<float>(pool);
        _attention = new CausalAttention<float>(pool, _c.HeadCount, _c.HeadCountKv, _c.HeadDim, recompute: false);
        _residual = new Residual<float>(pool);
        _loss = new SoftmaxCrossEntropy<float>(pool);
        Pool = pool;

        var builder = new ParameterSet<float>.Builder();
        _terms = new (ParameterTensor, ParameterTensor, float)?[_c.BlockCount * LoraTargetNames.Count];
        foreach (var w in adapter.Weights)
            _terms[w.Layer * LoraTargetNames.Count + (int)w.Target] =
                (builder.Add(w.TensorName + ".lora_a", w.Rank, w.InDim), builder.Add(w.TensorName + ".lora_b", w.OutDim, w.Rank), adapter.ScaleOf(w));
        Parameters = builder.Build();
        foreach (var w in adapter.Weights)
        {
            var (a, b, _) = _terms[w.Layer * LoraTargetNames.Count + (int)w.Target]!.Value;
            w.A.CopyTo(Parameters.Value(a));
            w.B.CopyTo(Parameters.Value(b));
        }
    }

    private WorkerPool? Pool { get; }

    public LlamaConfig Config => _c;

    /// <summary>A and B of every adapted matrix, in one buffer (with gradients) for the optimizer.</summary>
    public ParameterSet<float> Parameters { get; }

    /// <summary>Logits [rows, vocab] after a Forward without targets.</summary>
    public ReadOnlySpan<float> Logits => _logits;

    private int QkvDim => _c.QueryDim + 2 * _c.KvDim;

    /// <summary>The adapter with the current parameter values copied back into it.</summary>
    public LoraAdapter Adapter
    {
        get
        {
            foreach (var w in _adapter.Weights)
            {
                var (a, b, _) = _terms[w.Layer * LoraTargetNames.Count + (int)w.Target]!.Value;
                Parameters.Value(a).Span.CopyTo(w.A);
                Parameters.Value(b).Span.CopyTo(w.B);
            }
            return _adapter;
        }
    }

    private LoraTerm<float> Term(int layer, LoraTarget target, Activations acts)
    {
        if (_terms[layer * LoraTargetNames.Count + (int)target] is not var (a, b, scale))
            return LoraTerm<float>.None;
        int rank = a.Shape[0];
        return new LoraTerm<float>(Parameters.Value(a), Parameters.Value(b), Parameters.Gradient(a), Parameters.Gradient(b),
            acts.U[(int)target], _du, rank, scale);
    }

    /// <summary>Mean cross-entropy of inputs[batch·seqLen] against targets; without targets, NaN and the logits only.</summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch, int seqLen)
    {
        if (batch <= 0 || seqLen <= 0 || seqLen > _c.ContextLength)
            throw new ArgumentException($"batch {batch} and sequence length {seqLen} must be positive, the sequence at most the context of {_c.ContextLength}");
        int rows = batch * seqLen;
        if (inputs.Length != rows || (!targets.IsEmpty && targets.Length != rows))
            throw new ArgumentException($"expected {rows} input (and target) tokens, got {inputs.Length} ({targets.Length})");
        if (batch != _batch || seqLen != _seq)
            Allocate(batch, seqLen);
        inputs.CopyTo(_tokens);
        _haveTargets = !targets.IsEmpty;
        if (_haveTargets)
            targets.CopyTo(_targets);

        int dim = _c.EmbeddingLength, vocab = _c.VocabSize;
        var embd = _base.TokenEmbedding;
        for (int r = 0; r < rows; r++)
        {
            if ((uint)_tokens[r] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(inputs), _tokens[r], $"token id outside the vocabulary of {vocab}");
            RowKernels.Dequantize(embd.Type, embd.Row(_tokens[r]), _stream[0].AsSpan(r * dim, dim));
        }
        for (int l = 0; l < _c.BlockCount; l++)
            BlockForward(l, _stream[l], _stream[l + 1]);
        _norm.Forward(_stream[_c.BlockCount], _base.OutputNorm, _final, _finalRstd, rows, dim, _c.RmsEpsilon);
        _linear.Forward(_base.Output, _final, _logits, rows, vocab, 0, LoraTerm<float>.None);
        if (!_haveTargets)
            return double.NaN;
        _loss.Forward(_logits, _targets, _losses, rows, vocab);
        double sum = 0;
        foreach (float l in _losses)
            sum += l;
        return sum / rows;
    }

    /// <summary>Adds d(mean loss)/d(A, B) of the last Forward into the gradients.</summary>
    public void Backward()
    {
        if (!_haveTargets)
            throw new InvalidOperationException("Backward needs a Forward with targets first");
        _haveTargets = false;
        int rows = _batch * _seq, dim = _c.EmbeddingLength, vocab = _c.VocabSize;
        _loss.Backward(_logits, _targets, _logits, rows, vocab, 1f / rows);
        Array.Clear(_dFinal);
        _linear.Backward(_base.Output, _final, _logits, _dFinal, rows, vocab, 0, LoraTerm<float>.None);
        Array.Clear(_dStream);
        _norm.Backward(_dFinal, _stream[_c.BlockCount], _base.OutputNorm, _finalRstd, _dStream, _normSink, rows, dim);
        for (int l = _c.BlockCount - 1; l >= 0; l--)
            BlockBackward(l, _stream[l], _dStream);
    }

    private void BlockForward(int l, float[] x, float[] output)
    {
        var w = _base.Layers[l];
        var a = _acts[l];
        int rows = _batch * _seq, c = _c.EmbeddingLength, f = _c.FeedForwardLength, qd = _c.QueryDim, kvd = _c.KvDim, qkv = QkvDim;
        _norm.Forward(x, w.AttentionNorm, a.N1, a.R1, rows, c, _c.RmsEpsilon);
        _linear.Forward(w.Query, a.N1, a.Qkv, rows, qkv, 0, Term(l, LoraTarget.Query, a));
        _linear.Forward(w.Key, a.N1, a.Qkv, rows, qkv, qd, Term(l, LoraTarget.Key, a));
        _linear.Forward(w.Value, a.N1, a.Qkv, rows, qkv, qd + kvd, Term(l, LoraTarget.Value, a));
        _rope!.Forward(a.Qkv, rows, qkv, _c.HeadCount + _c.HeadCountKv, _seq);
        _attention.Forward(a.Qkv, a.Att, a.Probs, a.Lse, _batch, _seq);
        _linear.Forward(w.Output, a.Att, a.Proj, rows, c, 0, Term(l, LoraTarget.Output, a));
        _residual.Forward(x, a.Proj, a.Mid);
        _norm.Forward(a.Mid, w.FeedForwardNorm, a.N2, a.R2, rows, c, _c.RmsEpsilon);
        _linear.Forward(w.Gate, a.N2, a.GateUp, rows, 2 * f, 0, Term(l, LoraTarget.Gate, a));
        _linear.Forward(w.Up, a.N2, a.GateUp, rows, 2 * f, f, Term(l, LoraTarget.Up, a));
        _swiglu.Forward(a.GateUp, a.Sw, rows, f);
        _linear.Forward(w.Down, a.Sw, a.Down, rows, c, 0, Term(l, LoraTarget.Down, a));
        _residual.Forward(a.Mid, a.Down, output);
    }

    private void BlockBackward(int l, float[] x, float[] dStream)
    {
        var w = _base.Layers[l];
        var a = _acts[l];
        int rows = _batch * _seq, c = _c.EmbeddingLength, f = _c.FeedForwardLength, qd = _c.QueryDim, kvd = _c.KvDim, qkv = QkvDim;
        Array.Clear(_dSw);
        Array.Clear(_dGu);
        Array.Clear(_dN2);
        Array.Clear(_dAtt);
        Array.Clear(_dQkv);
        Array.Clear(_dN1);
        // output = mid + down: d(down) is dStream itself; the norm path then adds into it, giving d(mid)
        _linear.Backward(w.Down, a.Sw, dStream, _dSw, rows, c, 0, Term(l, LoraTarget.Down, a));
        _swiglu.Backward(_dSw, a.GateUp, _dGu, rows, f);
        _linear.Backward(w.Gate, a.N2, _dGu, _dN2, rows, 2 * f, 0, Term(l, LoraTarget.Gate, a));
        _linear.Backward(w.Up, a.N2, _dGu, _dN2, rows, 2 * f, f, Term(l, LoraTarget.Up, a));
        _norm.Backward(_dN2, a.Mid, w.FeedForwardNorm, a.R2, dStream, _normSink, rows, c);
        _linear.Backward(w.Output, a.Att, dStream, _dAtt, rows, c, 0, Term(l, LoraTarget.Output, a));
        _attention.Backward(_dAtt, a.Qkv, a.Probs, a.Lse, _dQkv, _batch, _seq);
        _rope!.Backward(_dQkv, rows, qkv, _c.HeadCount + _c.HeadCountKv, _seq);
        _linear.Backward(w.Query, a.N1, _dQkv, _dN1, rows, qkv, 0, Term(l, LoraTarget.Query, a));
        _linear.Backward(w.Key, a.N1, _dQkv, _dN1, rows, qkv, qd, Term(l, LoraTarget.Key, a));
        _linear.Backward(w.Value, a.N1, _dQkv, _dN1, rows, qkv, qd + kvd, Term(l, LoraTarget.Value, a));
        _norm.Backward(_dN1, x, w.AttentionNorm, a.R1, dStream, _normSink, rows, c);
    }

    private void Allocate(int batch, int seq)
    {
        (_batch, _seq) = (batch, seq);
        int rows = batch * seq, dim = _c.EmbeddingLength, f = _c.FeedForwardLength;
        int rank = _adapter.Weights.Max(w => w.Rank);
        _rope = new Rope<float>(Pool, _c.HeadDim, seq, _c.RopeFreqBase);
        _tokens = new int[rows];
        _targets = new int[rows];
        _stream = new float[_c.BlockCount + 1][];
        for (int l = 0; l <= _c.BlockCount; l++)
            _stream[l] = new float[rows * dim];
        _acts = new Activations[_c.BlockCount];
        for (int l = 0; l < _c.BlockCount; l++)
            _acts[l] = new Activations(rows, dim, _c.QueryDim, QkvDim, f, _c.HeadCount, batch, seq, rank);
        _final = new float[rows * dim];
        _finalRstd = new float[rows];
        _logits = new float[rows * _c.VocabSize];
        _losses = new float[rows];
        _dStream = new float[rows * dim];
        _dFinal = new float[rows * dim];
        _dSw = new float[rows * f];
        _dGu = new float[rows * 2 * f];
        _dN2 = new float[rows * dim];
        _dAtt = new float[rows * _c.QueryDim];
        _dQkv = new float[rows * QkvDim];
        _dN1 = new float[rows * dim];
        _du = new float[rows * rank];
        _normSink = new float[dim];
    }
}
