using Kiln.Threading;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Optimization;
using Kiln.Training.Parallel;

namespace Kiln.Training;

/// <summary>
/// One training run: model, optimizer, data loader and RNG, stepped one optimizer update at a time. Every input to
/// a step (weights, moments, update count, data position, RNG state) is saved by <see cref="Save"/>, and the step
/// itself is deterministic (fixed summation orders for any thread count), so resuming reproduces the bits of an
/// uninterrupted run.
/// </summary>
public sealed class Trainer
{
    private readonly int[] _inputs;
    private readonly int[] _targets;
    private readonly LearningRateSchedule _schedule;

    private Trainer(TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool, TensorParallel? tensorParallel = null)
    {
        config.Validate();
        options.Validate(config);
        if (train.VocabSize > config.Vocab)
            throw new TrainingConfigException(
                $"{train.Path} was tokenized with a vocabulary of {train.VocabSize}, larger than the model's vocab of {config.Vocab}");
        Config = config;
        Options = options;
        Model = TrainableModel<float>.Create(config, pool, options.Recompute, tensorParallel);
        Optimizer = new AdamW(Model.Parameters, options.Adam);
        Loader = new TokenBatchLoader(train, options.Batch, options.SequenceLength, options.Shuffle, options.Seed);
        Random = new TrainingRandom(options.Seed);
        _inputs = new int[options.Batch * options.SequenceLength];
        _targets = new int[_inputs.Length];
        _schedule = options.Schedule;
    }

    public TrainingConfig Config { get; }
    public TrainerOptions Options { get; }
    public TrainableModel<float> Model { get; }
    public AdamW Optimizer { get; }
    public TokenBatchLoader Loader { get; }
    public TrainingRandom Random { get; }

    /// <summary>Optimizer steps taken.</summary>
    public long Step { get; private set; }

    public long TokensPerStep => (long)Options.Batch * Options.SequenceLength * Options.GradAccum;

    /// <summary>
    /// Floating-point operations per trained token by nanoGPT's estimate (as in its MFU): 6·N for the matrix products
    /// of forward and backward plus 12·layers·dim·T for attention scores and values (causal masking not subtracted).
    /// </summary>
    public double FlopsPerToken => 6.0 * Model.Parameters.Count + 12.0 * Config.Layers * Config.Dim * Options.SequenceLength;

    /// <summary>
    /// A fresh run: weights drawn from the seed. With <paramref name="tensorParallel"/>, this rank's shard of the model
    /// (initialized as the single-process run's, cut); every rank of the group must read the same data, so the
    /// same stream and seed.
    /// </summary>
    public static Trainer Start(TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool, TensorParallel? tensorParallel = null)
    {
        var t = new Trainer(config, options, train, pool, tensorParallel);
        t.Model.Initialize(t.Random);
        return t;
    }

    /// <summary>
    /// Continues a saved run. The model config must match (a checkpoint of another shape is refused); so must the
    /// options that decide which data a step sees (batch, sequence, accumulation, seed, shuffling). The step count,
    /// rates and clipping come from <paramref name="options"/>.
    /// </summary>
    public static Trainer Resume(TrainingCheckpoint checkpoint, TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool)
    {
        checkpoint.EnsureContinuedBy(config, options);
        var t = new Trainer(config, options, train, pool);
        if (checkpoint.Weights.Length != t.Model.Parameters.Count)
            throw new TrainingConfigException($"the checkpoint holds {checkpoint.Weights.Length} parameters, the model {t.Model.Parameters.Count}");
        checkpoint.Weights.CopyTo(t.Model.Parameters.Values, 0);
        checkpoint.FirstMoment.CopyTo(t.Optimizer.FirstMoment, 0);
        checkpoint.SecondMoment.CopyTo(t.Optimizer.SecondMoment, 0);
        t.Optimizer.UpdateCount = checkpoint.UpdateCount;
        t.Random.State = checkpoint.RandomState;
        t.Loader.Position = checkpoint.DataPosition;
        t.Step = checkpoint.Step;
        return t;
    }

    /// <summary>One optimizer step over GradAccum micro-batches. A non-finite loss or gradient throws before any weight changes.</summary>
    public StepResult TrainStep()
    {
        var model = Model;
        model.ZeroGradients();
        double loss = 0;
        for (int micro = 0; micro < Options.GradAccum; micro++)
        {
            Loader.Next(_inputs, _targets);
            double l = model.Forward(_inputs, _targets, Options.Batch, Options.SequenceLength);
            if (!double.IsFinite(l))
                throw new TrainingDivergedException(Step, $"loss became {l}");
            loss += l;
            model.Backward(1.0 / Options.GradAccum);
        }
        loss /= Options.GradAccum;
        double norm = model.TensorParallel is { } tp
            ? tp.ClipGradients(model.Parameters, Options.Clip)
            : GradientClipping.Clip(model.Parameters.Gradients, Options.Clip);
        if (!double.IsFinite(norm))
            throw new TrainingDivergedException(Step, $"gradient norm became {norm}");
        float lr = _schedule.At(Step);
        Optimizer.Update(lr);
        Step++;
        return new StepResult(Step, loss, norm, lr, TokensPerStep);
    }

    /// <summary>Mean loss over the first <paramref name="batches"/> batches of a stream, read in order (the same tokens every time).</summary>
    public double Evaluate(TokenStream stream, int batches)
    {
        var loader = new TokenBatchLoader(stream, Options.Batch, Options.SequenceLength, shuffle: false, seed: 0);
        batches = (int)Math.Min(batches, Math.Max(1, loader.Windows / Options.Batch));
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            loader.Next(_inputs, _targets);
            sum += Model.Forward(_inputs, _targets, Options.Batch, Options.SequenceLength);
        }
        return sum / batches;
    }

    /// <summary>A copy of the run's state, independent of further steps.</summary>
    public TrainingCheckpoint Snapshot() => State(copy: true);

    /// <summary>
    /// Writes the checkpoint straight from the live weights and moments: a copy would add three parameter-sized
    /// arrays (1.4 GiB for GPT-2 small) to the peak resident memory of every save.
    /// </summary>
    public void Save(string path) => State(copy: false).Write(path);

    private TrainingCheckpoint State(bool copy) => new()
    {
        Config = Config,
        Options = Options,
        Step = Step,
        UpdateCount = Optimizer.UpdateCount,
        RandomState = Random.State,
        DataPosition = Loader.Position,
        Weights = copy ? (float[])Model.Parameters.Values.Clone() : Model.Parameters.Values,
        FirstMoment = copy ? (float[])Optimizer.FirstMoment.Clone() : Optimizer.FirstMoment,
        SecondMoment = copy ? (float[])Optimizer.SecondMoment.Clone() : Optimizer.SecondMoment,
    };
}
