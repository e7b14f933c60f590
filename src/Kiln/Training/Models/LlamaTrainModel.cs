using System.Numerics;
using System.Runtime.CompilerServices;
using Kiln.Threading;
using Kiln.Training.Ops;
using Kiln.Training.Parallel;

namespace Kiln.Training.Models;

/// <summary>
/// Llama: token embedding, pre-RMSNorm blocks without biases, RoPE on Q and K, grouped KV heads, SwiGLU MLP,
/// final RMSNorm, untied output. Tensor names are GGUF's; Q/K/V are one fused projection
/// [(H + 2·Hkv)·hd, dim] and gate/up one [2·ffn, dim], split row-wise into attn_q/k/v and ffn_gate/up on export.
/// Under tensor parallelism each rank holds H/T query heads, Hkv/T KV heads and ffn/T hidden units
/// (<see cref="TensorParallelLayout"/>); all widths below are this rank's.
/// </summary>
public sealed class LlamaTrainModel<T> : TrainableModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly RmsNorm<T> _norm;
    private readonly SwiGlu<T> _swiglu;
    private readonly Embedding<T> _embedding;
    private readonly Rope<T> _rope;
    private ParameterTensor _embd = null!, _outNorm = null!, _output = null!;
    private Block[] _blocks = [];
    private BlockActivations[] _acts = [];
    private T[] _finalRstd = [];
    private T[] _dSw = [], _dGu = [], _dN2 = [], _dAtt = [], _dQkv = [], _dN1 = [];

    private sealed record Block(ParameterTensor AttnNorm, ParameterTensor Qkv, ParameterTensor Output,
        ParameterTensor FfnNorm, ParameterTensor GateUp, ParameterTensor Down);

    /// <summary>What one block keeps for backward. rows = B·T, C = dim, Q = (H + 2·Hkv)·hd, A = H·hd, F = ffn.</summary>
    private sealed class BlockActivations(int rows, int dim, int qkvDim, int attDim, int ffn, int heads, int batch, int seq, bool keepProbs)
    {
        public readonly T[] N1 = new T[rows * dim], R1 = new T[rows];
        public readonly T[] Qkv = new T[rows * qkvDim];                                  // [rows, Q], Q and K rotated
        public readonly T[] Probs = keepProbs ? new T[batch * heads * seq * seq] : [];   // [B, H, T, T]
        public readonly T[] Lse = new T[batch * heads * seq];                            // [B, H, T]
        public readonly T[] Att = new T[rows * attDim], Proj = new T[rows * dim], Mid = new T[rows * dim];
        public readonly T[] N2 = new T[rows * dim], R2 = new T[rows];
        public readonly T[] GateUp = new T[rows * 2 * ffn], Sw = new T[rows * ffn];      // [rows, 2F], [rows, F]
        public readonly T[] Down = new T[rows * dim];

        public long Elements => (long)N1.Length + R1.Length + Qkv.Length + Probs.Length + Lse.Length + Att.Length + Proj.Length + Mid.Length
            + N2.Length + R2.Length + GateUp.Length + Sw.Length + Down.Length;
    }

    public LlamaTrainModel(TrainingConfig config, WorkerPool? pool, Recomputation recompute = Recomputation.None,
        TensorParallel? tensorParallel = null, ModelPart? part = null, ParameterSet<T>? parameters = null)
        : base(config, pool, recompute, tensorParallel, part, parameters)
    {
        if (config.Family != ModelFamily.Llama)
            throw new TrainingConfigException($"LlamaTrainModel needs the llama family, not {config.Family}");
        _norm = new RmsNorm<T>(pool);
        _swiglu = new SwiGlu<T>(pool);
        _embedding = new Embedding<T>(pool);
        _rope = new Rope<T>(pool, config.HeadDim, config.Context, config.RopeFreqBase);
    }

    private int QkvDim => Shard.QkvDim;

    protected override ParameterTensor OutputWeight => _output;

    protected override void DeclareParameters(ParameterSet<T>.Builder b)
    {
        int c = Config.Dim, f = Shard.Ffn;
        if (Part.HasEmbedding)
            _embd = b.Add("token_embd.weight", Config.Vocab, c);
        _blocks = new Block[Config.Layers];
        for (int l = Part.FirstLayer; l < Part.EndLayer; l++)
        {
            string p = $"blk.{l}.";
            _blocks[l] = new Block(b.Add(p + "attn_norm.weight", c), b.Add(p + "attn_qkv.weight", QkvDim, c),
                b.Add(p + "attn_output.weight", c, Shard.AttentionDim), b.Add(p + "ffn_norm.weight", c),
                b.Add(p + "ffn_gate_up.weight", 2 * f, c), b.Add(p + "ffn_down.weight", c, f));
        }
        if (Part.HasHead)
        {
            _outNorm = b.Add("output_norm.weight", c);
            _output = b.Add("output.weight", Config.Vocab, c);
        }
    }

    public override void Initialize(TrainingRandom random)
    {
        double residualStd = 0.02 / Math.Sqrt(2.0 * Config.Layers);
        foreach (var p in InitializationOrder)
        {
            if (p.Shape.Length == 1)
                Fill(p, 1.0);
            else
                FillNormal(p, random, p.Name.EndsWith("attn_output.weight", StringComparison.Ordinal) || p.Name.EndsWith("ffn_down.weight", StringComparison.Ordinal)
                    ? residualStd : 0.02);
        }
    }

    protected override long AllocateActivations(int rows)
    {
        int c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        _acts = new BlockActivations[Config.Layers]; // only the held layers' entries are filled
        var shared = SharedBlockActivations ? new BlockActivations(rows, c, QkvDim, att, f, Shard.Heads, Batch, SequenceLength, !AttentionOp.Recompute) : null;
        for (int l = Part.FirstLayer; l < Part.EndLayer; l++)
            _acts[l] = shared ?? new BlockActivations(rows, c, QkvDim, att, f, Shard.Heads, Batch, SequenceLength, !AttentionOp.Recompute);
        _finalRstd = new T[rows];
        _dSw = new T[rows * f];
        _dGu = new T[rows * 2 * f];
        _dN2 = new T[rows * c];
        _dAtt = new T[rows * att];
        _dQkv = new T[rows * QkvDim];
        _dN1 = new T[rows * c];
        long blocks = (shared is null ? Part.LayerCount : 1) * _acts[Part.FirstLayer].Elements;
        return (blocks + rows + _dSw.Length + _dGu.Length + _dN2.Length + _dAtt.Length + _dQkv.Length + _dN1.Length) * Unsafe.SizeOf<T>();
    }

    private Memory<T> V(ParameterTensor p) => Parameters.Value(p);
    private Memory<T> G(ParameterTensor p) => Parameters.Gradient(p);

    protected override void EmbedForward(Memory<T> output) =>
        _embedding.Forward(Tokens, V(_embd), ReadOnlyMemory<T>.Empty, output, Rows, SequenceLength, Config.Dim);

    protected override void EmbedBackward(ReadOnlyMemory<T> dOutput) =>
        _embedding.Backward(dOutput, Tokens, G(_embd), Memory<T>.Empty, Rows, SequenceLength, Config.Dim);

    protected override void BlockForward(int layer, ReadOnlyMemory<T> x, Memory<T> output)
    {
        var w = _blocks[layer];
        var a = _acts[layer];
        int rows = Rows, c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        T eps = T.CreateChecked(Config.NormEpsilon);
        _norm.Forward(x, V(w.AttnNorm), a.N1, a.R1, rows, c, eps);
        LinearOp.Forward(a.N1, V(w.Qkv), ReadOnlyMemory<T>.Empty, a.Qkv, rows, c, QkvDim);
        // Q heads then K heads are contiguous at the start of each row: one rotation covers both
        _rope.Forward(a.Qkv, rows, QkvDim, Shard.Heads + Shard.KvHeads, SequenceLength);
        AttentionOp.Forward(a.Qkv, a.Att, a.Probs, a.Lse, Batch, SequenceLength);
        LinearOp.Forward(a.Att, V(w.Output), ReadOnlyMemory<T>.Empty, a.Proj, rows, att, c);
        SumPartialOutputs(a.Proj);
        ResidualOp.Forward(x, a.Proj, a.Mid);
        _norm.Forward(a.Mid, V(w.FfnNorm), a.N2, a.R2, rows, c, eps);
        LinearOp.Forward(a.N2, V(w.GateUp), ReadOnlyMemory<T>.Empty, a.GateUp, rows, c, 2 * f);
        _swiglu.Forward(a.GateUp, a.Sw, rows, f);
        LinearOp.Forward(a.Sw, V(w.Down), ReadOnlyMemory<T>.Empty, a.Down, rows, f, c);
        SumPartialOutputs(a.Down);
        ResidualOp.Forward(a.Mid, a.Down, output);
    }

    protected override void BlockBackward(int layer, ReadOnlyMemory<T> x, Memory<T> dStream)
    {
        var w = _blocks[layer];
        var a = _acts[layer];
        int rows = Rows, c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        Array.Clear(_dSw);
        Array.Clear(_dGu);
        Array.Clear(_dN2);
        Array.Clear(_dAtt);
        Array.Clear(_dQkv);
        Array.Clear(_dN1);
        // output = mid + down: d(down) is dStream itself; d(mid) = dStream + the norm path, added in place
        LinearOp.Backward(dStream, a.Sw, V(w.Down), _dSw, G(w.Down), Memory<T>.Empty, rows, f, c);
        _swiglu.Backward(_dSw, a.GateUp, _dGu, rows, f);
        LinearOp.Backward(_dGu, a.N2, V(w.GateUp), _dN2, G(w.GateUp), Memory<T>.Empty, rows, c, 2 * f);
        SumInputGradients(_dN2);
        _norm.Backward(_dN2, a.Mid, V(w.FfnNorm), a.R2, dStream, G(w.FfnNorm), rows, c);
        // mid = x + proj: likewise
        LinearOp.Backward(dStream, a.Att, V(w.Output), _dAtt, G(w.Output), Memory<T>.Empty, rows, att, c);
        AttentionOp.Backward(_dAtt, a.Qkv, a.Probs, a.Lse, _dQkv, Batch, SequenceLength);
        _rope.Backward(_dQkv, rows, QkvDim, Shard.Heads + Shard.KvHeads, SequenceLength);
        LinearOp.Backward(_dQkv, a.N1, V(w.Qkv), _dN1, G(w.Qkv), Memory<T>.Empty, rows, c, QkvDim);
        SumInputGradients(_dN1);
        _norm.Backward(_dN1, x, V(w.AttnNorm), a.R1, dStream, G(w.AttnNorm), rows, c);
    }

    protected override void FinalNormForward(ReadOnlyMemory<T> input, Memory<T> output) =>
        _norm.Forward(input, V(_outNorm), output, _finalRstd, Rows, Config.Dim, T.CreateChecked(Config.NormEpsilon));

    protected override void FinalNormBackward(ReadOnlyMemory<T> dOutput, ReadOnlyMemory<T> input, Memory<T> dInput) =>
        _norm.Backward(dOutput, input, V(_outNorm), _finalRstd, dInput, G(_outNorm), Rows, Config.Dim);
}
