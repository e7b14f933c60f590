using Kiln.Training;

namespace Kiln.Distributed;

/// <summary>Pipeline schedule: GPipe (all forwards, then all backwards) or 1F1B (PipeDream-flush).</summary>
public enum PipelineSchedule
{
    GPipe,
    OneFOneB,
}

/// <summary>
/// How N ranks split a training job: Dp data-parallel replicas × Tp tensor-parallel shards × Pp pipeline stages, with
/// ZeRO stage 0–3 over the data-parallel group. Ranks are numbered as Megatron-LM does, tensor-parallel fastest:
/// rank = (pp · Dp + dp) · Tp + tp, so a tensor-parallel group (the chattiest) is neighbouring ranks.
/// </summary>
public sealed record ParallelLayout
{
    public int Dp { get; init; } = 1;
    public int Tp { get; init; } = 1;
    public int Pp { get; init; } = 1;
    public int Zero { get; init; }
    public int MicroBatches { get; init; } = 1;
    public PipelineSchedule Schedule { get; init; } = PipelineSchedule.OneFOneB;

    public int Ranks => Dp * Tp * Pp;

    public static readonly ParallelLayout Single = new();

    /// <summary>This rank's coordinates.</summary>
    public (int Dp, int Tp, int Pp) Coordinates(int rank)
    {
        if ((uint)rank >= (uint)Ranks)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"no rank {rank} in a layout of {Ranks}");
        return (rank / Tp % Dp, rank % Tp, rank / (Tp * Dp));
    }

    public int RankOf(int dp, int tp, int pp) => (pp * Dp + dp) * Tp + tp;

    /// <summary>
    /// Throws <see cref="TrainingConfigException"/> naming what does not fit: the rank count, the model's heads,
    /// KV heads, feed-forward width or layers, the batch and the micro-batches.
    /// </summary>
    public void Validate(TrainingConfig config, int worldSize, int batch)
    {
        if (Dp < 1 || Tp < 1 || Pp < 1)
            throw new TrainingConfigException($"--dp, --tp and --pp must be at least 1 (got {Dp}, {Tp}, {Pp})");
        if (Ranks != worldSize)
            throw new TrainingConfigException($"dp {Dp} × tp {Tp} × pp {Pp} = {Ranks} ranks, but the job has {worldSize}");
        if (Zero is < 0 or > 3)
            throw new TrainingConfigException($"--zero must be 0, 1, 2 or 3 (got {Zero})");
        if (MicroBatches < 1)
            throw new TrainingConfigException($"--micro-batches must be at least 1 (got {MicroBatches})");
        if (config.Heads % Tp != 0)
            throw new TrainingConfigException($"tensor parallel over {Tp} ranks needs heads divisible by {Tp}; the model has {config.Heads}");
        if (config.KvHeadCount % Tp != 0)
            throw new TrainingConfigException($"tensor parallel over {Tp} ranks needs KV heads divisible by {Tp}; the model has {config.KvHeadCount}");
        if (config.FfnDim % Tp != 0)
            throw new TrainingConfigException($"tensor parallel over {Tp} ranks needs the feed-forward width divisible by {Tp}; the model has {config.FfnDim}");
        if (config.Layers % Pp != 0)
            throw new TrainingConfigException($"pipeline parallel over {Pp} stages needs layers divisible by {Pp}; the model has {config.Layers}");
        if (batch % MicroBatches != 0)
            throw new TrainingConfigException($"the batch of {batch} sequences does not split into {MicroBatches} micro-batches");
    }
}
