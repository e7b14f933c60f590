using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Training.Parallel;

/// <summary>
/// Makes the <see cref="IDistributedTrainer"/> for a layout: what `kiln train` calls on every rank. The layout is
/// validated first (the same check, and so the same message, on every rank, before any communication): 1×1×1 is a
/// plain <see cref="Trainer"/>, data parallelism alone with any ZeRO stage a <see cref="DataParallelRun"/> (it overlaps
/// the gradient all-reduce with the backward pass), and any layout with tensor or pipeline parallelism a
/// <see cref="ParallelTrainer"/> (ZeRO 0 or 1).
/// </summary>
public static class DistributedTrainers
{
    /// <summary>Collective: a fresh run; every rank of <paramref name="world"/> calls it with the same arguments.</summary>
    public static IDistributedTrainer Start(Communicator world, ParallelLayout layout, TrainingConfig config, TrainerOptions options,
        TokenStream train, WorkerPool? pool)
    {
        Check(world, layout, config, options);
        if (IsSingleProcess(layout))
            return new SingleProcessTrainer(Trainer.Start(config, options, train, pool));
        if (IsMixed(layout))
            return ParallelTrainer.Start(world, layout, config, options, train, pool);
        return DataParallelRun.Start(world, config, options, (ZeroStage)layout.Zero, train, pool);
    }

    /// <summary>
    /// Collective: continues a checkpoint in the single-process layout (any layout's <see cref="IDistributedTrainer.Gather"/>
    /// writes one) under <paramref name="layout"/>; <paramref name="options"/> must continue its run.
    /// </summary>
    public static IDistributedTrainer Resume(Communicator world, ParallelLayout layout, TrainingCheckpoint checkpoint, TrainerOptions options,
        TokenStream train, WorkerPool? pool)
    {
        Check(world, layout, checkpoint.Config, options);
        checkpoint.EnsureContinuedBy(checkpoint.Config, options);
        if (IsSingleProcess(layout))
            return new SingleProcessTrainer(Trainer.Resume(checkpoint, checkpoint.Config, options, train, pool));
        if (IsMixed(layout))
            return ParallelTrainer.Resume(world, layout, checkpoint, checkpoint.Config, options, train, pool);
        return DataParallelRun.Resume(world, checkpoint, options, (ZeroStage)layout.Zero, train, pool);
    }

    /// <summary>Throws <see cref="TrainingConfigException"/> unless the layout fits the world, the model and the batch, and is one this factory runs.</summary>
    public static void Check(Communicator world, ParallelLayout layout, TrainingConfig config, TrainerOptions options)
    {
        layout.Validate(config, world.Size, options.Batch);
        if (layout.Pp == 1 && layout.MicroBatches > 1)
            throw new TrainingConfigException(
                $"--micro-batches splits each batch for a pipeline schedule (--pp > 1); without a pipeline use --grad-accum {layout.MicroBatches}, "
                + "which accumulates the gradients of that many micro-batches per step (what kiln plan's M means at pp 1)");
        if (IsMixed(layout))
        {
            ParallelTrainer.Check(layout, config, options, world.Size);
            return;
        }
        if (options.Batch % layout.Dp != 0)
            throw new TrainingConfigException(
                $"the batch of {options.Batch} sequences does not split over {layout.Dp} data-parallel replicas: give --batch a multiple of {layout.Dp}");
    }

    private static bool IsSingleProcess(ParallelLayout layout) => layout.Ranks == 1 && layout.Zero == 0;

    /// <summary>Tensor or pipeline parallelism.</summary>
    private static bool IsMixed(ParallelLayout layout) => layout.Tp > 1 || layout.Pp > 1;
}
