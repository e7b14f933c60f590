using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Data;
using Kiln.Training.Optimization;

namespace Kiln.Training.Parallel;

/// <summary>
/// Training with the model's layers split into P contiguous stages, one per rank of a pipeline group. A step's batch
/// of B sequences is cut into M micro-batches of B/M, run through the stages by the layout's schedule (GPipe or
/// 1F1B), their gradients added up, and one AdamW update applied per stage to the parameters it holds. The update is
/// single-process training's with batch B/M and gradient accumulation over M: each stage adds the same per-micro-batch
/// gradients in the same order, the global gradient norm is summed through the stages in the single-process index
/// order (a running sum handed from stage to stage), and AdamW is element-wise. The one difference is GPT-2's tied
/// wte: the first stage sums its embedding gradient and the last stage its output-head gradient, each over the
/// micro-batches, and the two sums are added (both stages then hold the same bits and take the same update), where
/// a single process adds head and embedding gradients alternately, micro-batch after micro-batch.
/// </summary>
public sealed class PipelineTrainer
{
    // MPI promises tags up to 32767; micro-batch m uses 2m and 2m + 1 below these
    private const int NormTag = 32767;

    private readonly Communicator _pipeline;
    private readonly int[][] _inputs;
    private readonly int[][] _targets;
    private readonly LearningRateSchedule _schedule;

    private PipelineTrainer(TrainingConfig config, TrainerOptions options, ParallelLayout layout, TokenStream train, Communicator pipeline, WorkerPool? pool)
    {
        config.Validate();
        options.Validate(config);
        layout.Validate(config, layout.Ranks, options.Batch);
        if (pipeline.Size != layout.Pp)
            throw new TrainingConfigException($"the pipeline group has {pipeline.Size} ranks but the layout {layout.Pp} stages");
        if (options.GradAccum != 1)
            throw new TrainingConfigException($"under pipeline parallelism the micro-batches take the place of gradient accumulation: grad-accum must be 1 (got {options.GradAccum})");
        if (2 * layout.MicroBatches > PipelineStage.TiedGradientTag)
            throw new TrainingConfigException($"at most {PipelineStage.TiedGradientTag / 2} micro-batches (got {layout.MicroBatches})");
        if (train.VocabSize > config.Vocab)
            throw new TrainingConfigException(
                $"{train.Path} was tokenized with a vocabulary of {train.VocabSize}, larger than the model's vocab of {config.Vocab}");
        Config = config;
        Options = options;
        Layout = layout;
        _pipeline = pipeline;
        Stage = new PipelineStage(config, pipeline, layout.Schedule, layout.MicroBatches, pool, options.Recompute);
        Optimizer = new AdamW(Stage.Parameters, options.Adam);
        MicroBatchSize = options.Batch / layout.MicroBatches;
        Loader = new TokenBatchLoader(train, MicroBatchSize, options.SequenceLength, options.Shuffle, options.Seed);
        Random = new TrainingRandom(options.Seed);
        int tokens = MicroBatchSize * options.SequenceLength;
        _inputs = Enumerable.Range(0, layout.MicroBatches).Select(_ => new int[tokens]).ToArray();
        _targets = Enumerable.Range(0, layout.MicroBatches).Select(_ => new int[tokens]).ToArray();
        _schedule = options.Schedule;
    }

    public TrainingConfig Config { get; }
    public TrainerOptions Options { get; }
    public ParallelLayout Layout { get; }
    public PipelineStage Stage { get; }
    public AdamW Optimizer { get; }
    public TokenBatchLoader Loader { get; }
    public TrainingRandom Random { get; }

    /// <summary>Sequences per micro-batch: Batch / MicroBatches.</summary>
    public int MicroBatchSize { get; }

    public long Step { get; private set; }
    public long TokensPerStep => (long)Options.Batch * Options.SequenceLength;

    /// <summary>This stage's timings and activation memory over the last step's schedule.</summary>
    public PipelineStepStatistics? LastStatistics { get; private set; }

    /// <summary>
    /// Collective over <paramref name="pipeline"/> (rank r is stage r): a fresh run whose weights are, stage by stage,
    /// those a single-process <see cref="Trainer.Start"/> draws from the same seed.
    /// </summary>
    public static PipelineTrainer Start(TrainingConfig config, TrainerOptions options, ParallelLayout layout, TokenStream train, Communicator pipeline, WorkerPool? pool)
    {
        var t = new PipelineTrainer(config, options, layout, train, pipeline, pool);
        t.Stage.Model.Initialize(t.Random);
        return t;
    }

    /// <summary>Collective: one optimizer step over the M micro-batches. A non-finite loss or gradient throws on every stage before any weight changes.</summary>
    public StepResult TrainStep()
    {
        Array.Clear(Stage.Parameters.Gradients);
        for (int m = 0; m < _inputs.Length; m++)
            Loader.Next(_inputs[m], _targets[m]);
        double lossSum = Stage.Run(_inputs, _targets, MicroBatchSize, Options.SequenceLength, 1.0 / _inputs.Length, out var statistics);
        LastStatistics = statistics;
        Span<double> loss = [lossSum];
        _pipeline.Broadcast(loss, Stage.Stages - 1);
        double mean = loss[0] / _inputs.Length;
        if (!double.IsFinite(mean))
            throw new TrainingDivergedException(Step, $"loss became {mean}");
        Stage.AddTiedGradients();
        double norm = GlobalGradientNorm();
        if (!double.IsFinite(norm))
            throw new TrainingDivergedException(Step, $"gradient norm became {norm}");
        GradientClipping.ClipTo(Stage.Parameters.Gradients, norm, Options.Clip);
        float lr = _schedule.At(Step);
        Optimizer.Update(lr);
        Step++;
        return new StepResult(Step, mean, norm, lr, TokensPerStep);
    }

    /// <summary>
    /// The L2 norm of all gradients, each counted once (the last stage's copy of a tied weight is skipped), squares
    /// added in the single-process index order: stage s continues the running sum of stage s − 1.
    /// </summary>
    private double GlobalGradientNorm()
    {
        Span<double> running = [0];
        if (!Stage.IsFirst)
            _pipeline.Receive(running, Stage.Stage - 1, NormTag);
        var skip = Stage.IsFirst ? null : Stage.Model.TiedOutputWeight;
        foreach (var t in Stage.Parameters.Tensors)
            if (t != skip)
                running[0] = GradientClipping.SumOfSquares(Stage.Parameters.Gradient(t).Span, running[0]);
        if (!Stage.IsLast)
            _pipeline.Send<double>(running, Stage.Stage + 1, NormTag);
        _pipeline.Broadcast(running, Stage.Stages - 1);
        return Math.Sqrt(running[0]);
    }
}
