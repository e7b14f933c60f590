using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Training.Parallel;

/// <summary>
/// One rank's part of a training run under a <see cref="Kiln.Distributed.ParallelLayout"/>: what `kiln train` drives,
/// whatever the layout (a single process is the layout 1×1×1). Every member marked collective must be called by every
/// rank of the world in the same order. Batch semantics: <see cref="TrainerOptions.Batch"/> is the global number of
/// sequences per micro-batch step (as in single-process training); each data-parallel replica takes Batch / Dp of
/// them (rank r of the dp group the r-th slice of the same global windows), and pipeline stages split a replica's
/// share into the layout's micro-batches. So a run under any layout sees exactly the sequences, and takes the same
/// optimizer steps, as single-process training with the same options, up to summation order.
/// </summary>
public interface IDistributedTrainer : IDisposable
{
    TrainingConfig Config { get; }
    TrainerOptions Options { get; }

    /// <summary>Optimizer steps taken.</summary>
    long Step { get; }

    /// <summary>Tokens of one optimizer step over all replicas.</summary>
    long TokensPerStep { get; }

    /// <summary>Floating-point operations per trained token of the whole model (as <see cref="Trainer.FlopsPerToken"/>).</summary>
    double FlopsPerToken { get; }

    /// <summary>
    /// Collective: one optimizer step. The result (global mean loss, global gradient norm, rate) is the same on every
    /// rank. A non-finite loss or gradient throws <see cref="TrainingDivergedException"/> on every rank, before any
    /// weight changes.
    /// </summary>
    StepResult TrainStep();

    /// <summary>Collective: the mean loss over the first batches of a stream, read in order; the same on every rank.</summary>
    double Evaluate(TokenStream stream, int batches);

    /// <summary>
    /// Collective: the run's state in the single-process layout (whole weights and moments) on world rank 0, null on
    /// the others. A checkpoint written from it resumes under any layout, or in a single process.
    /// </summary>
    TrainingCheckpoint? Gather();

    /// <summary>Collective: <see cref="Gather"/>, then rank 0 writes the checkpoint atomically.</summary>
    void Save(string path);

    /// <summary>Bytes of model states (parameters, gradients, optimizer moments) this rank holds.</summary>
    ModelStateMemory MemoryHeld();

    /// <summary>Where the last step's time went on this rank (compute, communication, pipeline idle).</summary>
    ParallelStepTimes LastStepTimes { get; }
}
