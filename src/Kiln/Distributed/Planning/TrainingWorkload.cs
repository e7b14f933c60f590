using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>One optimizer step's work: <see cref="GlobalBatch"/> sequences of <see cref="SequenceLength"/> tokens over all replicas.</summary>
public sealed record TrainingWorkload
{
    public required int GlobalBatch { get; init; }
    public required int SequenceLength { get; init; }
    public Recomputation Recompute { get; init; } = Recomputation.Attention;

    public long TokensPerStep => (long)GlobalBatch * SequenceLength;

    public void Validate(TrainingConfig config)
    {
        if (GlobalBatch < 1)
            throw new TrainingConfigException($"batch must be at least 1 (got {GlobalBatch})");
        if (SequenceLength < 1)
            throw new TrainingConfigException($"sequence length must be at least 1 (got {SequenceLength})");
        if (SequenceLength > config.Context)
            throw new TrainingConfigException($"sequence length {SequenceLength} exceeds the model's context of {config.Context}");
    }
}
