using System.Diagnostics;
using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Training.Parallel;

/// <summary>
/// Data parallelism (tp = pp = 1, ZeRO 0–3) through <see cref="IDistributedTrainer"/>: a <see cref="DataParallelTrainer"/>
/// given each replica's share of the global batch, over a communicator that times what the rank waits for. Its
/// checkpoints are in the single-process layout (whole weights and moments, the global options), so one written
/// under any dp/ZeRO resumes under any other, or in a single process.
/// </summary>
public sealed class DataParallelRun : IDistributedTrainer
{
    private readonly TimedCommunicator _comm;

    private DataParallelRun(TimedCommunicator comm, DataParallelTrainer trainer, TrainerOptions options)
    {
        (_comm, Trainer, Options) = (comm, trainer, options);
    }

    public DataParallelTrainer Trainer { get; }
    public TrainingConfig Config => Trainer.Config;

    /// <summary>The run's options: Batch is the global batch (each rank's trainer takes Batch / ranks).</summary>
    public TrainerOptions Options { get; }

    public long Step => Trainer.Step;
    public long TokensPerStep => Trainer.TokensPerStep;
    public double FlopsPerToken => 6.0 * Trainer.Model.Parameters.Count + 12.0 * Config.Layers * Config.Dim * Options.SequenceLength;
    public ParallelStepTimes LastStepTimes { get; private set; }

    /// <summary>A fresh run over every rank of <paramref name="world"/>; weights drawn from the seed as a single process draws them.</summary>
    public static DataParallelRun Start(Communicator world, TrainingConfig config, TrainerOptions options, ZeroStage zero, TokenStream train, WorkerPool? pool)
    {
        var comm = new TimedCommunicator(world);
        return new DataParallelRun(comm, DataParallelTrainer.Start(comm, config, PerRank(options, world.Size), zero, train, pool), options);
    }

    /// <summary>Continues a checkpoint written by any layout; <paramref name="options"/> must continue its run (global batch and data order).</summary>
    public static DataParallelRun Resume(Communicator world, TrainingCheckpoint checkpoint, TrainerOptions options, ZeroStage zero, TokenStream train, WorkerPool? pool)
    {
        var comm = new TimedCommunicator(world);
        return new DataParallelRun(comm, DataParallelTrainer.Resume(comm, checkpoint, PerRank(options, world.Size), zero, train, pool), options);
    }

    private static TrainerOptions PerRank(TrainerOptions options, int ranks)
    {
        if (options.Batch % ranks != 0)
            throw new TrainingConfigException($"the batch of {options.Batch} sequences does not split over {ranks} data-parallel replicas: give --batch a multiple of {ranks}");
        return options with { Batch = options.Batch / ranks };
    }

    public StepResult TrainStep()
    {
        _comm.Reset();
        long start = Stopwatch.GetTimestamp();
        var result = Trainer.TrainStep();
        LastStepTimes = new ParallelStepTimes(Stopwatch.GetElapsedTime(start), _comm.Waited, TimeSpan.Zero);
        return result;
    }

    public double Evaluate(TokenStream stream, int batches) => Trainer.Evaluate(stream, batches);

    public TrainingCheckpoint? Gather()
    {
        if (Trainer.GatherState() is not var (weights, first, second))
            return null;
        return new TrainingCheckpoint
        {
            Config = Config,
            Options = Options,
            Step = Trainer.Step,
            UpdateCount = Trainer.UpdateCount,
            RandomState = Trainer.Random.State,
            DataPosition = Trainer.Loader.Position,
            Weights = weights,
            FirstMoment = first,
            SecondMoment = second,
        };
    }

    public void Save(string path) => Gather()?.Write(path);

    public ModelStateMemory MemoryHeld() => Trainer.MemoryHeld();

    public void Dispose() => _comm.Dispose();
}
