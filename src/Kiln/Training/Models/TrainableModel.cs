using System.Numerics;
using System.Runtime.CompilerServices;
using Kiln.Threading;
using Kiln.Training.Ops;
using Kiln.Training.Parallel;

namespace Kiln.Training.Models;

/// <summary>
/// A decoder-only transformer with hand-written forward and backward passes. The base runs what both families share
/// (tokens → blocks → final norm → logits → cross-entropy, and back); each family supplies its embedding, block and
/// norm. Activations are kept per layer for the backward pass, or, with <see cref="Recomputation.Block"/>, only
/// each block's input, the block being run forward again just before its backward into one block's worth of
/// buffers; activation gradients use one layer's worth of scratch, reused from the top block down. Buffers are sized for one (batch, sequence) shape and reallocated only
/// when the shape changes, so steady-state steps allocate nothing.
/// </summary>
public abstract class TrainableModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    protected readonly WorkerPool? Pool;
    protected readonly Linear<T> LinearOp;
    protected readonly CausalAttention<T> AttentionOp;
    protected readonly Residual<T> ResidualOp;
    private readonly SoftmaxCrossEntropy<T> _loss;
    private int[] _tokens = [];
    private int[] _targets = [];
    private bool _haveTargets;

    protected TrainableModel(TrainingConfig config, WorkerPool? pool, Recomputation recompute, TensorParallel? tensorParallel = null)
    {
        config.Validate();
        if (tensorParallel is not null && tensorParallel.Layout.Config != config)
            throw new ArgumentException("the tensor-parallel layout was made for another model configuration", nameof(tensorParallel));
        Config = config;
        TensorParallel = tensorParallel;
        Shard = tensorParallel?.Layout ?? new TensorParallelLayout(config, 1);
        Pool = pool;
        Recompute = recompute;
        SharedBlockActivations = (recompute & Recomputation.Block) != 0;
        LinearOp = new Linear<T>(pool);
        AttentionOp = new CausalAttention<T>(pool, Shard.Heads, Shard.KvHeads, config.HeadDim, (recompute & Recomputation.Attention) != 0);
        ResidualOp = new Residual<T>(pool);
        _loss = new SoftmaxCrossEntropy<T>(pool);
        var builder = new ParameterSet<T>.Builder();
        DeclareParameters(builder);
        Parameters = builder.Build();
    }

    public TrainingConfig Config { get; }
    public ParameterSet<T> Parameters { get; }

    /// <summary>[embedding, block 0, …, head]: the pieces <see cref="UnitHooks"/> hears about.</summary>
    public ParameterUnit[] Units => _units ??= ParameterUnit.Partition(Parameters.Tensors, Config.Layers);

    /// <summary>Told when units are used and when their gradients are final (data parallel overlap, ZeRO); null: nobody.</summary>
    public IParameterUnitHooks? UnitHooks { get; set; }

    private ParameterUnit[]? _units;
    public Recomputation Recompute { get; }

    /// <summary>This rank's tensor-parallel group, or null when the model is whole.</summary>
    public TensorParallel? TensorParallel { get; }

    /// <summary>The per-rank widths the blocks compute with (heads, KV heads, ffn): the config's own without tensor parallelism.</summary>
    protected TensorParallelLayout Shard { get; }

    /// <summary>Whether all blocks share one set of activation buffers (<see cref="Recomputation.Block"/>).</summary>
    protected bool SharedBlockActivations { get; }

    /// <summary>
    /// Bytes of every buffer sized by the (batch, sequence) shape: residual stream, per-block activations, logits,
    /// activation-gradient scratch; 0 before the first Forward. Parameters, gradients and moments are not included.
    /// </summary>
    public long ActivationBytes { get; private set; }
    public int Batch { get; private set; }
    public int SequenceLength { get; private set; }
    protected int Rows => Batch * SequenceLength;
    protected ReadOnlyMemory<int> Tokens => _tokens;

    /// <summary>Residual stream: Stream[l] is the input of block l, Stream[Layers] the input of the final norm. Each [rows, dim].</summary>
    protected T[][] Stream { get; private set; } = [];

    /// <summary>Final-norm output [rows, dim].</summary>
    protected T[] Final { get; private set; } = [];

    /// <summary>Logits [rows, vocab] after Forward (overwritten by their gradient in Backward).</summary>
    public ReadOnlySpan<T> Logits => _logits;

    private T[] _logits = [];
    private T[] _losses = [];
    private T[] _dStream = [];
    private T[] _dFinal = [];

    public static TrainableModel<T> Create(TrainingConfig config, WorkerPool? pool, Recomputation recompute = Recomputation.None,
        TensorParallel? tensorParallel = null) => config.Family switch
    {
        ModelFamily.Gpt2 => new GptModel<T>(config, pool, recompute, tensorParallel),
        ModelFamily.Llama => new LlamaTrainModel<T>(config, pool, recompute, tensorParallel),
        _ => throw new TrainingConfigException($"unknown model family {config.Family}"),
    };

    protected abstract void DeclareParameters(ParameterSet<T>.Builder builder);

    /// <summary>GPT-2's initialization: N(0, 0.02) weights, residual output projections scaled by 1/√(2·layers), zero biases, unit norm gains.</summary>
    public abstract void Initialize(TrainingRandom random);

    /// <summary>Allocates the family's shape-dependent buffers and returns their size in bytes.</summary>
    protected abstract long AllocateActivations(int rows);
    protected abstract void EmbedForward(Memory<T> output);
    protected abstract void EmbedBackward(ReadOnlyMemory<T> dOutput);
    protected abstract void BlockForward(int layer, ReadOnlyMemory<T> input, Memory<T> output);

    /// <summary>dStream holds d(output) on entry and must hold d(input) on return.</summary>
    protected abstract void BlockBackward(int layer, ReadOnlyMemory<T> input, Memory<T> dStream);

    protected abstract void FinalNormForward(ReadOnlyMemory<T> input, Memory<T> output);
    protected abstract void FinalNormBackward(ReadOnlyMemory<T> dOutput, ReadOnlyMemory<T> input, Memory<T> dInput);
    protected abstract ParameterTensor OutputWeight { get; }

    /// <summary>
    /// Draws the whole tensor's values in the single-process order; a tensor-parallel rank keeps only its shard's, so
    /// every split starts from the single-process initialization without holding the whole tensor.
    /// </summary>
    protected void FillNormal(ParameterTensor p, TrainingRandom random, double std)
    {
        var v = Parameters.Value(p).Span;
        var rule = Shard.ShardOf(p.Name);
        int[] full = rule.FullShape(p.Shape, Shard.Ranks);
        int drawn = 0, fullLength = full.Aggregate(1, (a, b) => a * b);
        foreach (var run in rule.Runs(full, TensorParallel?.Rank ?? 0, Shard.Ranks))
        {
            for (; drawn < run.Full; drawn++)
                random.NextGaussian();
            for (int i = 0; i < run.Length; i++)
                v[run.Shard + i] = T.CreateChecked(random.NextGaussian() * std);
            drawn += run.Length;
        }
        for (; drawn < fullLength; drawn++)
            random.NextGaussian();
    }

    /// <summary>Megatron's g after a row-parallel projection: no-op on a whole model.</summary>
    protected void SumPartialOutputs(Memory<T> partial) => TensorParallel?.SumPartialOutputs(partial);

    /// <summary>Megatron's f before a column-parallel projection, backward: no-op on a whole model.</summary>
    protected void SumInputGradients(Memory<T> partial) => TensorParallel?.SumInputGradients(partial);

    /// <summary>
    /// A row-parallel projection's bias, replicated: only rank 0 adds it to its partial product, so the sum over
    /// ranks holds it once. Its gradient comes from the whole d(output), the same on every rank.
    /// </summary>
    protected ReadOnlyMemory<T> RowParallelBias(ParameterTensor bias) =>
        TensorParallel is { Rank: > 0 } ? ReadOnlyMemory<T>.Empty : Parameters.Value(bias);

    protected void Fill(ParameterTensor p, double value) => Parameters.Value(p).Span.Fill(T.CreateChecked(value));

    public void ZeroGradients() => Array.Clear(Parameters.Gradients);

    /// <summary>
    /// Runs the model on inputs[batch·seqLen] (row-major, sequences back to back). With targets, returns the mean
    /// cross-entropy and keeps what <see cref="Backward"/> needs; without, returns NaN and leaves the logits.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch, int seqLen)
    {
        if (batch <= 0 || seqLen <= 0)
            throw new ArgumentException($"batch {batch} and sequence length {seqLen} must be positive");
        if (seqLen > Config.Context)
            throw new ArgumentException($"sequence length {seqLen} exceeds the model's context of {Config.Context}");
        int rows = batch * seqLen;
        if (inputs.Length != rows || (!targets.IsEmpty && targets.Length != rows))
            throw new ArgumentException($"expected {rows} input (and target) tokens, got {inputs.Length} ({targets.Length})");
        if (batch != Batch || seqLen != SequenceLength)
            Allocate(batch, seqLen);
        inputs.CopyTo(_tokens);
        _haveTargets = !targets.IsEmpty;
        if (_haveTargets)
            targets.CopyTo(_targets);

        var hooks = UnitHooks;
        var (embedding, head, output) = hooks is null ? default : HookUnits();
        hooks?.BeforeUse(embedding!, false);
        EmbedForward(Stream[0]);
        hooks?.AfterUse(embedding!, false);
        for (int l = 0; l < Config.Layers; l++)
        {
            hooks?.BeforeUse(Units[l + 1], false);
            BlockForward(l, Stream[l], Stream[l + 1]);
            hooks?.AfterUse(Units[l + 1], false);
        }
        hooks?.BeforeUse(head!, false);
        FinalNormForward(Stream[Config.Layers], Final);
        if (output != head)
            hooks?.BeforeUse(output!, false);
        LinearOp.Forward(Final, Parameters.Value(OutputWeight), ReadOnlyMemory<T>.Empty, _logits, rows, Config.Dim, Config.Vocab);
        if (output != head)
            hooks?.AfterUse(output!, false);
        hooks?.AfterUse(head!, false);
        if (!_haveTargets)
            return double.NaN;
        _loss.Forward(_logits, _targets, _losses, rows, Config.Vocab);
        double sum = 0;
        foreach (T l in _losses)
            sum += double.CreateChecked(l);
        return sum / rows;
    }

    /// <summary>
    /// Adds d(lossScale · mean loss)/dθ of the last Forward into the gradients (they accumulate: call
    /// <see cref="ZeroGradients"/> at the start of each optimizer step; gradient accumulation passes 1/steps).
    /// </summary>
    public void Backward(double lossScale = 1.0)
    {
        if (!_haveTargets)
            throw new InvalidOperationException("Backward needs a Forward with targets first");
        _haveTargets = false; // the logits become their gradient below
        int rows = Rows;
        var hooks = UnitHooks;
        var (embedding, head, output) = hooks is null ? default : HookUnits();
        _loss.Backward(_logits, _targets, _logits, rows, Config.Vocab, T.CreateChecked(lossScale / rows));
        Array.Clear(_dFinal);
        hooks?.BeforeUse(head!, true);
        if (output != head)
            hooks?.BeforeUse(output!, true);
        LinearOp.Backward(_logits, Final, Parameters.Value(OutputWeight), _dFinal, Parameters.Gradient(OutputWeight),
            Memory<T>.Empty, rows, Config.Dim, Config.Vocab);
        if (output != head)
            hooks?.AfterUse(output!, true); // tied (GPT-2): the embedding's gradient is final only after EmbedBackward
        Array.Clear(_dStream);
        FinalNormBackward(_dFinal, Stream[Config.Layers], _dStream);
        hooks?.AfterUse(head!, true);
        hooks?.GradientsFinal(head!);
        for (int l = Config.Layers - 1; l >= 0; l--)
        {
            hooks?.BeforeUse(Units[l + 1], true);
            // the shared buffers still hold the top block's activations from Forward; every other block runs again
            // (rewriting Stream[l + 1] with the bits it already holds: the block above is done with it)
            if (SharedBlockActivations && l < Config.Layers - 1)
                BlockForward(l, Stream[l], Stream[l + 1]);
            BlockBackward(l, Stream[l], _dStream);
            hooks?.AfterUse(Units[l + 1], true);
            hooks?.GradientsFinal(Units[l + 1]);
        }
        hooks?.BeforeUse(embedding!, true);
        EmbedBackward(_dStream);
        hooks?.AfterUse(embedding!, true);
        hooks?.GradientsFinal(embedding!);
    }

    private (ParameterUnit Embedding, ParameterUnit Head, ParameterUnit Output) HookUnits() =>
        (Units[0], Units[^1], ParameterUnit.Of(Units, OutputWeight));

    private void Allocate(int batch, int seqLen)
    {
        (Batch, SequenceLength) = (batch, seqLen);
        int rows = batch * seqLen, dim = Config.Dim;
        _tokens = new int[rows];
        _targets = new int[rows];
        Stream = new T[Config.Layers + 1][];
        for (int l = 0; l <= Config.Layers; l++)
            Stream[l] = new T[rows * dim];
        Final = new T[rows * dim];
        _dFinal = new T[rows * dim];
        _dStream = new T[rows * dim];
        _logits = new T[rows * Config.Vocab];
        _losses = new T[rows];
        // stream (layers + 1), final, dFinal, dStream, logits, losses; tokens and targets
        long own = ((Config.Layers + 4L) * rows * dim + _logits.Length + rows) * Unsafe.SizeOf<T>() + 2L * rows * sizeof(int);
        ActivationBytes = own + AllocateActivations(rows);
    }
}
