using System.Diagnostics;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Training.Parallel;

/// <summary>
/// The layout 1×1×1 through <see cref="IDistributedTrainer"/>: a <see cref="Trainer"/> as it is, so `kiln train`
/// drives one code path whatever the layout, and a single process keeps its bit-exact resume and its memory (the
/// checkpoint is written straight from the live arrays).
/// </summary>
public sealed class SingleProcessTrainer(Trainer trainer) : IDistributedTrainer
{
    public Trainer Trainer { get; } = trainer;
    public TrainingConfig Config => Trainer.Config;
    public TrainerOptions Options => Trainer.Options;
    public long Step => Trainer.Step;
    public long TokensPerStep => Trainer.TokensPerStep;
    public double FlopsPerToken => Trainer.FlopsPerToken;
    public ParallelStepTimes LastStepTimes { get; private set; }

    public StepResult TrainStep()
    {
        long start = Stopwatch.GetTimestamp();
        var result = Trainer.TrainStep();
        LastStepTimes = new ParallelStepTimes(Stopwatch.GetElapsedTime(start), TimeSpan.Zero, TimeSpan.Zero);
        return result;
    }

    public double Evaluate(TokenStream stream, int batches) => Trainer.Evaluate(stream, batches);

    public TrainingCheckpoint? Gather() => Trainer.Snapshot();

    public void Save(string path) => Trainer.Save(path);

    public ModelStateMemory MemoryHeld()
    {
        long bytes = 4L * Trainer.Model.Parameters.Count;
        return new ModelStateMemory(bytes, bytes, 2 * bytes);
    }

    public void Dispose() { }
}
