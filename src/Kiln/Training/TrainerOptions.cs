using Kiln.Training.Optimization;

namespace Kiln.Training;

/// <summary>How to train: batch shape, schedule, optimizer. Stored in checkpoints so a resume continues the same run.</summary>
public sealed record TrainerOptions
{
    public int Batch { get; init; } = 4;
    public int SequenceLength { get; init; } = 64;
    public int Steps { get; init; } = 1000;

    /// <summary>Micro-batches per optimizer step; each adds 1/GradAccum of its gradient.</summary>
    public int GradAccum { get; init; } = 1;

    public float LearningRate { get; init; } = 3e-4f;

    /// <summary>Floor of the cosine decay; a negative value means LearningRate / 10.</summary>
    public float MinLearningRate { get; init; } = -1f;

    public int WarmupSteps { get; init; }

    /// <summary>Global gradient-norm limit; 0 disables clipping.</summary>
    public float Clip { get; init; } = 1f;

    public AdamWOptions Adam { get; init; } = new();
    public ulong Seed { get; init; } = 1337;
    public bool Shuffle { get; init; } = true;

    /// <summary>
    /// Memory for compute. Block recomputation keeps a step's bits; attention recomputation rebuilds probabilities as
    /// exp(s − lse) and moves the last bits. A checkpoint holds no activations, so a run may resume with another setting.
    /// </summary>
    public Recomputation Recompute { get; init; }

    public void Validate(TrainingConfig config)
    {
        if (Batch <= 0 || SequenceLength <= 0 || Steps <= 0 || GradAccum <= 0)
            throw new TrainingConfigException($"batch ({Batch}), sequence length ({SequenceLength}), steps ({Steps}) and grad-accum ({GradAccum}) must be positive");
        if (SequenceLength > config.Context)
            throw new TrainingConfigException($"sequence length {SequenceLength} exceeds the model's context of {config.Context}");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate))
            throw new TrainingConfigException($"learning rate must be a positive number (got {LearningRate})");
        if (WarmupSteps < 0)
            throw new TrainingConfigException($"warm-up steps must not be negative (got {WarmupSteps})");
        if (Clip < 0 || !float.IsFinite(Clip))
            throw new TrainingConfigException($"clip must be 0 (off) or positive (got {Clip})");
    }

    public LearningRateSchedule Schedule => new(LearningRate, MinLearningRate < 0 ? LearningRate / 10 : MinLearningRate, WarmupSteps, Steps);
}
