using Kiln.Training.Optimization;

namespace Kiln.Training.Lora;

/// <summary>Hyperparameters of a LoRA finetune; weight decay is off by default (the adapters start at zero update).</summary>
public sealed record LoraFinetuneOptions
{
    public int Batch { get; init; } = 4;
    public int SequenceLength { get; init; } = 64;
    public int Steps { get; init; } = 100;
    public float LearningRate { get; init; } = 1e-3f;
    public int WarmupSteps { get; init; }
    public float Clip { get; init; } = 1f;
    public ulong Seed { get; init; } = 1337;
    public AdamWOptions Adam { get; init; } = new() { WeightDecay = 0f };

    public LearningRateSchedule Schedule => new(LearningRate, LearningRate / 10, WarmupSteps, Steps);
}
