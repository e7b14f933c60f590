using System.Numerics;
using System.Runtime.CompilerServices;
using Kiln.Threading;
using Kiln.Training.Ops;
using Kiln.Training.Parallel;

namespace Kiln.Training.Models;

/// <summary>
/// GPT-2: learned positions, pre-LayerNorm blocks with biases, GELU MLP of width ffn, final LayerNorm, logits from
/// the token embedding (tied). Q, K and V come from one fused [3·dim, dim] projection, as GPT-2's c_attn.
/// Under tensor parallelism each rank holds heads/T heads and ffn/T hidden units (<see cref="TensorParallelLayout"/>);
/// all widths below are this rank's.
/// </summary>
public sealed class GptModel<T> : TrainableModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly LayerNorm<T> _norm;
    private readonly Gelu<T> _gelu;
    private readonly Embedding<T> _embedding;
    private ParameterTensor _wte = null!, _wpe = null!, _lnfW = null!, _lnfB = null!;
    private Block[] _blocks = [];
    private BlockActivations[] _acts = [];
    private T[] _lnfMean = [], _lnfRstd = [];
    private T[] _dGelu = [], _dFc = [], _dLn2 = [], _dAtt = [], _dQkv = [], _dLn1 = [];

    private sealed record Block(ParameterTensor Ln1W, ParameterTensor Ln1B, ParameterTensor QkvW, ParameterTensor QkvB,
        ParameterTensor ProjW, ParameterTensor ProjB, ParameterTensor Ln2W, ParameterTensor Ln2B,
        ParameterTensor FcW, ParameterTensor FcB, ParameterTensor FcProjW, ParameterTensor FcProjB);

    /// <summary>What one block keeps for backward. Shapes for rows = B·T, C = dim, A = H·hd, F = ffn, H = heads.</summary>
    private sealed class BlockActivations(int rows, int dim, int attDim, int ffn, int heads, int batch, int seq, bool keepProbs)
    {
        public readonly T[] Ln1 = new T[rows * dim], Ln1Mean = new T[rows], Ln1Rstd = new T[rows];
        public readonly T[] Qkv = new T[rows * 3 * attDim];                              // [rows, 3A]
        public readonly T[] Probs = keepProbs ? new T[batch * heads * seq * seq] : [];   // [B, H, T, T]
        public readonly T[] Lse = new T[batch * heads * seq];                            // [B, H, T]
        public readonly T[] Att = new T[rows * attDim], Proj = new T[rows * dim], Mid = new T[rows * dim];
        public readonly T[] Ln2 = new T[rows * dim], Ln2Mean = new T[rows], Ln2Rstd = new T[rows];
        public readonly T[] Fc = new T[rows * ffn], GeluOut = new T[rows * ffn];       // [rows, F]
        public readonly T[] FcProj = new T[rows * dim];

        public long Elements => (long)Ln1.Length + Ln1Mean.Length + Ln1Rstd.Length + Qkv.Length + Probs.Length + Lse.Length + Att.Length
            + Proj.Length + Mid.Length + Ln2.Length + Ln2Mean.Length + Ln2Rstd.Length + Fc.Length + GeluOut.Length + FcProj.Length;
    }

    public GptModel(TrainingConfig config, WorkerPool? pool, Recomputation recompute = Recomputation.None,
        TensorParallel? tensorParallel = null, ModelPart? part = null, ParameterSet<T>? parameters = null)
        : base(config, pool, recompute, tensorParallel, part, parameters)
    {
        if (config.Family != ModelFamily.Gpt2)
            throw new TrainingConfigException($"GptModel needs the gpt2 family, not {config.Family}");
        _norm = new LayerNorm<T>(pool);
        _gelu = new Gelu<T>(pool);
        _embedding = new Embedding<T>(pool);
    }

    protected override ParameterTensor OutputWeight => _wte;

    /// <summary>wte; null on a middle pipeline stage, which holds neither embedding nor head.</summary>
    public override ParameterTensor? TiedOutputWeight => Part.HasEmbedding || Part.HasHead ? _wte : null;

    protected override void DeclareParameters(ParameterSet<T>.Builder b)
    {
        int c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        // tied: a last pipeline stage without the embedding still holds wte, as its output head
        if (Part.HasEmbedding || Part.HasHead)
            _wte = b.Add("wte", Config.Vocab, c);
        if (Part.HasEmbedding)
            _wpe = b.Add("wpe", Config.Context, c);
        _blocks = new Block[Config.Layers];
        for (int l = Part.FirstLayer; l < Part.EndLayer; l++)
        {
            string p = $"h.{l}.";
            _blocks[l] = new Block(b.Add(p + "ln_1.weight", c), b.Add(p + "ln_1.bias", c),
                b.Add(p + "attn.c_attn.weight", 3 * att, c), b.Add(p + "attn.c_attn.bias", 3 * att),
                b.Add(p + "attn.c_proj.weight", c, att), b.Add(p + "attn.c_proj.bias", c),
                b.Add(p + "ln_2.weight", c), b.Add(p + "ln_2.bias", c),
                b.Add(p + "mlp.c_fc.weight", f, c), b.Add(p + "mlp.c_fc.bias", f),
                b.Add(p + "mlp.c_proj.weight", c, f), b.Add(p + "mlp.c_proj.bias", c));
        }
        if (Part.HasHead)
        {
            _lnfW = b.Add("ln_f.weight", c);
            _lnfB = b.Add("ln_f.bias", c);
        }
    }

    public override void Initialize(TrainingRandom random)
    {
        double residualStd = 0.02 / Math.Sqrt(2.0 * Config.Layers);
        foreach (var p in InitializationOrder)
        {
            if (p.Shape.Length == 1)
                Fill(p, p.Name.Contains("ln_", StringComparison.Ordinal) && p.Name.EndsWith(".weight", StringComparison.Ordinal) ? 1.0 : 0.0); // gains 1, biases 0
            else
                FillNormal(p, random, p.Name.EndsWith("c_proj.weight", StringComparison.Ordinal) ? residualStd : 0.02);
        }
    }

    protected override long AllocateActivations(int rows)
    {
        int c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        _acts = new BlockActivations[Config.Layers]; // only the held layers' entries are filled
        var shared = SharedBlockActivations ? new BlockActivations(rows, c, att, f, Shard.Heads, Batch, SequenceLength, !AttentionOp.Recompute) : null;
        for (int l = Part.FirstLayer; l < Part.EndLayer; l++)
            _acts[l] = shared ?? new BlockActivations(rows, c, att, f, Shard.Heads, Batch, SequenceLength, !AttentionOp.Recompute);
        _lnfMean = new T[rows];
        _lnfRstd = new T[rows];
        _dGelu = new T[rows * f];
        _dFc = new T[rows * f];
        _dLn2 = new T[rows * c];
        _dAtt = new T[rows * att];
        _dQkv = new T[rows * 3 * att];
        _dLn1 = new T[rows * c];
        long blocks = (shared is null ? Part.LayerCount : 1) * _acts[Part.FirstLayer].Elements;
        return (blocks + 2L * rows + _dGelu.Length + _dFc.Length + _dLn2.Length + _dAtt.Length + _dQkv.Length + _dLn1.Length) * Unsafe.SizeOf<T>();
    }

    private Memory<T> V(ParameterTensor p) => Parameters.Value(p);
    private Memory<T> G(ParameterTensor p) => Parameters.Gradient(p);

    protected override void EmbedForward(Memory<T> output) =>
        _embedding.Forward(Tokens, V(_wte), V(_wpe), output, Rows, SequenceLength, Config.Dim);

    protected override void EmbedBackward(ReadOnlyMemory<T> dOutput) =>
        _embedding.Backward(dOutput, Tokens, G(_wte), G(_wpe), Rows, SequenceLength, Config.Dim);

    protected override void BlockForward(int layer, ReadOnlyMemory<T> x, Memory<T> output)
    {
        var w = _blocks[layer];
        var a = _acts[layer];
        int rows = Rows, c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        T eps = T.CreateChecked(Config.NormEpsilon);
        _norm.Forward(x, V(w.Ln1W), V(w.Ln1B), a.Ln1, a.Ln1Mean, a.Ln1Rstd, rows, c, eps);
        LinearOp.Forward(a.Ln1, V(w.QkvW), V(w.QkvB), a.Qkv, rows, c, 3 * att);
        AttentionOp.Forward(a.Qkv, a.Att, a.Probs, a.Lse, Batch, SequenceLength);
        LinearOp.Forward(a.Att, V(w.ProjW), RowParallelBias(w.ProjB), a.Proj, rows, att, c);
        SumPartialOutputs(a.Proj);
        ResidualOp.Forward(x, a.Proj, a.Mid);
        _norm.Forward(a.Mid, V(w.Ln2W), V(w.Ln2B), a.Ln2, a.Ln2Mean, a.Ln2Rstd, rows, c, eps);
        LinearOp.Forward(a.Ln2, V(w.FcW), V(w.FcB), a.Fc, rows, c, f);
        _gelu.Forward(a.Fc, a.GeluOut);
        LinearOp.Forward(a.GeluOut, V(w.FcProjW), RowParallelBias(w.FcProjB), a.FcProj, rows, f, c);
        SumPartialOutputs(a.FcProj);
        ResidualOp.Forward(a.Mid, a.FcProj, output);
    }

    protected override void BlockBackward(int layer, ReadOnlyMemory<T> x, Memory<T> dStream)
    {
        var w = _blocks[layer];
        var a = _acts[layer];
        int rows = Rows, c = Config.Dim, f = Shard.Ffn, att = Shard.AttentionDim;
        Array.Clear(_dGelu);
        Array.Clear(_dFc);
        Array.Clear(_dLn2);
        Array.Clear(_dAtt);
        Array.Clear(_dQkv);
        Array.Clear(_dLn1);
        // output = mid + fcproj: d(fcproj) is dStream itself; d(mid) = dStream + the LayerNorm-2 path, added in place
        LinearOp.Backward(dStream, a.GeluOut, V(w.FcProjW), _dGelu, G(w.FcProjW), G(w.FcProjB), rows, f, c);
        _gelu.Backward(_dGelu, a.Fc, _dFc);
        LinearOp.Backward(_dFc, a.Ln2, V(w.FcW), _dLn2, G(w.FcW), G(w.FcB), rows, c, f);
        SumInputGradients(_dLn2);
        _norm.Backward(_dLn2, a.Mid, V(w.Ln2W), a.Ln2Mean, a.Ln2Rstd, dStream, G(w.Ln2W), G(w.Ln2B), rows, c);
        // mid = x + proj: likewise
        LinearOp.Backward(dStream, a.Att, V(w.ProjW), _dAtt, G(w.ProjW), G(w.ProjB), rows, att, c);
        AttentionOp.Backward(_dAtt, a.Qkv, a.Probs, a.Lse, _dQkv, Batch, SequenceLength);
        LinearOp.Backward(_dQkv, a.Ln1, V(w.QkvW), _dLn1, G(w.QkvW), G(w.QkvB), rows, c, 3 * att);
        SumInputGradients(_dLn1);
        _norm.Backward(_dLn1, x, V(w.Ln1W), a.Ln1Mean, a.Ln1Rstd, dStream, G(w.Ln1W), G(w.Ln1B), rows, c);
    }

    protected override void FinalNormForward(ReadOnlyMemory<T> input, Memory<T> output) =>
        _norm.Forward(input, V(_lnfW), V(_lnfB), output, _lnfMean, _lnfRstd, Rows, Config.Dim, T.CreateChecked(Config.NormEpsilon));

    protected override void FinalNormBackward(ReadOnlyMemory<T> dOutput, ReadOnlyMemory<T> input, Memory<T> dInput) =>
        _norm.Backward(dOutput, input, V(_lnfW), _lnfMean, _lnfRstd, dInput, G(_lnfW), G(_lnfB), Rows, Config.Dim);
}
