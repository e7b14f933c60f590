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
    private bool _readyForBackward;
    private ModelPart _part;

    /// <param name="tensorParallel">This rank's tensor-parallel group: the blocks hold and compute its shard only.</param>
    /// <param name="part">The piece this instance holds (a pipeline stage); null for the whole model.</param>
    /// <param name="parameters">
    /// Another instance's parameters (of the same piece) to compute with instead of owning a set: a pipeline stage keeps
    /// one instance per micro-batch in flight, each with its own activations, all on the stage's one set of weights.
    /// </param>
    protected TrainableModel(TrainingConfig config, WorkerPool? pool, Recomputation recompute, TensorParallel? tensorParallel = null,
        ModelPart? part = null, ParameterSet<T>? parameters = null)
    {
        config.Validate();
        if (tensorParallel is not null && tensorParallel.Layout.Config != config)
            throw new ArgumentException("the tensor-parallel layout was made for another model configuration", nameof(tensorParallel));
        Config = config;
        TensorParallel = tensorParallel;
        Shard = tensorParallel?.Layout ?? new TensorParallelLayout(config, 1);
        _part = ModelPart.Whole(config);
        Pool = pool;
        Recompute = recompute;
        SharedBlockActivations = (recompute & Recomputation.Block) != 0;
        LinearOp = new Linear<T>(pool);
        AttentionOp = new CausalAttention<T>(pool, Shard.Heads, Shard.KvHeads, config.HeadDim, (recompute & Recomputation.Attention) != 0);
        ResidualOp = new Residual<T>(pool);
        _loss = new SoftmaxCrossEntropy<T>(pool);
        IReadOnlyList<ParameterTensor>? wholeLayout = null;
        if (part is not null && part != _part)
        {
            part.Validate(config);
            // Initialize draws in the whole model's declaration order; a piece replays that order (declaring names and
            // shapes only, nothing allocated) so that its weights equal the whole model's from the same seed
            var whole = new ParameterSet<T>.Builder();
            DeclareParameters(whole);
            wholeLayout = whole.Tensors;
            _part = part;
        }
        var builder = new ParameterSet<T>.Builder();
        DeclareParameters(builder);
        Parameters = parameters is null ? builder.Build() : CheckedShared(parameters, builder.Tensors);
        InitializationOrder = wholeLayout ?? Parameters.Tensors;
    }

    private static ParameterSet<T> CheckedShared(ParameterSet<T> parameters, IReadOnlyList<ParameterTensor> declared)
    {
        var have = parameters.Tensors;
        bool same = have.Count == declared.Count;
        for (int i = 0; same && i < have.Count; i++)
            same = have[i].Name == declared[i].Name && have[i].Offset == declared[i].Offset && have[i].Length == declared[i].Length;
        if (!same)
            throw new ArgumentException("the shared parameters are laid out for another model or piece", nameof(parameters));
        return parameters;
    }

    public TrainingConfig Config { get; }
    public ParameterSet<T> Parameters { get; }
    public Recomputation Recompute { get; }

    /// <summary>[embedding, block 0, …, head]: the pieces <see cref="UnitHooks"/> hears about (whole models only).</summary>
    public ParameterUnit[] Units => _units ??= ParameterUnit.Partition(Parameters.Tensors, Config.Layers);

    /// <summary>
    /// Told when units are used and when their gradients are final (data parallel overlap, ZeRO); null: nobody. Only a
    /// whole model (not a pipeline stage) reports to hooks.
    /// </summary>
    public IParameterUnitHooks? UnitHooks
    {
        get => _unitHooks;
        set
        {
            if (value is not null && Part != ModelPart.Whole(Config))
                throw new InvalidOperationException("unit hooks (data-parallel overlap, ZeRO 2/3) need the whole model, not a pipeline stage");
            _unitHooks = value;
        }
    }

    private ParameterUnit[]? _units;
    private IParameterUnitHooks? _unitHooks;

    /// <summary>This rank's tensor-parallel group, or null when the model is whole.</summary>
    public TensorParallel? TensorParallel { get; }

    /// <summary>The per-rank widths the blocks compute with (heads, KV heads, ffn): the config's own without tensor parallelism.</summary>
    protected TensorParallelLayout Shard { get; }

    /// <summary>The layers (and embedding, head) this instance holds; <see cref="ModelPart.Whole"/> unless built as a pipeline stage.</summary>
    public ModelPart Part => _part;

    /// <summary>
    /// The output head's weight when it is the token embedding (GPT-2), else null. A pipeline's first and last stage
    /// each hold a copy and must add their gradients before the update.
    /// </summary>
    public virtual ParameterTensor? TiedOutputWeight => null;

    /// <summary>Every tensor of the whole model in declaration order: what <see cref="Initialize"/> walks, drawing for each.</summary>
    protected IReadOnlyList<ParameterTensor> InitializationOrder { get; }

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
        TensorParallel? tensorParallel = null) =>
        Create(config, pool, recompute, tensorParallel, null, null);

    /// <summary>A piece of the model (see the constructor's parameters).</summary>
    public static TrainableModel<T> Create(TrainingConfig config, WorkerPool? pool, Recomputation recompute, TensorParallel? tensorParallel,
        ModelPart? part, ParameterSet<T>? parameters) => config.Family switch
    {
        ModelFamily.Gpt2 => new GptModel<T>(config, pool, recompute, tensorParallel, part, parameters),
        ModelFamily.Llama => new LlamaTrainModel<T>(config, pool, recompute, tensorParallel, part, parameters),
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
    /// Draws the whole tensor's values in the single-process order and keeps this instance's: all of them, a
    /// tensor-parallel rank's shard, or none for a tensor of <see cref="InitializationOrder"/> another pipeline stage
    /// holds. So every split starts from the single-process initialization without holding the whole tensor.
    /// </summary>
    protected void FillNormal(ParameterTensor p, TrainingRandom random, double std)
    {
        var rule = Shard.ShardOf(p.Name);
        int[] full = rule.FullShape(p.Shape, Shard.Ranks);
        int drawn = 0, fullLength = full.Aggregate(1, (a, b) => a * b);
        if (Held(p) is not { } held)
        {
            random.SkipGaussians(fullLength);
            return;
        }
        var v = Parameters.Value(held).Span;
        foreach (var run in rule.Runs(full, TensorParallel?.Rank ?? 0, Shard.Ranks))
        {
            random.SkipGaussians(run.Full - drawn);
            for (int i = 0; i < run.Length; i++)
                v[run.Shard + i] = T.CreateChecked(random.NextGaussian() * std);
            drawn = run.Full + run.Length;
        }
        random.SkipGaussians(fullLength - drawn);
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

    protected void Fill(ParameterTensor p, double value)
    {
        if (Held(p) is { } held)
            Parameters.Value(held).Span.Fill(T.CreateChecked(value));
    }

    private ParameterTensor? Held(ParameterTensor p) =>
        ReferenceEquals(InitializationOrder, Parameters.Tensors) ? p : Parameters.Tensors.FirstOrDefault(t => t.Name == p.Name);

    public void ZeroGradients() => Array.Clear(Parameters.Gradients);

    /// <summary>Sizes the buffers for a (batch, sequence) shape; <see cref="Forward"/> does it too, but a piece without the
    /// embedding needs its <see cref="StageInput"/> before the forward pass, to receive into.</summary>
    public void Prepare(int batch, int seqLen)
    {
        if (batch <= 0 || seqLen <= 0)
            throw new ArgumentException($"batch {batch} and sequence length {seqLen} must be positive");
        if (seqLen > Config.Context)
            throw new ArgumentException($"sequence length {seqLen} exceeds the model's context of {Config.Context}");
        if (batch != Batch || seqLen != SequenceLength)
            Allocate(batch, seqLen);
    }

    /// <summary>Input of the first block held [rows, dim]: a piece without the embedding receives it here before <see cref="Forward"/>.</summary>
    public Memory<T> StageInput => Stream[0];

    /// <summary>Output of the last block held [rows, dim] after <see cref="Forward"/>, for a piece without the head to send on.</summary>
    public ReadOnlyMemory<T> StageOutput => Stream[Part.LayerCount];

    /// <summary>d(loss)/d(<see cref="StageOutput"/>): a piece without the head receives it here before <see cref="Backward"/>.</summary>
    public Memory<T> StageOutputGradient => _dStream;

    /// <summary>d(loss)/d(<see cref="StageInput"/>) after <see cref="Backward"/>, for a piece without the embedding to send back.</summary>
    public ReadOnlyMemory<T> StageInputGradient => _dStream;

    /// <summary>
    /// Runs the model on inputs[batch·seqLen] (row-major, sequences back to back). With targets, returns the mean
    /// cross-entropy and keeps what <see cref="Backward"/> needs; without, returns NaN and leaves the logits.
    /// A piece without the embedding ignores <paramref name="inputs"/> and starts from <see cref="StageInput"/>; one
    /// without the head ignores <paramref name="targets"/>, stops at <see cref="StageOutput"/> and returns NaN.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch, int seqLen)
    {
        Prepare(batch, seqLen);
        int rows = batch * seqLen;
        if ((Part.HasEmbedding && inputs.Length != rows) || (Part.HasHead && !targets.IsEmpty && targets.Length != rows))
            throw new ArgumentException($"expected {rows} input (and target) tokens, got {inputs.Length} ({targets.Length})");
        var hooks = UnitHooks;
        var (embedding, head, output) = hooks is null ? default : HookUnits();
        if (Part.HasEmbedding)
        {
            inputs.CopyTo(_tokens);
            hooks?.BeforeUse(embedding!, false);
            EmbedForward(Stream[0]);
            hooks?.AfterUse(embedding!, false);
        }
        for (int l = Part.FirstLayer; l < Part.EndLayer; l++)
        {
            hooks?.BeforeUse(Units[l + 1], false);
            BlockForward(l, Stream[l - Part.FirstLayer], Stream[l - Part.FirstLayer + 1]);
            hooks?.AfterUse(Units[l + 1], false);
        }
        if (!Part.HasHead)
        {
            _readyForBackward = true;
            return double.NaN;
        }
        _readyForBackward = !targets.IsEmpty;
        if (_readyForBackward)
            targets.CopyTo(_targets);
        hooks?.BeforeUse(head!, false);
        FinalNormForward(Stream[Part.LayerCount], Final);
        if (output != head)
            hooks?.BeforeUse(output!, false);
        LinearOp.Forward(Final, Parameters.Value(OutputWeight), ReadOnlyMemory<T>.Empty, _logits, rows, Config.Dim, Config.Vocab);
        if (output != head)
            hooks?.AfterUse(output!, false);
        hooks?.AfterUse(head!, false);
        if (!_readyForBackward)
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
    /// A piece without the head starts from the gradient put in <see cref="StageOutputGradient"/> (the scale is
    /// already in it) and, without the embedding, leaves d(input) in <see cref="StageInputGradient"/>.
    /// </summary>
    public void Backward(double lossScale = 1.0)
    {
        if (!_readyForBackward)
            throw new InvalidOperationException("Backward needs a Forward with targets first");
        _readyForBackward = false; // the logits become their gradient below
        int rows = Rows, top = Part.LayerCount;
        var hooks = UnitHooks;
        var (embedding, head, output) = hooks is null ? default : HookUnits();
        if (Part.HasHead)
        {
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
            FinalNormBackward(_dFinal, Stream[top], _dStream);
            hooks?.AfterUse(head!, true);
            hooks?.GradientsFinal(head!);
        }
        for (int l = Part.EndLayer - 1; l >= Part.FirstLayer; l--)
        {
            int i = l - Part.FirstLayer;
            hooks?.BeforeUse(Units[l + 1], true);
            // the shared buffers still hold the top block's activations from Forward; every other block runs again
            // (rewriting Stream[i + 1] with the bits it already holds: the block above is done with it)
            if (SharedBlockActivations && l < Part.EndLayer - 1)
                BlockForward(l, Stream[i], Stream[i + 1]);
            BlockBackward(l, Stream[i], _dStream);
            hooks?.AfterUse(Units[l + 1], true);
            hooks?.GradientsFinal(Units[l + 1]);
        }
        if (Part.HasEmbedding)
        {
            hooks?.BeforeUse(embedding!, true);
            EmbedBackward(_dStream);
            hooks?.AfterUse(embedding!, true);
            hooks?.GradientsFinal(embedding!);
        }
    }

    private (ParameterUnit Embedding, ParameterUnit Head, ParameterUnit Output) HookUnits() =>
        (Units[0], Units[^1], ParameterUnit.Of(Units, OutputWeight));

    private void Allocate(int batch, int seqLen)
    {
        (Batch, SequenceLength) = (batch, seqLen);
        int rows = batch * seqLen, dim = Config.Dim;
        bool head = Part.HasHead;
        _tokens = Part.HasEmbedding ? new int[rows] : [];
        _targets = head ? new int[rows] : [];
        Stream = new T[Part.LayerCount + 1][];
        for (int l = 0; l <= Part.LayerCount; l++)
            Stream[l] = new T[rows * dim];
        Final = head ? new T[rows * dim] : [];
        _dFinal = head ? new T[rows * dim] : [];
        _dStream = new T[rows * dim];
        _logits = head ? new T[rows * Config.Vocab] : [];
        _losses = head ? new T[rows] : [];
        // stream (layers + 1), final, dFinal, dStream, logits, losses; tokens and targets
        long own = ((Part.LayerCount + 2L + (head ? 2 : 0)) * rows * dim + _logits.Length + _losses.Length) * Unsafe.SizeOf<T>()
            + (long)(_tokens.Length + _targets.Length) * sizeof(int);
        ActivationBytes = own + AllocateActivations(rows);
    }
}
